"""Copies between the device memory of two GPUs: one cuMemcpyPeerAsync for a contiguous run,
one cuMemcpy3DPeerAsync for rows at a pitch, queued on a stream of either device and ordered
after the work queued so far on the other device's array.

Why the peer calls and not cuMemcpyAsync with unified addresses: kit arrays come from each
device's stream-ordered pool, and pool memory is mapped only on the devices its pool grants
access to (cuMemPoolSetAccess, see ``Device.enable_peer_access``); the peer calls name both
contexts, so the driver can copy with or without that grant (directly over NVLink / PCIe when
the devices have a peer path and access is enabled, through host memory otherwise).
"""

from __future__ import annotations

import numpy as np

from . import layout as L
from .array import Array
from .foreign import coerce
from .. import _driver as drv
from .. import profiling as _prof
from ..errors import DeviceMismatchError, DTypeError, ShapeError
from ..event import TimingRecord, begin_timing, end_timing
from ..stream import Stream, as_stream

__all__ = ["copy_peer", "is_peer_copy"]

_DEVICE_KINDS = ("device", "foreign")  # memory that lives on one GPU


def is_peer_copy(dst, src) -> bool:
    """Whether a copy from ``src`` to ``dst`` (both kit Arrays, e.g. as ``cudart_kit.copy``
    coerced them) is between the device memory of two different GPUs: what :func:`copy_peer`
    does. False for host, pinned and managed memory and for two arrays of one device."""
    return (type(dst) is Array and type(src) is Array and dst.kind in _DEVICE_KINDS
            and src.kind in _DEVICE_KINDS and dst.device is not src.device)


def _device_memory(x, s: Stream, what: str) -> Array:
    """``x`` as a kit Array of device memory, or the refusal that points elsewhere."""
    if isinstance(x, np.ndarray):
        raise DeviceMismatchError(
            f"copy_peer: {what} is a numpy array (host memory); copy_peer copies between the device memory "
            "of two GPUs: use cudart_kit.copy(dst, src, stream=...) for host memory")
    a = coerce(x, s, f"copy_peer: {what}", hold=False)  # ClosedError for closed arrays and their views
    if a.kind not in _DEVICE_KINDS:
        raise DeviceMismatchError(
            f"copy_peer: {what} is {a.kind} memory, which every device reaches through its address: use "
            "cudart_kit.copy(dst, src, stream=...)")
    return a


def _check_pair(d: Array, sa: Array) -> None:
    """The refusals of cudart_kit.copy, in its words: dtype, shape (or element count of two
    C-contiguous sides), a destination with a zero stride."""
    if d.dtype != sa.dtype:
        raise DTypeError(f"copy_peer: dst is {d.dtype} but src is {sa.dtype} (copies never convert)")
    if d.shape != sa.shape:
        if d.size != sa.size:
            raise ShapeError(f"copy_peer: dst has shape {d.shape} ({d.size} elements) but src has shape "
                             f"{sa.shape} ({sa.size} elements)")
        if not (d.c_contiguous and sa.c_contiguous):
            raise ShapeError(f"copy_peer: dst has shape {d.shape} and src {sa.shape}: copies between different "
                             "shapes need both sides C-contiguous (reshape a view first)")
    if L.has_zero_stride(d.shape, d.strides):
        raise ShapeError(f"copy_peer: dst has a zero stride (strides {d.strides} for shape {d.shape}): several "
                         "elements share one address")


def _copier(d: Array, sa: Array):
    """The one driver call of the copy as ``fn(stream)``, chosen from the layouts before anything
    is queued; ShapeError naming the layouts a copy between devices takes otherwise."""
    dst_ctx, src_ctx = d.device.primary_context, sa.device.primary_context
    itemsize = d.itemsize
    if d.c_contiguous and sa.c_contiguous:
        n = d.nbytes
        return lambda s: drv.memcpy_peer_async(d.ptr, dst_ctx, sa.ptr, src_ctx, n, s.handle)
    shape = d.shape
    pitched = L.pitched_2d(shape, d.strides, sa.strides, itemsize)
    if pitched is None:
        raise ShapeError(
            f"copy_peer: dst (strides {d.strides}) and src (strides {sa.strides}) of shape {shape} are not one "
            "contiguous run or rows at a pitch on both sides, the layouts a copy between devices takes (a "
            "row block a[2:9], a column block a[:, 3:17], stepped rows a[::2]); copy the strided side into a "
            "contiguous array on its own device first (cudart_kit.copy(tmp, view, stream=...)) and copy that")
    rows, width, dp, sp = pitched
    d0 = d.ptr + L.extent(shape, d.strides, itemsize)[0]
    s0 = sa.ptr + L.extent(shape, sa.strides, itemsize)[0]
    if rows == 1:
        return lambda s: drv.memcpy_peer_async(d0, dst_ctx, s0, src_ctx, width, s.handle)
    return lambda s: drv.memcpy_2d_peer_async(d0, dst_ctx, dp, s0, src_ctx, sp, width, rows, s.handle)


def _order_after_uses(far: Array, s: Stream) -> None:
    """Make ``s`` wait for the work queued so far on every open stream that used ``far`` (its
    allocation stream and those kit ops or ``record_stream`` recorded): an event recorded on
    each, in its own device's context, then waited on by ``s`` (a wait may cross devices)."""
    root = far._base if far._base is not None else far
    for other in {root.stream, *root._used}:
        if other is None or other.is_closed or other == s:
            continue
        ev = other.record()
        try:
            s.wait(ev)
        finally:
            ev.close()


@_prof.traced("copy_peer")
def copy_peer(dst, src, *, stream, timed: bool = False) -> TimingRecord:
    """Asynchronous copy of ``src`` into ``dst``, two arrays in the device memory of two GPUs
    (kit Arrays and their views, or foreign device arrays), on ``stream``.

    ``stream`` belongs to either device: on ``dst``'s device the copy pulls from the peer (what
    nvbandwidth calls a read), on ``src``'s it pushes to the peer (a write). Before the copy,
    ``stream`` waits for the work queued so far on the *other* device's array: on its allocation
    stream and on every stream a kit operation or :meth:`Array.record_stream` recorded on it (a
    GPU-side wait on an event, the host does not block). Work on the stream's own device is
    ordered as for :func:`cudart_kit.copy`: by the caller. Later work on other streams that uses
    ``dst`` must wait for ``stream`` (``other.wait(stream)``). Both arrays record ``stream``, so
    neither is freed before the copy ran. Nothing synchronizes; faults surface at the next sync.

    The path: cuMemcpyPeerAsync when both sides are one contiguous run, cuMemcpy3DPeerAsync when
    both are rows at a pitch. It needs no peer access (without one the driver copies through
    host memory); after ``Device.enable_peer_access`` it runs over the direct path. Arrays of
    one device are copied by :func:`cudart_kit.copy`. Same dtype; the same shape, or the same
    element count when both sides are C-contiguous. Returns a TimingRecord (with events on
    ``stream`` when ``timed``).

    Raises before anything is queued: ClosedError for a closed stream or array (or a view of
    one); DeviceMismatchError for host memory (numpy, pinned, managed: use cudart_kit.copy) and
    for a stream of a third device; DTypeError / ShapeError for different dtypes or shapes, a
    destination with a zero stride, or layouts that are neither contiguous nor pitched rows
    (the message says which layouts work).
    """
    s = as_stream(stream)
    d = _device_memory(dst, s, "dst")
    sa = _device_memory(src, s, "src")
    if d.device is sa.device:
        return Array._transfer.copy(d, sa, stream=s, timed=timed)
    _check_pair(d, sa)
    if s.device is not d.device and s.device is not sa.device:
        raise DeviceMismatchError(
            f"copy_peer: the stream is on device {s.device.ordinal} but the copy is between device "
            f"{sa.device.ordinal} (src) and device {d.device.ordinal} (dst): use a stream of dst's device (it "
            "pulls from the peer) or of src's device (it pushes to the peer)")
    nbytes = d.nbytes
    issue = _copier(d, sa) if nbytes else None
    start = begin_timing(s, timed)
    if issue is not None:
        _order_after_uses(sa if s.device is d.device else d, s)
        with s.device.activate():
            issue(s)
    d.record_stream(s)
    sa.record_stream(s)
    return end_timing("copy", s, start, {"bytes": nbytes, "direction": "D2D", "src_device": sa.device.ordinal,
                                         "dst_device": d.device.ordinal})
