"""Copies between any two layouts (host numpy arrays of any strides, device / pinned / managed
views, foreign arrays), fills and memsets of views, and host -> device construction.

The path is chosen from the layouts, never a silent wrong answer and never a hidden
synchronization: one cuMemcpyAsync when both sides are one contiguous run, cuMemcpy2DAsync when
both are pitched rows (a row block, a column block) and one side is host memory or another
device's, the strided copy kernel otherwise (with a stream-ordered device staging buffer when
one side is pageable host memory).
"""

from __future__ import annotations

import operator

import numpy as np

from . import layout as L
from .alloc import empty
from .array import Array, check_open
from .foreign import coerce, is_device_object
from .peer import copy_peer, is_peer_copy
from .strided import element_aligned, launch_strided
from .. import _driver as drv
from .. import profiling as _prof
from .._launch import blocks_for, fast_launch
from ..module import kit_kernel
from ..errors import ArgumentError, DeviceMismatchError, DTypeError, ShapeError
from ..event import TimingRecord, begin_timing, end_timing
from ..stream import Stream, as_stream

__all__ = ["copy", "to_device", "zeros", "memset", "fill", "fill_bits", "fill_pattern", "WIDTH_NAMES"]

WIDTH_NAMES = {1: "b8", 2: "b16", 4: "b32", 8: "b64"}  # kernel suffix per element width
_WIDTH = WIDTH_NAMES
_BITS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _host_pointer(a: np.ndarray, writable: bool) -> int:
    if writable and not a.flags.writeable:
        raise ValueError("copy: dst (a numpy array) is read-only")
    return a.ctypes.data


def _bit_width(ptrs: list, strides: list, itemsize: int) -> int:
    """The widest of 8/4/2/1 bytes that divides the item size, every stride and every pointer:
    the strided copy moves elements as that many words each (any dtype, any alignment)."""
    for w in (8, 4, 2, 1):
        if itemsize % w == 0 and all(p % w == 0 for p in ptrs) and all(x % w == 0 for st in strides for x in st):
            return w
    return 1


def _copy_kernel(d_ptr: int, d_strides: tuple, s_ptr: int, s_strides: tuple, shape: tuple, itemsize: int,
                 s: Stream) -> None:
    """Strided device copy (both sides device-accessible from ``s``'s device)."""
    w = _bit_width([d_ptr, s_ptr], [d_strides, s_strides], itemsize)
    if w != itemsize:  # an element is itemsize // w words: one more (innermost) dimension
        shape = shape + (itemsize // w,)
        d_strides, s_strides = d_strides + (w,), s_strides + (w,)
    launch_strided(f"copy_{_WIDTH[w]}_s", (), [s_ptr, d_ptr], [s_strides, d_strides], shape, w, s)


def _on_stream_device(a: Array, s: Stream) -> bool:
    """Whether ``a`` is device memory of the stream's device (a kernel there can reach it)."""
    return a.kind in ("device", "foreign") and a.device is s.device


def _device_side(a: Array, s: Stream, what: str) -> None:
    if a.kind in ("device", "foreign") and a.ptr and a.device is not s.device:
        raise DeviceMismatchError(
            f"{what} is on device {a.device.ordinal} but the stream is on device {s.device.ordinal}: a copy "
            "between layouts that are not contiguous or pitched runs a kernel on the stream's device"
        )


@_prof.traced("copy")
def copy(dst, src, *, stream, timed: bool = False) -> TimingRecord:
    """Asynchronous copy of ``src`` into ``dst`` on ``stream``, between any two layouts.

    Either side may be a kit Array or a view of one (device, pinned, managed), a foreign device
    array (CAI / DLPack, strided ones too), or a numpy array of any strides (pageable host
    memory; not both numpy). Same dtype; the same shape, or the same element count when both
    sides are C-contiguous (then copied in row-major order). The path: one cuMemcpyAsync when
    both sides are a single contiguous run; cuMemcpy2DAsync when both are rows at a pitch (a
    row or column block of a matrix) and one side is host (numpy, pinned) or another device's
    memory; else the strided copy kernel on the stream's device (pitched device-to-device
    copies too: its 16-byte rows are faster there than the 2-D copy engine path). A
    strided side next to pageable numpy memory is staged through a contiguous device buffer
    allocated and freed on ``stream``; a non-contiguous numpy source is first packed on the
    host, a non-contiguous numpy destination is unpacked on the host after the device->host
    copy, which with pageable memory has finished when the driver returns (CUDA's rule for
    pageable destinations; no extra synchronization). Device memory of two GPUs is copied by
    :func:`cudart_kit.memory.peer.copy_peer` (contiguous or pitched layouts; others raise
    ShapeError). Returns a TimingRecord (with events when ``timed``).

    Raises before anything is queued: ClosedError for a closed stream or a closed array (or a
    view of one) on either side; DTypeError / ShapeError for different dtypes or shapes, or a
    destination with a zero stride (several elements at one address); ValueError for a
    read-only numpy destination or a partial overlap of the two sides; DeviceMismatchError
    for host DLPack tensors or a strided copy that involves another device; ArgumentError for
    an object that is not an array.
    """
    s = as_stream(stream)
    dst_host = isinstance(dst, np.ndarray)
    src_host = isinstance(src, np.ndarray)
    if dst_host and src_host:
        raise TypeError("copy: both dst and src are numpy arrays: use numpy to copy host memory")
    d = dst if dst_host else coerce(dst, s, "copy: dst", hold=False)
    sa = src if src_host else coerce(src, s, "copy: src", hold=False)
    if not (dst_host or src_host) and is_peer_copy(d, sa):
        # device memory of two GPUs: the peer copy, ordered after the other GPU's use
        return copy_peer(d, sa, stream=s, timed=timed)
    if d.dtype != sa.dtype:
        raise DTypeError(f"copy: dst is {d.dtype} but src is {sa.dtype} (copies never convert)")
    d_contig = d.flags.c_contiguous if dst_host else d.c_contiguous
    s_contig = sa.flags.c_contiguous if src_host else sa.c_contiguous
    if tuple(d.shape) != tuple(sa.shape):
        if d.size != sa.size:
            raise ShapeError(f"copy: dst has shape {tuple(d.shape)} ({d.size} elements) but src has shape "
                             f"{tuple(sa.shape)} ({sa.size} elements)")
        if not (d_contig and s_contig):
            raise ShapeError(f"copy: dst has shape {tuple(d.shape)} and src {tuple(sa.shape)}: copies between "
                             "different shapes need both sides C-contiguous (reshape a view first)")
    if dst_host and not d.flags.writeable:
        raise ValueError("copy: dst (a numpy array) is read-only")
    if L.has_zero_stride(tuple(d.shape), tuple(d.strides)):
        raise ShapeError(f"copy: dst has a zero stride (strides {tuple(d.strides)} for shape {tuple(d.shape)}): "
                         "several elements share one address")
    itemsize = d.dtype.itemsize
    nbytes = d.size * itemsize
    if not dst_host and not src_host and nbytes:
        dr = L.extent(d.shape, d.strides, itemsize)
        sr = L.extent(sa.shape, sa.strides, itemsize)
        same = d.ptr == sa.ptr and ((tuple(d.shape) == tuple(sa.shape) and tuple(d.strides) == tuple(sa.strides))
                                     or (d.c_contiguous and sa.c_contiguous))
        if not same and L.overlaps((d.ptr + dr[0], d.ptr + dr[1]), (sa.ptr + sr[0], sa.ptr + sr[1])):
            # (the very same view, or the same contiguous bytes under another shape, is a copy of
            # each element onto itself: allowed; a transpose of itself, or any other view sharing
            # memory, would race)
            raise ValueError("copy: dst and src overlap in memory; copy through a separate array")
    start = begin_timing(s, timed)
    direction = ("H2D" if src_host else "D2H" if dst_host else
                 "H2D" if sa.kind == "pinned" else "D2H" if d.kind == "pinned" else "D2D")
    if nbytes:
        with s.device.activate():
            if src_host:
                _from_host(d, sa, s)
            elif dst_host:
                _to_host(d, sa, s)
            else:
                _device_to_device(d, sa, s)
    if not dst_host:
        d.record_stream(s)
    if not src_host:
        sa.record_stream(s)
    return end_timing("copy", s, start, {"bytes": nbytes, "direction": direction})


def _shape_strides(a) -> tuple[tuple, tuple]:
    return tuple(a.shape), tuple(a.strides)


def _device_to_device(d: Array, sa: Array, s: Stream) -> None:
    itemsize = d.dtype.itemsize
    if d.c_contiguous and sa.c_contiguous:
        drv.memcpy_async(d.ptr, sa.ptr, d.nbytes, s.handle)
        return
    shape = tuple(d.shape)
    pitched = L.pitched_2d(shape, tuple(d.strides), tuple(sa.strides), itemsize)
    if pitched is not None:
        rows, width, dp, sp = pitched
        if rows == 1:
            drv.memcpy_async(d.ptr + L.extent(shape, d.strides, itemsize)[0],
                             sa.ptr + L.extent(shape, sa.strides, itemsize)[0], width, s.handle)
            return
        if not (_on_stream_device(d, s) and _on_stream_device(sa, s)):
            # pinned host or another device's memory on one side: the copy engine's 2-D copy
            drv.memcpy_2d_async(d.ptr, dp, sa.ptr, sp, width, rows, s.handle)
            return
        # device memory on both sides: the copy kernel's 16-byte rows run at ~0.93x a
        # contiguous copy where cuMemcpy2DAsync D2D reaches ~0.4x (H200)
    _device_side(d, s, "copy: dst")
    _device_side(sa, s, "copy: src")
    _copy_kernel(d.ptr, tuple(d.strides), sa.ptr, tuple(sa.strides), shape, itemsize, s)


def _from_host(d: Array, h: np.ndarray, s: Stream) -> None:
    itemsize = d.dtype.itemsize
    if d.c_contiguous and h.flags.c_contiguous:
        drv.memcpy_htod_async(d.ptr, _host_pointer(h, False), d.nbytes, s.handle)
        return
    shape = tuple(d.shape)
    if h.shape != d.shape:  # both contiguous handled above; shapes equal from here on
        h = h.reshape(shape)
    pitched = L.pitched_2d(shape, tuple(d.strides), tuple(h.strides), itemsize)
    if pitched is None and not h.flags.c_contiguous:
        h = np.ascontiguousarray(h)  # pack the host side; the device side may still be pitched
        pitched = L.pitched_2d(shape, tuple(d.strides), tuple(h.strides), itemsize)
    if pitched is not None:
        rows, width, dp, sp = pitched
        d0 = d.ptr + L.extent(shape, d.strides, itemsize)[0]
        h0 = _host_pointer(h, False) + L.extent(shape, h.strides, itemsize)[0]
        if rows == 1:
            drv.memcpy_htod_async(d0, h0, width, s.handle)
        else:
            drv.memcpy_2d_async(d.ptr, dp, _host_pointer(h, False), sp, width, rows, s.handle, src_host=True)
        return
    # a strided device side: stage through a contiguous device buffer, freed in stream order
    _device_side(d, s, "copy: dst")
    tmp = empty(shape, d.dtype, stream=s, _in_graph=True)
    try:
        drv.memcpy_htod_async(tmp.ptr, _host_pointer(h, False), tmp.nbytes, s.handle)
        _copy_kernel(d.ptr, tuple(d.strides), tmp.ptr, tmp.strides, shape, itemsize, s)
    finally:
        tmp.close()


def _to_host(h: np.ndarray, sa: Array, s: Stream) -> None:
    itemsize = sa.dtype.itemsize
    hp = _host_pointer(h, True)
    if sa.c_contiguous and h.flags.c_contiguous:
        drv.memcpy_dtoh_async(hp, sa.ptr, sa.nbytes, s.handle)
        return
    shape = tuple(sa.shape)
    pitched = L.pitched_2d(shape, tuple(h.strides), tuple(sa.strides), itemsize)
    if pitched is not None:
        rows, width, dp, sp = pitched
        if rows == 1:
            drv.memcpy_dtoh_async(hp + L.extent(shape, h.strides, itemsize)[0],
                                  sa.ptr + L.extent(shape, sa.strides, itemsize)[0], width, s.handle)
        else:
            drv.memcpy_2d_async(hp, dp, sa.ptr, sp, width, rows, s.handle, dst_host=True)
        return
    if sa.c_contiguous:  # a strided numpy destination: land contiguous, unpack on the host
        tmp_h = np.empty(shape, sa.dtype)
        drv.memcpy_dtoh_async(tmp_h.ctypes.data, sa.ptr, sa.nbytes, s.handle)
        h[...] = tmp_h  # pageable destination: the copy above has completed
        return
    # a strided device source: gather into a contiguous device buffer first
    _device_side(sa, s, "copy: src")
    tmp = empty(shape, sa.dtype, stream=s, _in_graph=True)
    try:
        _copy_kernel(tmp.ptr, tmp.strides, sa.ptr, tuple(sa.strides), shape, itemsize, s)
        if h.flags.c_contiguous:
            drv.memcpy_dtoh_async(hp, tmp.ptr, tmp.nbytes, s.handle)
        else:
            tmp_h = np.empty(shape, sa.dtype)
            drv.memcpy_dtoh_async(tmp_h.ctypes.data, tmp.ptr, tmp.nbytes, s.handle)
            h[...] = tmp_h
    finally:
        tmp.close()


def to_device(host, *, stream, kind: str = "device", dtype=None) -> Array:
    """Allocate an array like the numpy array ``host`` (C-contiguous, same shape) and copy it in
    on ``stream``.

    ``host``: a numpy array of any strides or anything ``np.asarray`` takes (lists, CPU
    tensors). A pageable ``host`` may be reused as soon as this returns (the driver has staged
    it). Device memory (a kit Array, a CUDA tensor / CuPy array) is refused with
    DeviceMismatchError: take a zero-copy view with :func:`asarray` or copy it with :func:`copy`."""
    if not isinstance(host, np.ndarray) and (isinstance(host, Array) or is_device_object(host)):
        what = "a cudart_kit.Array" if isinstance(host, Array) else f"a {type(host).__name__} in device memory"
        raise DeviceMismatchError(
            f"to_device: host is {what}; to_device copies host memory. Use cudart_kit.asarray(obj) for a "
            "zero-copy view, or cudart_kit.copy(dst, obj, stream=...) to copy it"
        )
    kind_of = type(host).__name__
    try:
        host = np.asarray(host, dtype=dtype)
    except TypeError as exc:
        raise DTypeError(f"to_device: host ({kind_of}) cannot be converted to a numeric array: {exc}") from None
    except ValueError as exc:  # ragged nested sequences, unparsable strings
        raise ShapeError(f"to_device: host ({kind_of}) is not a regular array: {exc}") from None
    if host.dtype.hasobject:
        raise DTypeError(f"to_device: host ({kind_of}) cannot be converted to a numeric array: "
                         "its elements are Python objects")
    arr = empty(host.shape, host.dtype, stream=stream, kind=kind)
    copy(arr, host, stream=stream)
    return arr


def zeros(shape, dtype=np.float32, *, stream, kind: str = "device") -> Array:
    """Allocate and zero on ``stream`` (a byte memset; asynchronous)."""
    arr = empty(shape, dtype, stream=stream, kind=kind)
    memset(arr, 0, stream=stream)
    return arr


def fill_pattern(value, dtype: np.dtype, what: str = "fill"):
    """``value`` converted to ``dtype`` and reinterpreted as an unsigned integer of its width."""
    try:
        typed = np.array(value, dtype=dtype)
    except OverflowError:
        raise DTypeError(f"{what}: value {value!r} does not fit in {dtype}") from None
    except (TypeError, ValueError) as exc:
        raise DTypeError(f"{what}: value {value!r} cannot be represented as {dtype}: {exc}") from None
    if dtype.kind in "iu" and typed.item() != value:
        raise DTypeError(f"{what}: value {value!r} does not fit in {dtype}")
    return typed.view(_BITS[dtype.itemsize])[()]


def _operand(a, s: Stream, what: str) -> Array:
    arr = check_open(a, what) if type(a) is Array else coerce(a, s, what, hold=False)
    if arr.kind in ("device", "foreign") and arr.ptr and arr.device is not s.device:
        raise DeviceMismatchError(
            f"{what} is on device {arr.device.ordinal} but the stream is on device {s.device.ordinal}")
    return arr


def fill_bits(o: Array, bits, s: Stream, timed: bool, label: str = "fill"):
    """Write the ``o.itemsize``-byte pattern ``bits`` (an unsigned numpy scalar) to every element
    of ``o`` (any layout) on ``s``; None when there is nothing to do, else a TimingRecord."""
    if not o.size:
        return None
    if L.has_zero_stride(o.shape, o.strides):
        raise ShapeError(f"{label}: out has a zero stride (strides {o.strides}): several elements share one address")
    w = o.itemsize
    width = _WIDTH[w]
    o.record_stream(s)
    if o.c_contiguous:
        vec = not (o.ptr & 15)
        name = f"fill_{width}" + ("" if vec else "_u")
        per = 16 // w if vec else 1
        return fast_launch(kit_kernel("vector", name), blocks_for(-(-o.size // per), 256), 256,
                           (bits, o.ptr, o.size), s, timed)
    if not element_aligned(o.ptr, o.strides, w):
        raise ShapeError(f"{label}: out's elements are not {w}-byte aligned (ptr {hex(o.ptr)}, strides {o.strides})")
    return launch_strided(f"fill_{width}_s", (bits,), [o.ptr], [o.strides], o.shape, w, s, timed, label)


def fill(out, value, *, stream, timed: bool = False):
    """Set every element of ``out`` (any layout) to ``value`` on ``stream``; see
    :func:`cudart_kit.ops.fill`."""
    s = as_stream(stream)
    o = _operand(out, s, "fill: out")
    if o.itemsize not in _WIDTH:
        raise DTypeError(f"fill: out is {o.dtype} ({o.itemsize} bytes); fill supports element widths 1, 2, 4, 8 bytes")
    rec = fill_bits(o, fill_pattern(value, o.dtype), s, timed)
    if not timed:
        return out
    return out, rec if rec is not None else end_timing("fill", s, begin_timing(s, True))


@_prof.traced("memset")
def memset(arr, byte_value: int, *, stream) -> None:
    """Set every byte of ``arr`` (any layout: a view sets only its own elements) to
    ``byte_value`` (0..255) on ``stream``."""
    try:
        if isinstance(byte_value, bool):
            raise TypeError
        byte_value = operator.index(byte_value)
    except TypeError:
        raise ArgumentError(f"memset: byte_value must be an int in 0..255, got {byte_value!r}") from None
    if not 0 <= byte_value <= 255:
        raise ValueError(f"memset: byte value {byte_value} outside 0..255")
    s = as_stream(stream)
    a = _operand(arr, s, "memset: arr")
    if a.nbytes == 0:
        return
    if not a.c_contiguous:
        w = a.itemsize if a.itemsize in _WIDTH else 1
        target = a if w == a.itemsize else a.view(np.uint8) if a.strides[-1] == a.itemsize else None
        if target is None:
            raise ShapeError(f"memset: a view of {a.dtype} elements needs a contiguous last axis (strides {a.strides})")
        pattern = _BITS[target.itemsize](int.from_bytes(bytes([byte_value]) * target.itemsize, "little"))
        fill_bits(target, pattern, s, False, "memset")
        return
    with s.device.activate():
        if a.nbytes % 4 == 0 and a.ptr % 4 == 0:
            drv.memset_d32_async(a.ptr, byte_value * 0x01010101, a.nbytes // 4, s.handle)
        else:
            drv.memset_d8_async(a.ptr, byte_value, a.nbytes, s.handle)
    a.record_stream(s)
