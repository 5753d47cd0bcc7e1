"""An nccl-tests style benchmark of the collectives (``cudart-kit collectives``): sizes swept
from ``-b`` to ``-e`` by ``-f``, ``-w`` warm-up then ``-n`` timed iterations per size, out of
place and in place, each timed with kit events on every rank's stream and averaged over the
ranks (nccl-tests' default), each checked against the host reference of :mod:`.check`
(``#wrong``), printed in nccl-tests' columns or returned as the cudart-kit/collectives/1
document. The arithmetic and the text live in :mod:`.report` (re-exported here, so
``bench.bus_factor`` and friends are tested on a CPU); this module is the GPU loop.

Ranks: :func:`run` takes this process's communicators, either the :class:`Clique` of
``Communicator.init_all(devices)`` (one process, N GPUs: the CLI's default) or the one
communicator of each process of a multi-process job (every process calls :func:`run` with
the same options; the statistics are combined over NCCL itself and rank 0 prints). Small
sizes measure Python's submission of each call as well as NCCL (the GPU waits for the host).
"""

from __future__ import annotations

import json
import os
import socket

import numpy as np

from ..bandwidth import SizeError
from ..memory import copy, empty, memset, to_device
from ..stream import Stream
from . import check
from .backend import DTYPE_NAMES, versions as _versions
from .errors import RankError
from .group import group
from .report import (
    OPS, ONE_RANK_NOTE, SCHEMA, Counts, Options, bandwidths, bus_factor, counts, document, dtype_for, footer_lines,
    header_lines, report_lines, row_line, shown_redop, shown_root, sweep, table_header, time_str, validate,
)

__all__ = ["run", "SCHEMA", "OPS", "Options", "Counts", "bus_factor", "counts", "bandwidths", "sweep", "dtype_for",
           "shown_redop", "shown_root", "time_str", "table_header", "row_line", "header_lines", "footer_lines",
           "report_lines", "document", "validate", "ONE_RANK_NOTE"]

_INFO_BYTES = 256  # one rank's description, gathered to every rank
_GIB = 1 << 30


class _Job:
    """This process's part of one run: its communicators, a stream and two buffers each."""

    def __init__(self, comms: list, opts: Options):
        self.comms, self.opts = comms, opts
        self.n = comms[0].nranks
        self.dtype = dtype_for(opts.dtype)
        self.streams = [Stream.create(c.device) for c in comms]
        self.bufs: list[tuple] = []

    def each(self, fn, *lists) -> list:
        """``fn(comm, *items, stream)`` for every local rank, inside one group when there are
        several (one thread drives them all)."""
        def body():
            return [fn(c, *items, s) for c, s, *items in zip(self.comms, self.streams, *lists)]

        if len(self.comms) > 1:
            with group():
                return body()
        return body()

    def reduce(self, rows, op: str = "sum") -> np.ndarray:
        """Each local rank's float64 vector, reduced over every rank of the job (over NCCL)."""
        arrs = [to_device(np.asarray(r, np.float64), stream=s) for r, s in zip(rows, self.streams)]
        self.each(lambda c, a, s: c.all_reduce(a, op=op, stream=s), arrs)
        out = arrs[0].to_numpy(stream=self.streams[0])
        for a in arrs:
            a.close()
        return out

    def close(self) -> None:
        for pair in self.bufs:
            for a in pair:
                a.close()
        for s in self.streams:
            s.close()


def run(comms, opts: Options = Options(), *, out=None) -> dict:
    """Measure ``opts`` on this process's communicators ``comms`` and return the document (the
    same on every rank). ``out``: a callable taking one line of text, called on the process of
    rank 0 as the report is made (header, one line per size, footer), as nccl-tests prints.

    Raises ValueError for an unknown op / dtype / reduction, SizeError (a usage error) for a
    sweep that does not fit (min above max, no size holding an element per rank, a maximum
    the devices' memory cannot hold), RankError for a root outside the ranks, NcclError and
    the kit's CUDA errors while measuring."""
    validate(opts)
    comms = list(comms)
    if not comms:
        raise RankError("run: no communicators given")
    n = comms[0].nranks
    if any(c.nranks != n for c in comms):
        raise RankError("run: the communicators belong to different communicators (their nranks differ)")
    if opts.op == "broadcast" and not 0 <= opts.root < n:
        raise RankError(f"run: broadcast root {opts.root} is not a rank (0..{n - 1})")
    sizes = sweep(opts.min_bytes, opts.max_bytes, opts.step_factor, opts.step_bytes)
    job = _Job(comms, opts)
    try:
        return _run(job, sizes, out if any(c.rank == 0 for c in comms) else None)
    finally:
        job.close()


def _run(job: _Job, sizes: list[int], out) -> dict:
    opts, n, isz = job.opts, job.n, job.dtype.itemsize
    ranks = _rank_infos(job)
    notes: list[str] = []
    sizes = _fit(job, sizes, notes)
    if n == 1:
        notes.append(ONE_RANK_NOTE.format(factor={"all_reduce": "2(n-1)/n = 0", "all_gather": "(n-1)/n = 0",
                                                  "reduce_scatter": "(n-1)/n = 0"}.get(opts.op, "1")))
    try:
        vers = _versions()
    except Exception:
        vers = {}
    nprocs = len({(r["host"], r["pid"]) for r in ranks})
    shape = dict(nranks=n, nprocs=nprocs, local_ranks=len(job.comms), ranks=ranks, versions=vers, notes=notes)
    if out is not None:
        for line in header_lines(document(opts, results=[], **shape)) + ["#"] + table_header():
            out(line)
    _allocate(job, counts(opts.op, sizes[-1], isz, n))
    for size in (sizes[-1], sizes[0]):  # warm-up at the largest and the smallest size, as nccl-tests
        views = _views(job, counts(opts.op, size, isz, n), False)
        for _ in range(opts.warmup):
            _launch(job, views)
        for s in job.streams:
            s.sync()
    results = []
    for size in sizes:
        c = counts(opts.op, size, isz, n)
        row = {"size": c.nbytes(isz), "count": c.param, "type": DTYPE_NAMES[job.dtype.name],
               "redop": shown_redop(opts.op, opts.redop), "root": shown_root(opts.op, opts.root),
               "out_of_place": _measure(job, c, False), "in_place": _measure(job, c, True)}
        results.append(row)
        if out is not None:
            out(row_line(row))
    doc = document(opts, results=results, **shape)
    if out is not None:
        for line in footer_lines(doc):
            out(line)
    return doc


def _rank_infos(job: _Job) -> list[dict]:
    """Every rank's host, pid, device, its name and PCI bus, gathered over NCCL (all_gather)."""
    host, pid = socket.gethostname()[:48], os.getpid()
    sends = []
    for c, s in zip(job.comms, job.streams):
        info = {"rank": c.rank, "device": c.device.ordinal, "name": c.device.name[:96],
                "pci_bus_id": c.device.pci_bus_id, "pid": pid, "host": host}
        raw = json.dumps(info).encode()[:_INFO_BYTES].ljust(_INFO_BYTES)
        sends.append(to_device(np.frombuffer(raw, np.uint8), stream=s))
    recvs = job.each(lambda c, x, s: c.all_gather(x, stream=s), sends)
    data = recvs[0].to_numpy(stream=job.streams[0]).tobytes()
    for a in sends + recvs:
        a.close()
    return [json.loads(data[i * _INFO_BYTES:(i + 1) * _INFO_BYTES].decode()) for i in range(job.n)]


def _fit(job: _Job, sizes: list[int], notes: list[str]) -> list[int]:
    """Drop sizes that hold no element per rank, and sizes the smallest device of the job
    cannot hold twice (send and receive buffers) with 1 GiB to spare."""
    opts, isz = job.opts, job.dtype.itemsize
    kept = [s for s in sizes if counts(opts.op, s, isz, job.n).param > 0]
    if len(kept) < len(sizes):
        notes.append(f"Skipping sizes below {job.n * isz if opts.op in ('all_gather', 'reduce_scatter') else isz} "
                     f"bytes: they hold no {job.dtype.name} element per rank")
    if not kept:
        raise SizeError(f"no size of the sweep holds one {job.dtype.name} element per rank for {opts.op} "
                        f"over {job.n} rank(s): raise -e")
    total = job.reduce([[float(c.device.memory_info().total_bytes)] for c in job.comms], op="min")[0]
    limit = int((total - _GIB) // 2)
    fits = [s for s in kept if counts(opts.op, s, isz, job.n).nbytes(isz) <= limit]
    if not fits:
        raise SizeError(f"even {kept[0]} bytes do not fit the devices' memory ({int(total)} bytes on the smallest)")
    if len(fits) < len(kept):
        notes.append(f"Reducing maxBytes to {fits[-1]} due to memory limitation")
    return fits


def _allocate(job: _Job, c: Counts) -> None:
    """Per local rank: a send buffer for the largest send, a receive buffer large enough for the
    largest receive and for reduce_scatter's in-place send; send filled with the rank's data."""
    for comm, s in zip(job.comms, job.streams):
        send = empty((c.send,), job.dtype, stream=s)
        recv = empty((max(c.send, c.recv),), job.dtype, stream=s)
        job.bufs.append((send, recv))
        copy(send, check.pattern(comm.rank, c.send, job.dtype, job.opts.redop), stream=s)
        memset(recv, 0, stream=s)


def _views(job: _Job, c: Counts, in_place: bool) -> list[tuple]:
    """(send, recv) views of each local rank's buffers for one size: the buffers' heads out of
    place; nccl-tests' in-place layouts (a rank's block inside the other buffer) in place."""
    out = []
    for comm, (S, R) in zip(job.comms, job.bufs):
        r = comm.rank
        if not in_place:
            out.append((S[:c.send], R[:c.recv]))
        elif job.opts.op == "all_gather":
            out.append((R[r * c.send_in_place:r * c.send_in_place + c.send], R[:c.recv]))
        elif job.opts.op == "reduce_scatter":
            out.append((R[:c.send], R[r * c.recv_in_place:r * c.recv_in_place + c.recv]))
        else:
            buf = R[:c.recv]
            out.append((buf, buf))
    return out


def _launch(job: _Job, views: list[tuple]) -> None:
    op, redop, root, n = job.opts.op, job.opts.redop, job.opts.root, job.n

    def one(c, xy, s):
        x, y = xy
        if op == "all_reduce":
            c.all_reduce(x, y, op=redop, stream=s)
        elif op == "all_gather":
            c.all_gather(x, y, stream=s)
        elif op == "reduce_scatter":
            c.reduce_scatter(x, y, op=redop, stream=s)
        elif op == "broadcast":
            c.broadcast(x, y, root=root, stream=s)
        else:  # sendrecv: to the next rank, from the previous one (nccl-tests' ring)
            c.send(x, (c.rank + 1) % n, stream=s)
            c.recv(y, (c.rank - 1) % n, stream=s)

    if op == "sendrecv" and len(job.comms) == 1:
        with group():  # a send and its receive progress together (to oneself with one rank)
            job.each(one, views)
    else:
        job.each(one, views)


def _measure(job: _Job, c: Counts, in_place: bool) -> dict:
    """One cell of the table: mean time over the ranks, bandwidths, and #wrong from a checked run
    (None for in-place sendrecv, which nccl-tests does not check either)."""
    views = _views(job, c, in_place)
    _launch(job, views)  # untimed, as nccl-tests' first call of each size
    for s in job.streams:
        s.sync()
    starts = [s.record(timing=True) for s in job.streams]
    for _ in range(job.opts.iters):
        _launch(job, views)
    stops = [s.record(timing=True) for s in job.streams]
    seconds = []
    for a, b in zip(starts, stops):
        b.sync()
        seconds.append(a.elapsed_ms(b) / 1e3 / job.opts.iters)
        a.close()
        b.close()
    checked = job.opts.check and not (job.opts.op == "sendrecv" and in_place)
    wrong = _check(job, c, views) if checked else [0] * len(views)
    total = job.reduce([[t, w] for t, w in zip(seconds, wrong)], op="sum")
    sec = float(total[0]) / job.n
    alg, bus = bandwidths(job.opts.op, c.param, job.dtype.itemsize, sec, job.n)
    return {"time_us": sec * 1e6, "algbw_gbps": alg, "busbw_gbps": bus, "wrong": int(total[1]) if checked else None}


def _check(job: _Job, c: Counts, views: list[tuple]) -> list[int]:
    """Fill every rank's input with its own data, poison its output, run once, compare each
    rank's output with the host reference; wrong elements per local rank."""
    op, redop, root, dt = job.opts.op, job.opts.redop, job.opts.root, job.dtype
    poison = check.poison_byte(dt)
    for comm, (x, y), s in zip(job.comms, views, job.streams):
        memset(y, poison, stream=s)
        if op != "broadcast" or comm.rank == root:
            who = root if op == "broadcast" else comm.rank
            copy(x, check.pattern(who, c.send, dt, redop), stream=s)
    _launch(job, views)
    wrong = []
    for comm, (_, y), s in zip(job.comms, views, job.streams):
        want = check.expected(op, comm.rank, job.n, c.param, dt, redop, root)
        wrong.append(check.count_wrong(y.to_numpy(stream=s), want, dt, redop, job.n))
    return wrong
