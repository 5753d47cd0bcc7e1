"""Explicit kernel launches: geometry checks, argument packing against the kernel's parameter
sizes, optional event timing, prepared (pre-checked) launches and a correct-by-default benchmark.
"""

from __future__ import annotations

import math

import numpy as np

from . import _launch  # the launch core (configs, the one cuLaunchKernel path)
from . import memory as mem
from . import profiling as _prof
from ._launch import blocks_for, check_geometry  # re-exported: public
from .bench import BenchResult, benchmark  # the kit's one benchmark helper, re-exported
from .device import Device, get_device
from .errors import ArgumentError, ClosedError, DeviceMismatchError, driver_error
from .event import TimingRecord, begin_timing, end_timing
from .module import Kernel
from .stream import Stream, as_stream

__all__ = ["launch", "prepare", "PreparedLaunch", "pack_args", "blocks_for", "check_geometry",
           "benchmark", "BenchResult"]

_INT_TYPES = {1: (np.int8, np.uint8), 2: (np.int16, np.uint16), 4: (np.int32, np.uint32), 8: (np.int64, np.uint64)}
_FLOAT_TYPES = {2: np.float16, 4: np.float32, 8: np.float64}


def _pointer_of(arg, stream, what: str = "array argument"):
    """Device pointer for an array-like argument, checked for device and for being open; None
    if not array-like. Kit Arrays that are closed (or views of closed arrays) raise ClosedError
    naming ``what``. On a real Stream the array is recorded as used there; on a
    :class:`_ProbeStream` (prepare) the kit Array (or cuda.core Buffer) is collected instead."""
    if type(arg) is mem.Array:
        arr = arg
        if arr.ptr == 0 and arr.nbytes:  # closed, or a view of a closed array
            raise mem.closed_error(arr, what)
    elif isinstance(arg, np.ndarray):
        raise DeviceMismatchError(f"{what}: a numpy array (host memory) cannot be a kernel argument: "
                                  "copy it with to_device first")
    elif isinstance(arg, mem.Array) or hasattr(arg, "__cuda_array_interface__") or hasattr(arg, "__dlpack__"):
        arr = mem.coerce(arg, stream if isinstance(stream, Stream) else None, what)
    else:
        mod = type(arg).__module__
        if mod.startswith("cuda.core") and hasattr(arg, "handle") and hasattr(arg, "size"):  # cuda.core Buffer
            if getattr(arg, "is_closed", False):
                raise ClosedError(f"{what} is a closed cuda.core Buffer")
            if type(stream) is _ProbeStream:
                stream.held.append((False, arg))
            return int(arg.handle)
        return None
    if arr.kind in ("device", "foreign") and arr.ptr and arr.device is not stream.device:
        raise DeviceMismatchError(
            f"{what}: array on device {arr.device.ordinal} passed to a launch on a stream of device {stream.device.ordinal}"
        )
    if type(stream) is _ProbeStream:
        stream.held.append((True, arr))
    elif isinstance(stream, Stream) and arr.stream is not stream:
        arr.record_stream(stream)
    return arr.ptr


# (signed min, signed max, unsigned max) per width: np.iinfo is slow to construct per call
_INT_RANGE = {w: (-(1 << (8 * w - 1)), (1 << (8 * w - 1)) - 1, (1 << (8 * w)) - 1) for w in (1, 2, 4, 8)}


def _convert(value, size: int, index: int, kernel_name: str, stream):
    tv = type(value)
    if tv is int:  # the common scalar: checked against the width without numpy
        rng = _INT_RANGE.get(size)
        if rng is None:
            raise ArgumentError(f"argument {index} of {kernel_name} (a {size}-byte parameter): got a Python int, which fits no {size}-byte integer")
        if rng[0] <= value <= rng[1]:
            return _INT_TYPES[size][0](value)
        if 0 <= value <= rng[2]:
            return _INT_TYPES[size][1](value)
        raise ArgumentError(f"argument {index} of {kernel_name} (a {size}-byte parameter): {value} does not fit in {size} bytes")
    where = f"argument {index} of {kernel_name} (a {size}-byte parameter)"
    ptr = _pointer_of(value, stream, where)
    if ptr is not None:
        if size != 8:
            raise ArgumentError(f"{where}: got an array (an 8-byte pointer)")
        return ptr  # cuda.core packs a Python int as 8 bytes: exactly a pointer
    if isinstance(value, np.generic):
        if value.dtype.itemsize != size:
            raise ArgumentError(f"{where}: got {value.dtype} ({value.dtype.itemsize} bytes)")
        return value
    if isinstance(value, (bool, np.bool_)):
        if size != 1:
            raise ArgumentError(f"{where}: got a bool; pass np.int32(...) etc. for wider integers")
        return np.bool_(value)
    if isinstance(value, int):  # int subclasses (IntEnum...)
        return _convert(int(value), size, index, kernel_name, stream)
    if isinstance(value, float):
        if size not in _FLOAT_TYPES:
            raise ArgumentError(f"{where}: got a Python float; no {size}-byte float exists")
        with np.errstate(over="ignore"):
            conv = _FLOAT_TYPES[size](value)
        if math.isfinite(value) and not np.isfinite(conv):
            raise ArgumentError(f"{where}: {value} overflows {np.dtype(_FLOAT_TYPES[size]).name}")
        return conv
    raise ArgumentError(
        f"{where}: cannot pass {type(value).__name__}; use a kit Array, a device array with "
        "__cuda_array_interface__, a numpy scalar of the right width, a Python int or float"
    )


def pack_args(kernel: Kernel, args: tuple, stream: Stream) -> tuple:
    """Convert ``args`` to fixed-width values matching ``kernel``'s parameter sizes.

    A Python int becomes the signed (or, above its range, unsigned) integer of the parameter's
    width; a Python float becomes float32 / float64 / float16 by width; arrays become 8-byte
    device pointers (and are recorded as used on ``stream``). Anything else is refused."""
    sizes = kernel.param_sizes
    if len(args) != len(sizes):
        raise ArgumentError(f"{kernel.name} takes {len(sizes)} arguments (sizes {list(sizes)}), got {len(args)}")
    return tuple(_convert(v, sz, i, kernel.name, stream) for i, (v, sz) in enumerate(zip(args, sizes)))


@_prof.traced("launch")
def launch(kernel: Kernel, grid, block, *args, stream, shared_mem_bytes: int = 0, timed: bool = False) -> TimingRecord:
    """Launch ``kernel<<<grid, block, shared_mem_bytes, stream>>>(*args)``.

    Asynchronous on ``stream`` (required); faults inside the kernel surface at the next sync.
    With ``timed=True``, start/stop events are recorded on the same stream (no sync) and the
    returned TimingRecord gives ``elapsed_ms()`` once the work is done.
    Raises LaunchConfigError / ArgumentError / DeviceMismatchError, and ClosedError for a closed
    stream or a closed array argument (or a view of one), before anything is queued."""
    s = as_stream(stream)
    dev = s.device
    g, b = check_geometry(kernel, dev, grid, block, shared_mem_bytes)
    packed = pack_args(kernel, args, s)
    kernel.ensure_dynamic_shared(dev, shared_mem_bytes)
    cfg = _launch.config(g, b, shared_mem_bytes)
    start = begin_timing(s, timed)
    _launch.do_launch(s, cfg, kernel, packed)
    return end_timing(kernel.name, s, start, {"grid": g, "block": b, "shared_mem_bytes": shared_mem_bytes})


class PreparedLaunch:
    """A launch whose geometry and arguments were checked once; ``launch(stream)`` re-issues it
    with the arguments packed once into the driver's parameter array (a direct cuLaunchKernel
    with an argument tuple made once per stream; cuda.core's launch packs per call) plus one
    attribute read per array argument. Default-stream handles (0, 1, 2) go through cuda.core's
    launch.

    Lifetime of the array arguments: the prepared launch *holds* every kit Array, foreign array
    (through its kit wrapper, which keeps the foreign object alive) and cuda.core Buffer it
    packed, so dropping your own reference frees nothing under it. ``close()`` on an array frees
    it regardless of references (that is what close means), so ``launch()`` *checks* that each
    held array is still open and raises ClosedError naming the argument otherwise; nothing is
    queued then. Arrays are recorded as used on each stream the launch runs on, once per stream.
    """

    __slots__ = ("kernel", "device", "_plan", "_packed", "_arrays", "_checked", "_buffers", "_last_stream", "_fast")

    def __init__(self, kernel: Kernel, grid, block, *args, device: Device, shared_mem_bytes: int = 0):
        check_geometry(kernel, device, grid, block, shared_mem_bytes)
        if len(args) != len(kernel.param_sizes):
            raise ArgumentError(f"{kernel.name} takes {len(kernel.param_sizes)} arguments, got {len(args)}")
        probe = _ProbeStream(device)
        packed = []
        checked = []  # (argument index, kit Array) of every array that can be closed under us
        buffers = []
        for i, (v, sz) in enumerate(zip(args, kernel.param_sizes)):
            n_held = len(probe.held)
            packed.append(_convert(v, sz, i, kernel.name, probe))
            for is_array, h in probe.held[n_held:]:
                if not is_array:
                    buffers.append((i, h))
                elif h.nbytes:
                    checked.append((i, h))
        self._packed = tuple(packed)
        self._arrays = tuple(h for is_array, h in probe.held if is_array)
        self._checked = tuple(checked)
        self._buffers = tuple(buffers)
        self.kernel = kernel
        self.device = device
        self._last_stream = None
        self._fast = None  # (kit Stream, cuLaunchKernel argument tuple) once launched directly on it
        # The arguments never change: the launch core's plan packs them once into the driver's
        # void*[] and launches with cuLaunchKernel directly (cuda.core re-packs per call).
        self._plan = _launch.LaunchPlan(kernel, device, grid, block, self._packed, shared_mem_bytes=shared_mem_bytes)

    def _refuse_closed(self) -> None:
        for i, a in self._checked:
            if not a.ptr:
                raise mem.closed_error(a, f"prepared launch of {self.kernel.name}: argument {i}")
        for i, b in self._buffers:
            if getattr(b, "is_closed", False):
                raise ClosedError(f"prepared launch of {self.kernel.name}: argument {i} is a closed cuda.core Buffer")

    def launch(self, stream, *, timed: bool = False) -> "TimingRecord | None":
        """Queue the prepared launch on ``stream`` (asynchronous). Raises ClosedError for a closed
        stream or an argument array closed since :func:`prepare`, DeviceMismatchError for a
        stream of another device. Returns a TimingRecord when ``timed``, else None."""
        fast = self._fast
        if fast is not None and stream is fast[0] and stream._core is not None and not timed and not _prof.ENABLED:
            # the stream of the last launch, still open (its arrays recorded on it already): the
            # closed-array checks, then the driver call itself
            for _, a in self._checked:
                if not a.ptr:
                    self._refuse_closed()
            if self._buffers:
                self._refuse_closed()
            (res,) = _launch._cu_launch(*fast[1])
            if res:
                raise driver_error(res, "cuLaunchKernel", f"launching {self.kernel.name}")
            return None
        if _prof.ENABLED:  # tested inline: the hot path pays one flag test, no wrapper
            with _prof.range("prepared.launch"):
                return self._issue(stream, timed)
        return self._issue(stream, timed)

    def _issue(self, stream, timed: bool) -> "TimingRecord | None":
        s = stream
        if type(s) is not Stream or s._core is None:
            s = as_stream(stream)
        for _, a in self._checked:  # one attribute read per array: close() zeroes ptr (views too)
            if not a.ptr:
                self._refuse_closed()
        if self._buffers:
            self._refuse_closed()
        if s is not self._last_stream:  # record the arrays' use once per stream, not per launch
            if s.device is not self.device:
                raise DeviceMismatchError(f"prepared for device {self.device.ordinal}, launched on device {s.device.ordinal}")
            for a in self._arrays:
                a.record_stream(s)
            if s._capture is None:
                self._last_stream = s
        rec = self._plan.launch(s, (), timed)
        if s is self._last_stream and (self._fast is None or self._fast[0] is not s):
            args = self._plan.direct_args(s)  # made by the launch just issued, if it went direct
            self._fast = None if args is None or _launch._cu_launch is None else (s, args)
        return rec


class _ProbeStream:
    """Stands in for a stream while packing a prepared launch: device checks, and ``held``
    collects (is kit Array, object) for each array / cuda.core Buffer packed (no recording)."""

    __slots__ = ("device", "held")

    def __init__(self, device: Device):
        self.device = device
        self.held: list = []


def prepare(kernel: Kernel, grid, block, *args, device, shared_mem_bytes: int = 0) -> PreparedLaunch:
    """Check once, launch many times: see :class:`PreparedLaunch`. ``device``: a Device or
    anything :func:`get_device` takes (an ordinal)."""
    dev = device if isinstance(device, Device) or hasattr(device, "ordinal") else get_device(device)
    return PreparedLaunch(kernel, grid, block, *args, device=dev, shared_mem_bytes=shared_mem_bytes)


