"""Allocation of kit arrays: stream-ordered device pool memory, pinned host and managed memory,
with frees ordered after every stream that used the memory, and the memory census.
"""

from __future__ import annotations

import weakref

import numpy as np

from . import layout as L
from .array import KINDS, Array, check_open, normalize_dtype
from .. import _census
from .. import _driver as drv
from ..device import Device, get_device
from ..errors import CudaKitError, CudaOutOfMemoryError, DeviceMismatchError, StreamError, translate
from ..stream import Stream, as_stream

__all__ = ["empty", "empty_like", "census"]


def _count(kind: str, nbytes: int, sign: int) -> None:
    _census.add_array(kind, nbytes, sign)


def census() -> dict:
    """The memory part of :func:`cudart_kit.census` (one counter, two ways to read it):
    ``{kind: {"arrays", "bytes", "high_bytes"}}`` for device, pinned and managed kit arrays."""
    return _census.memory_snapshot()


def _check_fits_device(nbytes: int, ordinal: int, total_bytes: int, kind: str = "device") -> None:
    """CudaOutOfMemoryError (a MemoryError) when ``nbytes`` exceeds the device's total memory: no
    allocation of that size can ever succeed there, so the driver is not asked."""
    if nbytes > total_bytes:
        raise CudaOutOfMemoryError(
            "CUDA_ERROR_OUT_OF_MEMORY", 2, "empty",
            context=f"checking the size of a {kind} allocation",
            advice=(f"requested {nbytes} bytes ({nbytes / 2**30:.2f} GiB) on device {ordinal} which has "
                    f"{total_bytes / 2**30:.2f} GiB in total; no device allocation that large can succeed "
                    "(ask for less, split it, or use kind='managed' to oversubscribe)"),
        )


_total_bytes: dict[int, int] = {}


def _device_total(dev: Device) -> int:
    total = _total_bytes.get(dev.ordinal)
    if total is None:
        total = _total_bytes[dev.ordinal] = int(drv.call("cuDeviceTotalMem", dev.ordinal))
    return total


# --- freeing --------------------------------------------------------------------------------

def _order_after(alloc_stream: Stream, used: set) -> Stream | None:
    """Make the free stream wait for every other stream the array was used on.

    Returns the stream to free on, or None when no open stream is left (then the caller
    synchronizes the device)."""
    free_on = alloc_stream if not alloc_stream.is_closed else None
    others = [s for s in used if not s.is_closed]
    if free_on is None and others:
        free_on = others.pop()
    if free_on is None:
        return None
    for s in others:
        if s is free_on:
            continue
        ev = s.record()
        free_on.wait(ev)
        ev.close()
    return free_on


# Frees that had to wait: an array dropped while a stream its free must be ordered on is being
# captured into a graph (the driver would turn the free, or the event that orders it, into nodes
# of someone else's graph, and refuses to free non-graph memory there). Retried by the next free
# and when a kit capture ends (graph.Capture.__exit__ calls flush_deferred). No lock: a finalizer
# may run inside any allocation, also inside the flush; list append and pop are atomic.
_deferred: list = []  # ("pool", buf, ...) / ("managed", ptr, ...): _free_pool / _free_managed's arguments


def _capturing(alloc_stream: Stream, used: set) -> bool:
    return any(not s.is_closed and drv.stream_is_capturing(s._handle) for s in (alloc_stream, *used))


def flush_deferred() -> int:
    """Free the deferred arrays whose streams are no longer being captured; returns how many
    are still waiting. Never raises."""
    items = []
    for _ in range(len(_deferred)):  # only what is waiting now: a free deferred again stays for later
        try:
            items.append(_deferred.pop())
        except IndexError:  # another thread's flush took it
            break
    for tag, *args in items:
        (_free_managed if tag == "managed" else _free_pool)(*args)
    return len(_deferred)


def _release_pool(buf, device: Device, alloc_stream: Stream, used: set, kind: str, nbytes: int,
                  in_graph: bool = False) -> None:
    """Finalizer for device-pool and pinned arrays: never raises, never holds the Array. A graph
    allocation (``in_graph``: made inside a capture) is freed on its capture stream, which records
    the free into the graph when it happens during the capture."""
    _free_pool(buf, device, alloc_stream, used, kind, nbytes, in_graph)
    if _deferred:
        flush_deferred()


def _free_pool(buf, device: Device, alloc_stream: Stream, used: set, kind: str, nbytes: int,
               in_graph: bool = False) -> None:
    try:
        with device.activate():
            if not in_graph and _capturing(alloc_stream, used):
                _deferred.append(("pool", buf, device, alloc_stream, used, kind, nbytes))
                return
            free_on = _order_after(alloc_stream, used)
            if free_on is None:
                drv.call("cuCtxSynchronize")
                buf.close()
            elif kind == "pinned":
                # cuMemFreeHost is not stream-ordered: wait for the work that may read it
                free_on.sync()
                buf.close(free_on.core)
            else:
                buf.close(free_on.core)
    except Exception:
        pass
    _count(kind, nbytes, -1)


def _release_managed(ptr: int, device: Device, alloc_stream: Stream, used: set, nbytes: int) -> None:
    _free_managed(ptr, device, alloc_stream, used, nbytes)
    if _deferred:
        flush_deferred()


def _free_managed(ptr: int, device: Device, alloc_stream: Stream, used: set, nbytes: int) -> None:
    try:
        with device.activate():
            if _capturing(alloc_stream, used):
                _deferred.append(("managed", ptr, device, alloc_stream, used, nbytes))
                return
            for s in [alloc_stream, *used]:
                if not s.is_closed:
                    s.sync()
            drv.mem_free(ptr)
    except Exception:
        pass
    _count("managed", nbytes, -1)


def empty(shape, dtype=np.float32, *, stream, kind: str = "device", device=None, _in_graph: bool = False,
          _pool=None) -> Array:
    """Allocate an uninitialised array.

    ``kind``: "device" (stream-ordered pool allocation on ``stream``), "pinned" (page-locked
    host memory, usable by every device), or "managed" (unified memory). ``device`` defaults to
    the stream's device. The array is freed in ``stream``'s order (and after every other stream
    that used it) when closed or collected.

    Raises, before any driver call: ShapeError for a shape that is not non-negative integers or
    whose size is 2**63 bytes or more; DTypeError for an object or zero-size dtype; ValueError
    for an unknown ``kind``; StreamError / ClosedError for a missing or closed stream. Then
    CudaOutOfMemoryError (a MemoryError) for a device allocation larger than the device's total
    memory (without asking the pool) or one the driver cannot satisfy.

    ``_pool`` (the hook of memory.ipc): a callable ``device -> cuda.core memory resource`` that
    device allocations come from instead of the device's default pool.
    """
    shape = L.normalize_shape(shape, "empty: shape")
    dtype = normalize_dtype(dtype, "empty: dtype")
    if kind not in KINDS:
        raise ValueError(f"empty: kind must be one of {KINDS}, got {kind!r}")
    nbytes = L.checked_nbytes(shape, dtype, "empty")
    s = as_stream(stream)
    dev = s.device if device is None else get_device(device)
    if dev != s.device:
        raise DeviceMismatchError(f"empty: device={dev.ordinal} but the stream is on device {s.device.ordinal}")
    if s._capture is not None and not _in_graph:
        raise StreamError(
            "cannot allocate on a stream that is being captured into a graph: allocate before "
            "the capture and pass out= arrays to the ops inside it"
        )
    if kind == "device" and nbytes:
        _check_fits_device(nbytes, dev.ordinal, _device_total(dev))
    strides = L.c_strides(shape, dtype.itemsize)
    used: set = set()
    if nbytes == 0:
        return Array._make(0, shape, dtype, strides, kind, dev, s, used=used)
    with dev.activate():
        if kind == "managed":
            try:
                ptr = drv.mem_alloc_managed(nbytes)
            except CudaOutOfMemoryError as exc:
                raise _oom(exc, dev, nbytes, kind) from None
            arr = Array._make(ptr, shape, dtype, strides, kind, dev, s, used=used)
            arr._finalizer = weakref.finalize(arr, _release_managed, ptr, dev, s, used, nbytes)
        elif s._capture is not None:
            # cuda.core's pools refuse capturing streams: a graph allocation node instead
            buf = _graph_allocate(dev, s, nbytes)
            arr = Array._make(int(buf.handle), shape, dtype, strides, kind, dev, s, buf=buf, used=used)
            arr._finalizer = weakref.finalize(arr, _release_pool, buf, dev, s, used, kind, nbytes, True)
        else:
            buf = _allocate(dev, s, nbytes, kind, _pool)
            arr = Array._make(int(buf.handle), shape, dtype, strides, kind, dev, s, buf=buf, used=used)
            arr._finalizer = weakref.finalize(arr, _release_pool, buf, dev, s, used, kind, nbytes)
    _count(kind, nbytes, +1)
    return arr


_pinned_mr = None
_graph_mrs: dict = {}


def _graph_allocate(dev: Device, s: Stream, nbytes: int):
    mr = _graph_mrs.get(dev.ordinal)
    if mr is None:
        from cuda.core import GraphMemoryResource

        mr = _graph_mrs[dev.ordinal] = GraphMemoryResource(dev.ordinal)
    try:
        return mr.allocate(nbytes, stream=s.core)
    except Exception as exc:
        raise translate(exc, "cuMemAllocAsync (graph)", f"allocating {nbytes} bytes inside a graph capture") from exc


def _allocate(dev: Device, s: Stream, nbytes: int, kind: str, pool=None):
    global _pinned_mr
    for attempt in (0, 1):
        try:
            if kind == "pinned":
                if _pinned_mr is None:
                    from cuda.core import LegacyPinnedMemoryResource

                    _pinned_mr = LegacyPinnedMemoryResource()
                return _pinned_mr.allocate(nbytes, stream=s.core)
            return (dev.core if pool is None else pool(dev)).allocate(nbytes, stream=s.core)
        except Exception as exc:
            err = translate(exc, "cuMemAllocAsync" if kind == "device" else "cuMemAllocHost",
                            f"allocating {nbytes} bytes of {kind} memory")
            if isinstance(err, CudaOutOfMemoryError):
                if attempt == 0 and kind == "device":
                    # cached pool memory is the usual culprit: hand it back and retry once
                    s.sync()
                    drv.mempool_trim(dev.ordinal, 0)
                    continue
                raise _oom(err, dev, nbytes, kind) from None
            raise err from exc
    raise AssertionError("unreachable")


def _oom(err: CudaOutOfMemoryError, dev: Device, nbytes: int, kind: str) -> CudaOutOfMemoryError:
    try:
        free, total = drv.mem_get_info()
        have = f"; device {dev.ordinal} has {free / 2**30:.2f} GiB free of {total / 2**30:.2f} GiB"
    except CudaKitError:
        have = ""
    return CudaOutOfMemoryError(
        err.result, err.code, err.api,
        advice=f"could not allocate {nbytes} bytes ({nbytes / 2**30:.2f} GiB) of {kind} memory{have}",
    )


def empty_like(a: Array, *, stream, kind: str | None = None) -> Array:
    """An uninitialised array of ``a``'s shape and dtype on ``stream`` (see :func:`empty`);
    ``kind`` defaults to ``a``'s (device for foreign arrays)."""
    if type(a) is Array:
        check_open(a, "empty_like: a")
    return empty(a.shape, a.dtype, stream=stream, kind=kind or (a.kind if a.kind in KINDS else "device"),
                 device=as_stream(stream).device)
