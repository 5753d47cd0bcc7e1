"""Arrays across processes (CUDA IPC): shareable arrays from an IPC-enabled pool, exported as a
picklable descriptor, imported zero-copy by another process; IPC events (signals) order work
across processes. The driver wants every import freed before the exporter frees the memory,
so an export pins it (as a DLPack export does) until released (docs/multigpu.md). The
descriptor's format and checks are in :mod:`cudart_kit.memory.ipc_descriptor`."""

from __future__ import annotations

import os
import threading
import uuid as _uuid
import weakref

import numpy as np

from .alloc import _count, _release_pool, empty
from .array import Array, _export_released, check_open
from .ipc_descriptor import (_FIELDS, FORMAT_VERSION, ArrayDescriptor, _core_payload, _device_mismatch,  # noqa: F401
                             _FdToken, _parse, _rebuild, _received_fd, _ReceivedFd)
from .. import _census
from ..device import Device, get_device
from ..errors import (ArgumentError, ClosedError, CudaDriverError, CudaKitError, DeviceMismatchError, IPCError,
                      StreamError, translate)
from ..stream import Stream, as_stream

__all__ = ["IPCError", "ArrayDescriptor", "ArrayExport", "Signal", "FORMAT_VERSION", "empty_shareable",
           "is_shareable", "export", "import_array", "close_import", "signal", "wait", "pool_stats"]

_STALE = ("the descriptor may be stale: the exporter released this export (ArrayExport.release / close), "
          "freed the array, or exited; have it export the array again")


class _Closing:
    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _failed(exc: BaseException, api: str, context: str, advice: str | None = None) -> CudaKitError:
    """The kit error for a failure in cuda.core: the CUresult it names, else an IPCError quoting it."""
    err = translate(exc, api, context)
    if isinstance(err, CudaDriverError) and advice:
        err = type(err)(err.result, err.code, api, advice=advice, context=context)
    if not isinstance(err, CudaKitError):
        err = IPCError(f"{api} failed while {context}: {type(exc).__name__}: {exc}" + (f"; {advice}" if advice else ""))
    return err


def _stream_for(stream, what: str) -> Stream:
    s = as_stream(stream)
    if s._capture is not None:
        raise StreamError(f"{what}: the stream is being captured into a graph; IPC events cannot be used in a capture")
    return s


# --- the shareable pool ---------------------------------------------------------------------

_lock = threading.Lock()
_pools: dict[int, object] = {}  # ordinal -> IPC-enabled cuda.core DeviceMemoryResource, for the process


def _shareable_pool(dev: Device):
    """The device's IPC-enabled pool: created on first use, kept for the life of the process."""
    if dev.ordinal not in _pools:
        from cuda.core import DeviceMemoryResource, DeviceMemoryResourceOptions

        with _lock:
            try:
                if dev.ordinal not in _pools:
                    _pools[dev.ordinal] = DeviceMemoryResource(dev.ordinal, DeviceMemoryResourceOptions(ipc_enabled=True))
            except Exception as exc:
                raise _failed(exc, "cuMemPoolCreate", f"creating the shareable pool of device {dev.ordinal}",
                              "pool IPC needs Linux and POSIX file-descriptor handles (the device attribute "
                              "mempool_supported_handle_types has bit 0x1)") from exc
    return _pools[dev.ordinal]


def empty_shareable(shape, dtype=np.float32, *, stream, device=None) -> Array:
    """An uninitialised device array from the device's shareable (IPC-enabled) pool, which
    :func:`export` accepts; otherwise :func:`cudart_kit.empty` (stream-ordered allocation and
    free, a device array in the census, its errors). Zero-size arrays have no memory to export."""
    return empty(shape, dtype, stream=stream, kind="device", device=device, _pool=_shareable_pool)


def _root(arr: Array) -> Array:
    return arr._base if arr._base is not None else arr  # (not `or`: Array has __len__)


def is_shareable(arr) -> bool:
    """True for a kit Array (or a view of one) from a shareable pool of this process."""
    try:  # anything else (no buffer, a closed one, another memory resource) is not shareable
        mr = _root(arr)._buf.memory_resource
        return bool(mr.is_ipc_enabled) and not mr.is_mapped
    except Exception:
        return False


def pool_stats(device=None) -> dict | None:
    """:meth:`Device.pool_stats` of this process's shareable pool of ``device`` (None before its
    first shareable allocation)."""
    mr = _pools.get(get_device(device).ordinal)
    return None if mr is None else {k: int(getattr(mr.attributes, k)) for k in (
        "reserved_mem_current", "reserved_mem_high", "used_mem_current", "used_mem_high", "release_threshold")}


# --- export, import ---------------------------------------------------------------------------

class _Imported(tuple):
    """Owner marker of an imported array's root (views inherit it): (export_id, exporter_pid)."""


class ArrayExport(_Closing):
    """The exporter's side of an export: ``descriptor`` (send it), the pin on the memory, the IPC
    event. Until released, closing or dropping the exported array refuses it here at once but
    keeps its memory for the importers; :meth:`release` / :meth:`close` (or collecting this
    object) unpin it, freeing it if the array was closed or dropped meanwhile."""

    __slots__ = ("descriptor", "_root", "_pin", "_event_fin", "__weakref__")

    def __init__(self, *_a, **_k):
        raise TypeError("use cudart_kit.memory.ipc.export(array, stream=s)")

    @classmethod
    def _make(cls, root: Array, event_core, descriptor: ArrayDescriptor) -> "ArrayExport":
        self = object.__new__(cls)
        self.descriptor, self._root = descriptor, root  # _root: the memory outlives the exporter's array
        root._exports += 1
        self._pin = weakref.finalize(self, _export_released, weakref.ref(root))
        _census.add("events", 1)
        self._event_fin = weakref.finalize(self, _census.release, event_core, "events")
        return self

    @property
    def is_released(self) -> bool:
        return not self._pin.alive

    def release(self, *signals, stream=None) -> None:
        """Unpin once the importers let go. ``signals``: what each importer's :func:`close_import`
        returned; ``stream`` (required with them) waits for them and the memory is freed after
        its work. Without signals the caller vouches no importer maps it any more (each closed
        and synced, or exited). No host blocking. Idempotent: calls after the first do nothing."""
        if not self._pin.alive:
            return
        for sig in signals:
            _check_signal(sig, "ArrayExport.release: signals")
        if signals or stream is not None:
            s = _stream_for(stream, "ArrayExport.release")
            for sig in signals:
                wait(sig, stream=s)
            self._root.record_stream(s)
        self._root = None
        self._pin()
        self._event_fin()

    def close(self) -> None:
        """:meth:`release` without signals (idempotent)."""
        self.release()

    def __repr__(self) -> str:
        return f"<cudart_kit ArrayExport {self.descriptor.export_id[:8]} {'released' if self.is_released else 'pinned'}>"


def export(arr, *, stream) -> ArrayExport:
    """Export a shareable array (or a view) to other processes, zero copy. ``stream`` waits for
    the work queued so far on every stream the array was used on, then records the IPC event
    importers wait on. Returns the :class:`ArrayExport` (send its ``descriptor``). Raises
    ArgumentError, ClosedError, IPCError (not from :func:`empty_shareable`, saying how to get
    one; imported; zero-size), StreamError, DeviceMismatchError, CudaDriverError."""
    if not isinstance(arr, Array):
        raise ArgumentError(f"export: arr must be a cudart_kit Array from empty_shareable, got {type(arr).__name__}")
    check_open(arr, "export: arr")
    root = _root(arr)
    if isinstance(root._owner, _Imported):
        raise IPCError(f"export: arr was imported from process {root._owner[1]}; only the process that allocated "
                       "it can export it (have that process export it again)")
    if root.nbytes == 0:
        raise IPCError("export: a zero-size array has no memory to share; send its shape and dtype instead")
    if not is_shareable(root):
        raise IPCError(f"export: {arr!r} is not from the shareable (IPC) pool, so no other process can map it: "
                       "allocate it with cudart_kit.memory.ipc.empty_shareable(shape, dtype, stream=s), or copy "
                       "it into such an array (ck.copy(dst, src, stream=s))")
    s = _stream_for(stream, "export")
    dev = root.device
    if s.device != dev:
        raise DeviceMismatchError(f"export: the array is on device {dev.ordinal}, the stream on {s.device.ordinal}")
    from cuda.core import EventOptions

    pool = root._buf.memory_resource
    with dev.activate():
        for other in [root.stream, *list(root._used)]:
            if other is not None and not other.is_closed and other != s:
                s.wait(other)
        try:
            buffer = root._buf.ipc_descriptor
            event = s.core.record(options=EventOptions(ipc_enabled=True))
            ready = event.ipc_descriptor
        except Exception as exc:
            raise _failed(exc, "cuMemPoolExportPointer / cuEventRecord", "exporting an array") from exc
    desc = ArrayDescriptor._make(
        pool, version=FORMAT_VERSION, pool_uuid=str(pool.uuid), buffer=buffer, ready=ready,
        root_shape=root.shape, root_strides=root.strides, root_dtype=root.dtype, shape=arr.shape,
        strides=arr.strides, offset=arr.ptr - root.ptr, dtype=arr.dtype, device_uuid=dev.uuid,
        exporter_pid=os.getpid(), export_id=_uuid.uuid4().hex)
    return ArrayExport._make(root, event, desc)


def _mapped_pool(desc: ArrayDescriptor, pool_uuid: str, dev: Device):
    """The exporter's pool mapped into this process: cuda.core's registry, else the file descriptor."""
    from cuda.core import DeviceMemoryResource

    key = _uuid.UUID(pool_uuid)
    try:
        return DeviceMemoryResource.from_registry(key)
    except Exception:  # not mapped here yet, or no longer
        pass
    if desc._fd is None:
        raise IPCError(f"import_array: the exporter's pool handle did not arrive ({desc._fd_error}): send descriptors "
                       "through multiprocessing, within one multiprocessing family, while the exporter is alive")
    try:
        mr = DeviceMemoryResource.from_allocation_handle(dev.ordinal, desc._fd)
    except Exception as exc:
        raise _failed(exc, "cuMemPoolImportFromShareableHandle", "mapping the exporter's memory pool", _STALE) from exc
    try:
        return mr.register(key)
    except Exception:
        return mr


def _wait_ipc_event(core_desc, s: Stream, what: str, advice: str) -> None:
    from cuda.core import Event as CoreEvent

    api = "cuIpcOpenEventHandle"
    try:
        ev = CoreEvent.from_ipc_descriptor(core_desc)
        api = "cuStreamWaitEvent"
        try:
            s.core.wait(ev)
        finally:
            ev.close()  # the wait is queued: the imported event handle is not needed any more
    except Exception as exc:
        raise _failed(exc, api, f"{what}: waiting on another process's event", advice) from exc


def import_array(desc, *, stream) -> Array:
    """Map an exported array, zero copy: a kit device Array over the same memory, with the
    exporter's shape, strides, offset and dtype (a view's ``base`` is the allocation). ``stream``
    waits for the export's event; the import is unmapped in its order (after every stream that
    used it) when closed or collected, and counts in the census as a device array.
    :func:`close_import` unmaps and returns the exporter's signal; ``close()`` only unmaps.
    Raises, before any driver call: ArgumentError (not an ArrayDescriptor, or one of this
    process), IPCError (other version, corrupt, no pool handle), StreamError / ClosedError,
    DeviceMismatchError (not the array's GPU); then CudaDriverError or IPCError when the
    driver refuses (a stale descriptor: the exporter released or exited)."""
    p = _parse(desc, "import_array: desc")
    s = _stream_for(stream, "import_array")
    if desc._pool is not None or any(str(mr.uuid) == p["pool_uuid"] for mr in list(_pools.values())):
        raise ArgumentError("import_array: this descriptor was exported by this process; use the exported array "
                            "itself (an import maps memory another process allocated)")
    dev = s.device
    if dev.uuid != desc.device_uuid:
        raise _device_mismatch(desc.device_uuid, dev, "import_array")
    from cuda.core import Buffer

    with dev.activate():
        mr = _mapped_pool(desc, p["pool_uuid"], dev)
        _wait_ipc_event(desc.ready, s, "import_array", _STALE)
        try:
            buf = Buffer.from_ipc_descriptor(mr, desc.buffer, stream=s.core)
        except Exception as exc:
            raise _failed(exc, "cuMemPoolImportPointer", f"importing an array of process {desc.exporter_pid}",
                          _STALE) from exc
    size, used = int(buf.size), set()
    root = Array._make(int(buf.handle), p["root_shape"], p["root_dtype"], p["root_strides"], "device", dev, s,
                       buf=buf, used=used, owner=_Imported((desc.export_id, desc.exporter_pid)))
    root._finalizer = weakref.finalize(root, _release_pool, buf, dev, s, used, "device", size)
    _count("device", size, +1)
    return root if p["is_root"] else root._view(p["shape"], p["strides"], p["offset"], p["dtype"])


def close_import(arr, *, stream) -> "Signal":
    """Unmap an import (all of it, also when given a view) and return the Signal the exporter
    passes to :meth:`ArrayExport.release`: the unmap is ordered after ``stream``'s work (and
    every stream that used the import), the Signal recorded on ``stream`` after it. Keep the
    Signal, and this process, alive until the exporter has waited on it. Idempotent. Raises
    ArgumentError (not an import), IPCError (a DLPack consumer still holds it), StreamError /
    ClosedError, DeviceMismatchError."""
    if not isinstance(arr, Array) or not isinstance(_root(arr)._owner, _Imported):
        raise ArgumentError(f"close_import: arr must be an Array from import_array, got {arr!r}; close others with .close()")
    root = _root(arr)
    s = _stream_for(stream, "close_import")
    if s.device != root.device:
        raise DeviceMismatchError(f"close_import: the import is on device {root.device.ordinal}, the stream on "
                                  f"{s.device.ordinal}")
    if root._exports:
        raise IPCError("close_import: a DLPack consumer still holds this import; release it first")
    root.record_stream(s)
    root.close()
    if root.stream is not None and not root.stream.is_closed and root.stream != s:
        s.wait(root.stream)  # the stream the unmap was queued on
    return signal(stream=s)


# --- signals ----------------------------------------------------------------------------------

class Signal(_Closing):
    """A picklable IPC event (:func:`signal`, :func:`close_import`) other processes :func:`wait`
    for. The recording process owns the event: keep the Signal (and the process) alive until
    every peer has waited; :meth:`close` (idempotent) or collection destroys it."""

    __slots__ = ("_desc", "device_uuid", "pid", "_core", "_finalizer", "__weakref__")

    def __init__(self, *_a, **_k):
        raise TypeError("use cudart_kit.memory.ipc.signal(stream=s)")

    @classmethod
    def _make(cls, desc, device_uuid, pid, core=None) -> "Signal":
        self = object.__new__(cls)
        self._desc, self.device_uuid, self.pid, self._core, self._finalizer = desc, device_uuid, pid, core, None
        if core is not None:
            _census.add("events", 1)
            self._finalizer = weakref.finalize(self, _census.release, core, "events")
        return self

    @property
    def is_closed(self) -> bool:
        return self._finalizer is not None and not self._finalizer.alive

    def close(self) -> None:
        if self._finalizer is not None:
            self._core = None
            self._finalizer()

    def __reduce__(self):
        if self.is_closed:
            raise ClosedError("this Signal was closed: its event no longer exists to be waited on")
        return Signal._make, (self._desc, self.device_uuid, self.pid)

    def __repr__(self) -> str:
        where = "local" if self._finalizer is not None else "received"
        return f"<cudart_kit Signal from pid {self.pid} {where}{' closed' if self.is_closed else ''}>"


def signal(*, stream) -> Signal:
    """Record a new IPC event on ``stream`` (after all work queued there so far) as a picklable
    :class:`Signal`. No host blocking. Raises StreamError / ClosedError, CudaDriverError."""
    s = _stream_for(stream, "signal")
    from cuda.core import EventOptions

    with s.device.activate():
        try:
            core = s.core.record(options=EventOptions(ipc_enabled=True))
            desc = core.ipc_descriptor
        except Exception as exc:
            raise _failed(exc, "cuEventRecord", "recording an IPC event",
                          "the device must support IPC events (Device.attribute('ipc_event_supported'))") from exc
    return Signal._make(desc, s.device.uuid, os.getpid(), core)


def _check_signal(sig, what: str) -> None:
    if type(sig) is not Signal:
        raise ArgumentError(f"{what} must be a Signal (from signal() or close_import()), got {type(sig).__name__}")
    _core_payload(sig._desc, "IPCEventDescriptor", what)


def wait(sig, *, stream) -> None:
    """Make future work on ``stream`` wait for the work queued before ``sig`` was recorded, in
    this process or another. No host blocking. Raises ArgumentError (not a Signal), IPCError
    (corrupt), ClosedError (a closed Signal of this process), StreamError, DeviceMismatchError
    (not the signal's GPU), CudaDriverError (the recording process closed it or exited)."""
    _check_signal(sig, "wait: sig")
    s = _stream_for(stream, "wait")
    if sig._finalizer is not None:  # recorded in this process: its own event
        if not sig._finalizer.alive:
            raise ClosedError("wait: the Signal was closed")
        with s.device.activate():
            try:
                s.core.wait(sig._core)
            except Exception as exc:
                raise _failed(exc, "cuStreamWaitEvent", "waiting on a signal") from exc
        return
    if sig.device_uuid != s.device.uuid:
        raise _device_mismatch(sig.device_uuid, s.device, "wait")
    with s.device.activate():
        _wait_ipc_event(sig._desc, s, "wait", "the process that recorded the signal closed it or exited first: it "
                        "must keep the Signal alive until every peer has waited on it")
