"""The IPC descriptor of a shared array (cudart_kit.memory.ipc): its fields, how it pickles (the
pool's file descriptor travels with it, once per pickle), and every check an import can make
before the driver is asked."""

from __future__ import annotations

import operator
import os
import uuid as _uuid
import weakref

import numpy as np

from . import layout as L
from .array import normalize_dtype
from ..device import device_count
from ..errors import ArgumentError, DeviceMismatchError, IPCError, visible_devices_hint

FORMAT_VERSION = 1   # of the ArrayDescriptor fields; an importer refuses any other
_PAYLOAD_BYTES = 64  # sizeof(CUmemPoolPtrExportData) == sizeof(CUipcEventHandle)

# --- descriptors ----------------------------------------------------------------------------

_FIELDS = ("version", "pool_uuid", "buffer", "ready", "root_shape", "root_strides", "root_dtype",
           "shape", "strides", "offset", "dtype", "device_uuid", "exporter_pid", "export_id")


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


class _FdToken:
    """A pool's file descriptor as pickled. One token per file descriptor and process, so a
    pickle that carries several descriptors of one pool (a Process's arguments, a list sent
    through a Queue) passes the fd once: multiprocessing refuses an fd listed twice for a child."""

    __slots__ = ("fd",)

    def __init__(self, fd: int):
        self.fd = fd

    def __reduce__(self):
        from multiprocessing.reduction import DupFd

        return _received_fd, (DupFd(self.fd),)


class _ReceivedFd:
    """A pool's file descriptor as received, shared by the descriptors unpickled with it and
    closed when the last of them goes (or when called)."""

    __slots__ = ("fd", "error", "_closer", "_token", "__weakref__")

    def __init__(self, fd: "int | None", error: "str | None" = None):
        self.fd, self.error, self._token = fd, error, None
        self._closer = None if fd is None else weakref.finalize(self, _close_fd, fd)

    def __call__(self) -> None:
        if self._closer is not None:
            self._closer()

    def token(self) -> _FdToken:
        if self._token is None:
            self._token = _FdToken(self.fd)
        return self._token


def _received_fd(token) -> _ReceivedFd:
    """Unpickling: takes the pool's file descriptor now (the sender holds a duplicate until then).
    Never raises: import_array reports what is wrong."""
    try:
        return _ReceivedFd(token.detach())
    except Exception as exc:
        return _ReceivedFd(None, f"{type(exc).__name__}: {exc}")


_tokens: dict = {}  # a shareable pool's fd -> its _FdToken (pools live as long as the process)


class ArrayDescriptor:
    """What an importer maps: send it through :mod:`multiprocessing` (Process arguments, Queue,
    Pipe), which carries the pool's file descriptor too. Fields: ``shape``, ``strides`` (bytes),
    ``dtype``, ``offset`` (bytes from the allocation's start), ``root_shape`` / ``root_strides`` /
    ``root_dtype`` (the allocation), ``device_uuid``, ``exporter_pid``, ``export_id``, ``version``;
    ``buffer`` / ``ready``: cuda.core's IPC descriptors of the allocation and the export's event.
    Unpickle descriptors from trusted processes only."""

    __slots__ = _FIELDS + ("_pool", "_fd", "_fd_error", "_fd_closer", "__weakref__")

    def __init__(self, *_a, **_k):
        raise TypeError("use cudart_kit.memory.ipc.export(array, stream=s).descriptor")

    @classmethod
    def _make(cls, pool=None, received: "_ReceivedFd | None" = None, **fields) -> "ArrayDescriptor":
        self = object.__new__(cls)
        for name in _FIELDS:
            setattr(self, name, fields.get(name))
        self._pool = pool
        self._fd = None if received is None else received.fd
        self._fd_error = None if received is None else received.error
        self._fd_closer = received  # shared by descriptors received together; callable: closes
        return self

    def _replace(self, **changes) -> "ArrayDescriptor":
        """A copy with fields changed (tests forge bad descriptors so); it shares the pool, and
        a received one gets its own duplicate of the pool's file descriptor."""
        received = self._fd_closer
        if self._fd is not None:
            received = _ReceivedFd(os.dup(self._fd))
        return ArrayDescriptor._make(self._pool, received, **{**{n: getattr(self, n) for n in _FIELDS}, **changes})

    def __reduce__(self):
        if self._pool is not None:
            fd = int(self._pool.allocation_handle)
            token = _tokens.get(fd)
            if token is None:
                token = _tokens[fd] = _FdToken(fd)
        elif self._fd is not None:
            token = self._fd_closer.token()
        else:
            raise IPCError(f"this ArrayDescriptor has no pool handle to send on ({self._fd_error})")
        return _rebuild, ({n: getattr(self, n) for n in _FIELDS}, token)

    def __repr__(self) -> str:
        return f"<cudart_kit ArrayDescriptor shape={self.shape} dtype={self.dtype} from pid {self.exporter_pid}>"


def _rebuild(fields, received) -> ArrayDescriptor:
    """Unpickling (never raises: import_array reports what is wrong)."""
    if not isinstance(received, _ReceivedFd):
        received = _ReceivedFd(None, f"no pool file descriptor arrived ({type(received).__name__})")
    fields = fields if isinstance(fields, dict) else {}
    return ArrayDescriptor._make(None, received, **{k: fields[k] for k in _FIELDS if k in fields})


def _core_payload(obj, kind: str, what: str) -> tuple:
    """(payload, 2nd field) of a cuda.core IPC descriptor via its pickle protocol (its one public
    view), checked before cuda.core copies 64 bytes out of it."""
    if type(obj).__name__ != kind:
        raise IPCError(f"{what} is {type(obj).__name__}, not a cuda.core {kind}")
    try:
        payload, second = obj.__reduce__()[1]
    except Exception:
        raise IPCError(f"{what}: the fields of this {kind} cannot be read") from None
    if type(payload) is not bytes or len(payload) != _PAYLOAD_BYTES:
        got = f"{len(payload)} bytes" if isinstance(payload, bytes) else type(payload).__name__
        raise IPCError(f"{what}: a cuda.core {kind} carries {_PAYLOAD_BYTES} bytes of driver data, this one {got}")
    return payload, second


def _ints(values, n: int, what: str) -> tuple:
    t = tuple(values)
    if len(t) != n or any(isinstance(v, (bool, np.bool_)) for v in t):
        raise ValueError(f"{what} {t!r} is not {n} integers")
    return tuple(operator.index(v) for v in t)


def _parse(desc, what: str) -> dict:
    """Every check an import can make without the driver; IPCError names the bad field."""
    if type(desc) is not ArrayDescriptor:
        hint = " (send export.descriptor, not the ArrayExport)" if type(desc).__name__ == "ArrayExport" else ""
        raise ArgumentError(f"{what} must be the ArrayDescriptor that cudart_kit.memory.ipc.export made, "
                            f"got {type(desc).__name__}{hint}")
    if desc.version != FORMAT_VERSION:
        raise IPCError(f"{what}: descriptor format version {desc.version!r}, this cudart_kit reads version "
                       f"{FORMAT_VERSION}: run the same cudart_kit on both sides")
    try:
        if desc.dtype is None or desc.root_dtype is None:  # np.dtype(None) would be float64
            raise ValueError("it names no dtype")
        p = {"root_dtype": normalize_dtype(desc.root_dtype, "root dtype"), "dtype": normalize_dtype(desc.dtype, "dtype"),
             "root_shape": L.normalize_shape(desc.root_shape, "root shape"), "shape": L.normalize_shape(desc.shape, "shape")}
        p["root_strides"] = _ints(desc.root_strides, len(p["root_shape"]), "root strides")
        p["strides"] = _ints(desc.strides, len(p["shape"]), "strides")
        p["offset"] = _ints((desc.offset,), 1, "offset")[0]
        p["pool_uuid"] = str(_uuid.UUID(str(desc.pool_uuid)))
        if not isinstance(desc.device_uuid, str) or not desc.device_uuid:
            raise ValueError(f"device uuid {desc.device_uuid!r} is not a GPU UUID")
        size = _ints((_core_payload(desc.buffer, "IPCBufferDescriptor", "its buffer")[1],), 1, "allocation size")[0]
        _core_payload(desc.ready, "IPCEventDescriptor", "its event")
        for name, (lo, hi), at in (("root array", L.extent(p["root_shape"], p["root_strides"], p["root_dtype"].itemsize), 0),
                                   ("array", L.extent(p["shape"], p["strides"], p["dtype"].itemsize), p["offset"])):
            if at + lo < 0 or at + max(hi, lo) > size:
                raise ValueError(f"the {name} spans bytes [{at + lo}, {at + max(hi, lo)}) of a {size}-byte allocation")
    except (TypeError, ValueError) as exc:  # the kit's ShapeError / DTypeError / IPCError too
        raise IPCError(f"{what}: corrupt ArrayDescriptor: {exc}") from None
    if desc._pool is None and desc._fd is None and desc._fd_error is None:
        raise IPCError(f"{what}: the descriptor carries no pool handle (not made by export nor received "
                       "through multiprocessing)")
    p["is_root"] = (p["shape"], p["strides"], p["offset"], p["dtype"]) == (
        p["root_shape"], p["root_strides"], 0, p["root_dtype"])
    return p


def _device_mismatch(want: str, dev, what: str) -> DeviceMismatchError:
    try:  # name the local ordinal of that GPU, if this process sees it
        from cuda.core import Device as CoreDevice

        where = next((f"it is device {i} here" for i in range(device_count()) if CoreDevice(i).uuid == want),
                     visible_devices_hint("no device visible here has it"))
    except Exception:
        where = "pass a stream of that GPU"
    return DeviceMismatchError(f"{what}: the memory is on the GPU with UUID {want}, the stream on device "
                               f"{dev.ordinal} ({dev.uuid}); {where}")
