"""Communicator: one rank of an NCCL communicator (nccl4py's, underneath) on one kit Device,
with the collectives and point-to-point calls on kit arrays (batched by ``group()``).

Every call takes ``stream=`` (a kit Stream or any foreign stream, coerced once by
``as_stream``), checks counts, dtypes, devices and contiguity before anything is queued,
queues the NCCL operation on that stream and returns without waiting; the arrays record the
stream, so a free on another stream waits for the transfer. Contiguous views (offset slices,
reshapes) are handed to NCCL zero-copy; a non-contiguous view is refused (NCCL reads ``count``
elements from one pointer): copy it first (``ops.copy(view, stream=s)``).
"""

from __future__ import annotations

import operator

from ..device import Device, get_device
from ..errors import ArgumentError, ClosedError, DeviceMismatchError, DTypeError, ShapeError
from ..memory import Array, closed_error, coerce, empty
from ..stream import Stream, as_stream
from . import backend
from .backend import nccl_dtype, redop
from .clique import Clique, Team
from .errors import NCCL_RESULTS, NcclError, RankError, translate
from .group import in_group
from .launch import UniqueId

__all__ = ["Communicator", "Clique"]


class _Cai:
    """What nccl4py is handed for one checked operand: a 1-D CUDA Array Interface over its
    memory, with no stream entry (the kit ordered the work already), so nccl4py reads pointer,
    count and dtype without a DLPack capsule per call."""

    __slots__ = ("__cuda_array_interface__",)

    def __init__(self, a: Array):
        self.__cuda_array_interface__ = {"shape": (a.size,), "typestr": a.dtype.str, "data": (a.ptr, False),
                                         "strides": None, "version": 3, "stream": None}


def _buf(a: Array):
    # CAI cannot name bfloat16 (numpy kind "V"): that one goes through the array's DLPack export
    return a if a.dtype.kind == "V" else _Cai(a)


def _record(s: Stream, *arrays: Array) -> None:
    seen = set()
    for a in arrays:
        if id(a) not in seen:
            seen.add(id(a))
            a.record_stream(s)


def _overlap(send: Array, recv: Array, in_place_at: int, op: str, layout: str) -> None:
    """Disjoint, or exactly NCCL's in-place layout (send.ptr - recv.ptr == ``in_place_at``);
    ShapeError for any other overlap (NCCL's result would be undefined)."""
    if send.ptr + send.nbytes <= recv.ptr or recv.ptr + recv.nbytes <= send.ptr:
        return
    if send.ptr - recv.ptr != in_place_at:
        raise ShapeError(f"{op}: send and recv overlap but not in NCCL's in-place layout ({layout}); "
                         "pass disjoint arrays, or the in-place views")


class Communicator:
    """One rank of an NCCL communicator, bound to one kit Device.

    Make it with :meth:`init` (one process per GPU: every rank calls it with the same unique
    id), :meth:`init_all` (one process driving several GPUs) or :meth:`init_local` (several
    GPUs per process of a multi-process job). Attributes: ``rank``,
    ``nranks``, ``device`` (kit Device), ``nccl`` (nccl4py's Communicator, for what the kit does
    not wrap), ``ptr`` (the ncclComm_t address).

    Lifetime: :meth:`close` (idempotent; ncclCommDestroy, which waits for the operations queued
    on it and is collective within a node) or ``with``, which closes on a normal exit and
    aborts when the block raised (a rank that stops early must not wait for ranks still
    running). After an NcclError or a hang, :meth:`abort` on every rank. There is no safety
    net that destroys a forgotten communicator when collected: ncclCommDestroy is collective
    and could hang a garbage collection; it lives until the process exits.
    """

    __slots__ = ("_nc", "device", "rank", "nranks", "_team", "_state", "__weakref__")

    def __init__(self, *_a, **_k):
        raise TypeError("use Communicator.init(nranks, rank, uid, device=...) or Communicator.init_all(devices)")

    @classmethod
    def _wrap(cls, nc, device: Device, rank: int, nranks: int, team: Team | None = None) -> "Communicator":
        self = object.__new__(cls)
        self._nc, self.device, self.rank, self.nranks, self._team, self._state = nc, device, rank, nranks, team, "open"
        return self

    # -- creation -------------------------------------------------------------------------------
    @classmethod
    def init(cls, nranks: int, rank: int, uid, *, device) -> "Communicator":
        """Rank ``rank`` of ``nranks`` on ``device`` (a Device or an ordinal), joining the ranks
        that pass the same ``uid`` (a UniqueId, its 128 bytes, or nccl4py's UniqueId): every rank
        calls it (ncclCommInitRankScalable), and it returns once all have. For several ranks in one
        process use :meth:`init_local` (or :meth:`init_all`). Raises MissingExtraError without
        nccl4py, RankError for a rank outside ``0..nranks-1``, ArgumentError for a malformed id,
        NcclError when NCCL fails (e.g. ncclInvalidUsage for two ranks on one GPU)."""
        nranks, rank = _index(nranks, "init: nranks"), _index(rank, "init: rank")
        if nranks < 1 or not 0 <= rank < nranks:
            raise RankError(f"init: rank {rank} does not fit a communicator of {nranks} rank(s)")
        raw = bytes(uid if isinstance(uid, UniqueId) else UniqueId(uid))
        core = backend.load()
        dev = get_device(device)
        with dev.activate():  # NCCL binds the rank to the current device
            try:
                nc = core.Communicator.init(nranks, rank, core.UniqueId.from_bytes(raw))
            except Exception as exc:
                raise translate(exc, "ncclCommInitRankScalable",
                                context=f"initialising rank {rank} of {nranks} on device {dev.ordinal}") from exc
        return cls._wrap(nc, dev, rank, nranks)

    @classmethod
    def init_local(cls, nranks: int, ranks, uid, devices) -> "Clique":
        """Several ranks of one job in this process, ``ranks[i]`` on ``devices[i]`` (the GPUs of
        each node of a multi-node job, one process per node): ncclCommInitRank of each inside
        one group. Returns a :class:`Clique`, torn down together. Raises as :meth:`init`, and
        RankError for lists of different lengths or a repeated rank or device."""
        nranks = _index(nranks, "init_local: nranks")
        ranks = [_index(r, "init_local: ranks") for r in ranks]
        items = list(devices)
        if not ranks or len(ranks) != len(items) or len(set(ranks)) != len(ranks):
            raise RankError(f"init_local: ranks {ranks} and {len(items)} device(s): one distinct rank per device")
        if any(not 0 <= r < nranks for r in ranks):
            raise RankError(f"init_local: ranks {ranks} do not fit a communicator of {nranks} rank(s)")
        raw = bytes(uid if isinstance(uid, UniqueId) else UniqueId(uid))
        core = backend.load()
        devs = [get_device(d) for d in items]
        if len({d.ordinal for d in devs}) != len(devs):
            raise RankError(f"init_local: devices {[d.ordinal for d in devs]} repeat one")
        ncs = []
        try:
            core.group_start()
            try:
                for r, d in zip(ranks, devs):
                    with d.activate():  # NCCL binds each rank to the device current at its call
                        ncs.append(core.Communicator.init(nranks, r, core.UniqueId.from_bytes(raw)))
            finally:
                core.group_end()
        except Exception as exc:
            raise translate(exc, "ncclCommInitRankScalable", context=f"initialising ranks {ranks} of {nranks}") from exc
        team = Team(ncs)
        team.members = [cls._wrap(nc, d, r, nranks, team) for nc, d, r in zip(ncs, devs, ranks)]
        return Clique(team.members)

    @classmethod
    def init_all(cls, devices) -> "Clique":
        """One communicator per device of ``devices`` (Devices or ordinals, distinct), rank i on
        ``devices[i]``, for one process driving them all (ncclCommInitAll). Returns a
        :class:`Clique` (a list of them, closed together). Call each rank's collective inside
        one :func:`group`. Raises MissingExtraError without nccl4py, RankError for an empty or
        repeated device list, NcclError when NCCL fails."""
        if isinstance(devices, (int, str, Device)):
            devices = [devices]
        items = list(devices)
        if not items:
            raise RankError("init_all: no devices given")
        core = backend.load()
        devs = [get_device(d) for d in items]
        ordinals = [d.ordinal for d in devs]
        if len(set(ordinals)) != len(ordinals):
            raise RankError(f"init_all: devices {ordinals} repeat one: NCCL puts one rank on each GPU")
        try:
            ncs = core.Communicator.init_all(ordinals)
        except Exception as exc:
            raise translate(exc, "ncclCommInitAll", context=f"initialising devices {ordinals}") from exc
        team = Team(ncs)
        team.members = [cls._wrap(nc, d, i, len(devs), team) for i, (nc, d) in enumerate(zip(ncs, devs))]
        return Clique(team.members)

    # -- properties ---------------------------------------------------------------------------------
    @property
    def nccl(self):
        """nccl4py's Communicator underneath (its calls take no kit arrays and do no kit checks)."""
        self._check_open("nccl")
        return self._nc

    @property
    def ptr(self) -> int:
        return int(self.nccl.ptr)

    @property
    def is_closed(self) -> bool:
        return self._state != "open"

    def __repr__(self) -> str:
        state = "" if self._state == "open" else f" {self._state}"
        return (f"<cudart_kit.collectives.Communicator rank {self.rank}/{self.nranks} "
                f"device={self.device.ordinal}{state}>")

    # -- checks ---------------------------------------------------------------------------------
    def _check_open(self, what: str) -> None:
        if self._state != "open":
            raise ClosedError(f"{what}: the communicator (rank {self.rank} of {self.nranks}) is {self._state}")

    def _stream(self, stream, what: str) -> Stream:
        self._check_open(what)
        s = stream if type(stream) is Stream and stream._core is not None else as_stream(stream)
        if s.device != self.device:
            raise DeviceMismatchError(f"{what}: the stream is on device {s.device.ordinal} but the communicator "
                                      f"(rank {self.rank}) is on device {self.device.ordinal}")
        return s

    def _operand(self, a, s: Stream, what: str) -> Array:
        if type(a) is Array:
            if a.ptr == 0 and a.nbytes:
                raise closed_error(a, what)
            arr = a
        else:
            arr = coerce(a, s, what)  # foreign arrays: CAI / DLPack, producer ordered before s
        if arr.kind == "pinned":
            raise DeviceMismatchError(f"{what} is pinned host memory; NCCL moves device memory: copy it to the "
                                      "device first (ck.to_device / ck.copy)")
        if arr.device != self.device:
            raise DeviceMismatchError(f"{what} is on device {arr.device.ordinal} but the communicator (rank "
                                      f"{self.rank}) is on device {self.device.ordinal}")
        if not arr.c_contiguous:
            raise ShapeError(f"{what} is a non-contiguous view (shape {arr.shape}, strides {arr.strides}): NCCL "
                             "reads count elements from one pointer; copy it to a contiguous array first "
                             "(ops.copy(view, stream=s)) and back after")
        nccl_dtype(arr.dtype, what)
        return arr

    def _peer(self, peer, what: str) -> int:
        p = _index(peer, what)
        if not 0 <= p < self.nranks:
            raise RankError(f"{what} {p} is not a rank of this communicator (0..{self.nranks - 1})")
        return p

    def _call(self, api: str, fn, *args, stream: Stream) -> None:
        try:
            with self.device.activate():
                fn(*args, stream=stream.handle)
        except Exception as exc:
            last = ""
            if type(exc).__name__ == "NCCLError":
                try:
                    last = self._nc.get_last_error()
                except Exception:
                    pass
            raise translate(exc, api, context=f"running rank {self.rank} of {self.nranks} on device "
                                              f"{self.device.ordinal}", last_error=last) from exc

    # -- collectives ----------------------------------------------------------------------------
    def all_reduce(self, send, recv=None, *, op: str = "sum", stream):
        """``recv`` on every rank = ``send`` reduced over all ranks with ``op`` ("sum", "prod",
        "max", "min", "avg"); ncclAllReduce on ``stream``. ``recv=None`` (or the same memory as
        ``send``): in place. Same dtype and element count (shapes may differ). Returns ``recv``
        (``send`` in place), the caller's own object. Raises, before anything is queued:
        ShapeError (counts, a non-contiguous view, a partial overlap), DTypeError,
        DeviceMismatchError (array or stream of another device, host memory), ClosedError,
        ValueError (unknown op); then NcclError."""
        s = self._stream(stream, "all_reduce")
        opv = redop(op, "all_reduce: op")
        x = self._operand(send, s, "all_reduce: send")
        y = x if recv is None or recv is send else self._operand(recv, s, "all_reduce: recv")
        if y is not x:
            _same_dtype(x, y, "all_reduce")
            if y.size != x.size:
                raise ShapeError(f"all_reduce: recv has {y.size} elements and send {x.size}: they must match")
            _overlap(x, y, 0, "all_reduce", "recv is send")
        if x.size:
            self._call("ncclAllReduce", self._nc.allreduce, _buf(x), _buf(y), opv, stream=s)
            _record(s, x, y)
        return send if recv is None else recv

    def all_gather(self, send, recv=None, *, stream):
        """``recv`` on every rank = the ``send`` of rank 0, then rank 1, ... (``nranks`` times
        send's elements); ncclAllGather on ``stream``. ``recv=None`` allocates it (1-D, on
        ``stream``). In place when ``send`` is ``recv``'s block of this rank
        (``recv[rank*n:(rank+1)*n]``). Returns ``recv``. Raises as :meth:`all_reduce`."""
        s = self._stream(stream, "all_gather")
        x = self._operand(send, s, "all_gather: send")
        want = self.nranks * x.size
        if recv is None:
            y = out = empty((want,), x.dtype, stream=s)
        else:
            y, out = self._operand(recv, s, "all_gather: recv"), recv
            _same_dtype(x, y, "all_gather")
            if y.size != want:
                raise ShapeError(f"all_gather: recv has {y.size} elements; {self.nranks} ranks x {x.size} sent "
                                 f"need {want}")
            _overlap(x, y, self.rank * x.nbytes, "all_gather", "send is recv's block of this rank")
        if x.size:
            self._call("ncclAllGather", self._nc.allgather, _buf(x), _buf(y), stream=s)
            _record(s, x, y)
        return out

    def reduce_scatter(self, send, recv=None, *, op: str = "sum", stream):
        """``recv`` on rank r = block r of ``send`` reduced over all ranks with ``op``; send has
        ``nranks`` blocks of recv's element count. ncclReduceScatter on ``stream``.
        ``recv=None`` allocates it (1-D, on ``stream``). In place when ``recv`` is ``send``'s
        block of this rank. Returns ``recv``. Raises as :meth:`all_reduce`."""
        s = self._stream(stream, "reduce_scatter")
        opv = redop(op, "reduce_scatter: op")
        x = self._operand(send, s, "reduce_scatter: send")
        if x.size % self.nranks:
            raise ShapeError(f"reduce_scatter: send has {x.size} elements, not a multiple of the {self.nranks} ranks")
        want = x.size // self.nranks
        if recv is None:
            y = out = empty((want,), x.dtype, stream=s)
        else:
            y, out = self._operand(recv, s, "reduce_scatter: recv"), recv
            _same_dtype(x, y, "reduce_scatter")
            if y.size != want:
                raise ShapeError(f"reduce_scatter: recv has {y.size} elements; send's {x.size} over {self.nranks} "
                                 f"ranks give {want}")
            _overlap(x, y, -self.rank * y.nbytes, "reduce_scatter", "recv is send's block of this rank")
        if y.size:
            self._call("ncclReduceScatter", self._nc.reduce_scatter, _buf(x), _buf(y), opv, stream=s)
            _record(s, x, y)
        return out

    def broadcast(self, send, recv=None, *, root: int, stream):
        """``recv`` on every rank = ``send`` of rank ``root``; ncclBroadcast on ``stream``.
        ``recv=None``: in place (``send`` is every rank's buffer). Off the root ``send`` is not
        read and may be None when ``recv`` is given. Returns ``recv`` (``send`` in place).
        Raises as :meth:`all_reduce`, and RankError for a root outside the ranks."""
        s = self._stream(stream, "broadcast")
        root = self._peer(root, "broadcast: root")
        if recv is None:
            if send is None:
                raise ArgumentError("broadcast: give send (in place) or recv")
            x = y = self._operand(send, s, "broadcast: send")
        else:
            y = self._operand(recv, s, "broadcast: recv")
            if send is None or send is recv:
                if send is None and self.rank == root:
                    raise ArgumentError(f"broadcast: rank {root} is the root and gave no send (pass send, or "
                                        "recv alone for in place)")
                x = y
            else:
                x = self._operand(send, s, "broadcast: send")
                _same_dtype(x, y, "broadcast")
                if x.size != y.size:
                    raise ShapeError(f"broadcast: recv has {y.size} elements and send {x.size}: they must match")
                _overlap(x, y, 0, "broadcast", "recv is send")
        if y.size:
            self._call("ncclBroadcast", self._nc.broadcast, _buf(x), _buf(y), root, stream=s)
            _record(s, x, y)
        return send if recv is None else recv

    # -- point to point ---------------------------------------------------------------------------
    def send(self, arr, peer: int, *, stream) -> None:
        """Send ``arr`` to rank ``peer``, which calls :meth:`recv` with this rank, the same dtype
        and element count (ncclSend on ``stream``; the stream waits for the matching receive).
        Pairs that must progress together (an exchange, a send to oneself, which NCCL
        allows) go inside one :func:`group`; a send to oneself outside a group is refused
        (RankError): its stream would wait for a receive queued after it."""
        self._p2p("send", arr, peer, stream)

    def recv(self, arr, peer: int, *, stream) -> None:
        """Receive into ``arr`` from rank ``peer`` (ncclRecv on ``stream``); see :meth:`send`."""
        self._p2p("recv", arr, peer, stream)

    def _p2p(self, kind: str, arr, peer, stream) -> None:
        s = self._stream(stream, kind)
        p = self._peer(peer, f"{kind}: peer")
        if p == self.rank and not in_group():
            raise RankError(f"{kind}: peer {p} is this rank: a send to oneself and its recv must be inside one "
                            "collectives.group(), or the stream waits for a recv queued after it")
        a = self._operand(arr, s, f"{kind}: arr")
        if a.size:
            fn = self._nc.send if kind == "send" else self._nc.recv
            self._call("ncclSend" if kind == "send" else "ncclRecv", fn, _buf(a), p, stream=s)
            _record(s, a)

    # -- errors and lifetime --------------------------------------------------------------------
    def check_async(self) -> None:
        """Raise NcclError when NCCL reports an asynchronous failure of this communicator (a
        remote rank died, a broken connection: ncclCommGetAsyncError); nothing while all is well
        or in progress. Does not block. After it raises, :meth:`abort` on every rank."""
        self._check_open("check_async")
        try:
            code = int(self._nc.get_async_error())
        except Exception as exc:
            raise translate(exc, "ncclCommGetAsyncError") from exc
        if code not in (0, 7):  # ncclSuccess, ncclInProgress
            try:
                last = self._nc.get_last_error()
            except Exception:
                last = ""
            raise NcclError(NCCL_RESULTS.get(code, f"ncclResult_t({code})"), code, "ncclCommGetAsyncError",
                            context=f"checking rank {self.rank} of {self.nranks}", detail=last)

    def close(self) -> None:
        """Destroy the communicator (ncclCommDestroy: waits for its queued operations; every rank
        on the node must close its own). Idempotent. A member of an init_all set is destroyed
        with the others when the last of them is closed."""
        if self._state != "open":
            return
        self._state = "closed"
        if self._team is not None:
            self._team.release()
            return
        try:
            with self.device.activate():
                self._nc.destroy()
        except Exception as exc:
            raise translate(exc, "ncclCommDestroy") from exc

    def abort(self) -> None:
        """Abort the communicator (ncclCommAbort): operations in flight are stopped, resources
        freed; every rank must abort its own. For a member of an init_all set, the whole set is
        aborted. Idempotent; after close() it does nothing."""
        if self._team is not None:
            self._team.abort()  # does nothing once the set was destroyed or aborted
            return
        if self._state != "open":
            return
        self._state = "aborted"
        try:
            with self.device.activate():
                self._nc.abort()
        except Exception as exc:
            raise translate(exc, "ncclCommAbort") from exc

    def __enter__(self) -> "Communicator":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _same_dtype(a: Array, b: Array, op: str) -> None:
    if a.dtype != b.dtype:
        raise DTypeError(f"{op}: send is {a.dtype} but recv is {b.dtype}: they must match")


def _index(value, what: str) -> int:
    if isinstance(value, bool):
        raise ArgumentError(f"{what} must be an int, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ArgumentError(f"{what} must be an int, got {value!r}") from None
