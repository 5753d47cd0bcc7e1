"""Typed arrays over device (stream-ordered pool), pinned host and managed memory; copies.

Every allocation, copy and free is ordered on an explicit stream. An array used on a stream
other than its allocation stream is freed only after that stream's work queued so far.
"""

from __future__ import annotations

import math
import operator
import weakref

import numpy as np

from . import profiling as _prof
from . import _census
from . import _driver as drv
from .device import Device, get_device
from .errors import (
    ArgumentError,
    ClosedError,
    CudaKitError,
    CudaOutOfMemoryError,
    DeviceMismatchError,
    DTypeError,
    ShapeError,
    StreamError,
    translate,
)
from .event import TimingRecord, begin_timing, end_timing
from .stream import Stream, as_stream, closed_stream_error

__all__ = [
    "Array", "empty", "empty_like", "zeros", "to_device", "asarray", "copy", "memset",
    "KINDS", "census", "bfloat16", "check_open", "MAX_NBYTES",
]

KINDS = ("device", "pinned", "managed")

# The largest byte count the kit accepts for one array: sizes are signed 64-bit in the driver's
# neighbours (ptrdiff_t, DLPack's int64 shape), so 2**63 bytes and up fit no address space.
MAX_NBYTES = 2**63 - 1

try:  # bfloat16 has no numpy dtype of its own; ml_dtypes provides one (optional extra)
    import ml_dtypes as _ml_dtypes

    bfloat16 = np.dtype(_ml_dtypes.bfloat16)
except Exception:  # pragma: no cover - depends on the optional package
    bfloat16 = None


def _count(kind: str, nbytes: int, sign: int) -> None:
    _census.add_array(kind, nbytes, sign)


def census() -> dict:
    """The memory part of :func:`cudart_kit.census` (one counter, two ways to read it):
    ``{kind: {"arrays", "bytes", "high_bytes"}}`` for device, pinned and managed kit arrays."""
    return _census.memory_snapshot()


_SIGS: dict = {}


def _intern_sig(key: tuple) -> tuple:
    if len(_SIGS) > 65536:  # many distinct shapes: start over rather than grow without bound
        _SIGS.clear()
    return _SIGS.setdefault(key, key)


def _c_strides(shape: tuple, itemsize: int) -> tuple:
    strides = []
    acc = itemsize
    for dim in reversed(shape):
        strides.append(acc)
        acc *= max(dim, 1)
    return tuple(reversed(strides))


def _normalize_shape(shape, what: str = "shape") -> tuple:
    """``shape`` as a tuple of non-negative Python ints. An int or numpy integer is a 1-D shape;
    anything else must be a sequence of them. ShapeError (a ValueError) names the offending
    dimension: floats, strings, bools and negative values are refused, never truncated."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, (bool, np.bool_)):
        shape = (shape,)
    elif isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise ShapeError(f"{what} must be an int or a sequence of ints, got {shape!r} ({type(shape).__name__})")
    shape = tuple(shape)
    dims = []
    for i, d in enumerate(shape):
        try:
            if isinstance(d, (bool, np.bool_)):
                raise TypeError
            d = operator.index(d)
        except TypeError:
            raise ShapeError(
                f"{what} {shape!r}: dimension {i} is {d!r} ({type(d).__name__}), not an integer"
            ) from None
        if d < 0:
            raise ShapeError(f"{what} {shape!r}: dimension {i} is negative ({d})")
        dims.append(d)
    return tuple(dims)


def _checked_nbytes(shape: tuple, dtype: np.dtype, what: str = "") -> int:
    """Bytes of a C-contiguous array of ``shape`` and ``dtype``; ShapeError when the element count
    or the byte count is 2**63 or more (no address space holds it; the driver's bindings would
    raise a bare OverflowError at 2**64). Pure arithmetic: runs before any driver call."""
    size = math.prod(shape)
    nbytes = size * dtype.itemsize
    if size > MAX_NBYTES or nbytes > MAX_NBYTES:
        raise ShapeError(
            f"{what + ': ' if what else ''}shape {shape} of {dtype} is {size} elements = {nbytes} bytes (~2**{math.log2(nbytes):.1f}): "
            f"no address space can hold it (the limit is 2**63 - 1 bytes)"
        )
    return nbytes


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


def _normalize_dtype(dtype, what: str = "dtype") -> np.dtype:
    if isinstance(dtype, str) and dtype.lower() in ("bfloat16", "bf16"):
        if bfloat16 is None:
            raise DTypeError("bfloat16 needs the ml_dtypes package (pip install 'cudart-kit[bf16]')")
        return bfloat16
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise DTypeError(f"{what} {dtype!r} is not a dtype") from None
    if dt.hasobject:
        raise DTypeError(f"{what} {dt} holds Python objects, which device memory cannot")
    if dt.itemsize == 0:
        raise DTypeError(f"{what} {dt} has no size; give a sized dtype (e.g. 'S8', 'V16')")
    return dt


def _closed_error(arr: "Array", what: str) -> ClosedError:
    if arr._base is not None:
        return ClosedError(f"{what} is a view of a closed array ({arr._base!r}): its memory was freed")
    return ClosedError(f"{what} is closed ({arr!r}): its memory was freed")


def check_open(arr: "Array", what: str = "array") -> "Array":
    """Return ``arr``; raise ClosedError naming ``what`` (e.g. "matmul: a") when it was closed or is
    a view of a closed array. One attribute read on the open path: closing an array zeroes the
    ``ptr`` of every view of it, so ``ptr == 0`` with ``nbytes > 0`` means closed."""
    if arr.ptr == 0 and arr.nbytes:
        raise _closed_error(arr, what)
    return arr


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


def _release_pool(buf, device: Device, alloc_stream: Stream, used: set, kind: str, nbytes: int) -> None:
    """Finalizer for device-pool and pinned arrays: never raises, never holds the Array."""
    try:
        with device.activate():
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
    finally:
        _count(kind, nbytes, -1)


def _release_managed(ptr: int, device: Device, alloc_stream: Stream, used: set, nbytes: int) -> None:
    try:
        with device.activate():
            for s in [alloc_stream, *used]:
                if not s.is_closed:
                    s.sync()
            drv.mem_free(ptr)
    except Exception:
        pass
    finally:
        _count("managed", nbytes, -1)


class _HostView:
    """Exposes raw host-accessible memory to numpy while keeping the owning Array alive."""

    __slots__ = ("__array_interface__", "_owner")

    def __init__(self, ptr: int, nbytes: int, readonly: bool, owner):
        self.__array_interface__ = {"data": (ptr, readonly), "shape": (nbytes,), "typestr": "|u1", "version": 3}
        self._owner = owner


class _ExportToken:
    """Lives exactly as long as one DLPack capsule's consumer holds it (it is in the capsule's
    owner tuple); its finalizer lets a deferred close() free the memory."""

    __slots__ = ("__weakref__",)


def _export_token(root: "Array") -> _ExportToken:
    token = _ExportToken()
    root._exports += 1
    weakref.finalize(token, _export_released, weakref.ref(root))
    return token


def _export_released(root_ref) -> None:
    """Finalizer of an export token: never raises, never holds the Array."""
    root = root_ref()
    if root is None:  # the array is gone too: its own finalizer freed the memory
        return
    root._exports -= 1
    if root._exports == 0 and root.ptr == 0 and root.nbytes:  # close() was called meanwhile
        fin = root._finalizer
        if fin is not None and fin.alive:
            try:
                fin()
            except Exception:
                pass


class Array:
    """A typed n-dimensional array in device, pinned host or managed memory.

    Attributes: ``ptr`` (int address), ``shape``, ``dtype`` (numpy dtype), ``strides`` (bytes),
    ``kind`` ("device", "pinned", "managed" or "foreign"), ``device`` (kit Device),
    ``stream`` (allocation stream; frees are ordered on it).
    """

    __slots__ = (
        "ptr", "shape", "dtype", "strides", "kind", "device", "stream", "nbytes", "size", "c_contiguous", "sig",
        "_buf", "_used", "_finalizer", "_base", "_owner", "_views", "_exports", "__weakref__",
    )

    def __init__(self, *_a, **_k):
        raise TypeError("use cudart_kit.empty(...), to_device(...) or asarray(...)")

    @classmethod
    def _make(cls, ptr, shape, dtype, strides, kind, device, stream, base=None, owner=None, buf=None, used=None):
        self = object.__new__(cls)
        self.ptr = int(ptr)
        self.shape = shape
        self.dtype = dtype
        self.strides = strides
        self.kind = kind
        self.device = device
        self.stream = stream
        self.size = math.prod(shape)
        self.nbytes = self.size * dtype.itemsize
        # computed once: ops check it on every call
        self.c_contiguous = strides == _c_strides(shape, dtype.itemsize) or self.nbytes <= dtype.itemsize
        # Interned (dtype, shape, device, contiguous, kit-owned) tuple: arrays that agree on all
        # of these share the *same* tuple object, so an op checks them with one `is`.
        key = (dtype, shape, device, self.c_contiguous, kind in KINDS and base is None)
        self.sig = _SIGS.get(key) or _intern_sig(key)
        self._buf = buf
        self._used = used if used is not None else set()
        self._finalizer = None
        self._base = base
        self._owner = owner
        self._views = None  # on a root: weak set of its views, whose ptr close() zeroes
        self._exports = 0  # on a root: DLPack capsules not yet released by their consumers
        return self

    # -- properties ---------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def is_c_contiguous(self) -> bool:
        return self.c_contiguous

    @property
    def is_host_accessible(self) -> bool:
        return self.kind in ("pinned", "managed")

    @property
    def is_closed(self) -> bool:
        root = self._base if self._base is not None else self
        return root.ptr == 0 and root.nbytes > 0

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __repr__(self) -> str:
        return (f"<cudart_kit.Array {self.kind} shape={self.shape} dtype={self.dtype} "
                f"device={self.device.ordinal if self.device else None} ptr={hex(self.ptr)}>")

    # -- stream bookkeeping -------------------------------------------------------------------
    def record_stream(self, stream) -> None:
        """Declare that queued work on ``stream`` uses this array, so its free waits for it.

        Kit operations do this themselves; call it when a foreign library uses the memory."""
        root = self._base if self._base is not None else self
        s = stream if type(stream) is Stream else as_stream(stream)
        if s._core is None:
            raise closed_stream_error(s)
        if s is root.stream:
            return
        sink = s._capture
        if sink is not None:  # captured into a graph: the graph keeps the array alive instead
            sink.append(root)
        elif root.stream is not None and s != root.stream:
            root._used.add(s)

    def _check_open(self, what: str = "array") -> None:
        if self.is_closed:
            raise _closed_error(self, what)

    # -- views ----------------------------------------------------------------------------------
    def reshape(self, *shape) -> "Array":
        """A view with a new shape (C-contiguous arrays only); one dimension may be -1.

        The view shares the memory: closing the array (or any view of it) closes them all, and
        every kit entry point then refuses the view with ClosedError."""
        self._check_open("reshape: array")
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = shape[0]
        if isinstance(shape, (int, np.integer)):
            shape = (shape,)
        try:
            shape = tuple(shape)
        except TypeError:
            raise ShapeError(f"reshape: shape must be ints or a sequence of ints, got {shape!r}") from None
        wild = [i for i, d in enumerate(shape) if isinstance(d, (int, np.integer)) and d == -1]
        if len(wild) > 1:
            raise ShapeError(f"reshape: only one dimension may be -1, got {shape}")
        if wild:
            known = _normalize_shape(shape[:wild[0]] + shape[wild[0] + 1:], "reshape shape")
            k = math.prod(known)
            if k == 0 or self.size % k:
                raise ShapeError(f"cannot reshape array of size {self.size} into shape {shape}")
            shape = known[:wild[0]] + (self.size // k,) + known[wild[0]:]
        else:
            shape = _normalize_shape(shape, "reshape shape")
        if math.prod(shape) != self.size:
            raise ShapeError(f"cannot reshape array of size {self.size} into shape {shape}")
        if not self.is_c_contiguous:
            raise ShapeError("reshape needs a C-contiguous array")
        root = self._base if self._base is not None else self
        view = Array._make(self.ptr, shape, self.dtype, _c_strides(shape, self.itemsize), self.kind,
                           self.device, self.stream, base=root, used=root._used)
        if root._views is None:
            root._views = weakref.WeakSet()
        root._views.add(view)
        return view

    def ravel(self) -> "Array":
        return self.reshape(self.size)

    # -- host access ---------------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """A zero-copy numpy view of pinned or managed memory. No synchronization: sync the
        stream that writes it first. Device memory has no host view: use :meth:`to_numpy`."""
        self._check_open("numpy: array")
        if not self.is_host_accessible:
            raise DeviceMismatchError(
                f"{self.kind} memory is not host-accessible; use to_numpy(stream=...) to copy it"
            )
        if self.nbytes == 0:
            return np.empty(self.shape, self.dtype)
        raw = np.asarray(_HostView(self.ptr, self.nbytes, False, self))
        return np.lib.stride_tricks.as_strided(raw.view(self.dtype), self.shape, self.strides)

    def to_numpy(self, *, stream) -> np.ndarray:
        """Copy into a new numpy array on ``stream`` and wait for it (this call synchronizes).
        Raises ClosedError for a closed array (or a view of one) or a closed stream."""
        self._check_open("to_numpy: array")
        if not self.is_c_contiguous:
            raise ShapeError(f"to_numpy: array is not C-contiguous (strides {self.strides} for shape {self.shape})")
        s = as_stream(stream)
        out = np.empty(self.shape, self.dtype)
        copy(out, self, stream=s)
        s.sync()
        return out

    def copy_from(self, src, *, stream, timed: bool = False) -> TimingRecord:
        """Asynchronous copy ``src`` -> self on ``stream`` (see :func:`copy`)."""
        self._check_open("copy_from: array")
        return copy(self, src, stream=stream, timed=timed)

    def copy_to(self, dst, *, stream, timed: bool = False) -> TimingRecord:
        """Asynchronous copy self -> ``dst`` on ``stream`` (see :func:`copy`)."""
        self._check_open("copy_to: array")
        return copy(dst, self, stream=stream, timed=timed)

    def fill(self, value, *, stream, timed: bool = False):
        """Set every element to ``value`` with the kit's fill kernel on ``stream`` (see
        :func:`cudart_kit.ops.fill`). Returns self (``(self, TimingRecord)`` when ``timed``)."""
        from .ops.vector import fill

        self._check_open("fill: array")
        return fill(self, value, stream=stream, timed=timed)

    def prefetch(self, location: "Device | int | str", *, stream) -> None:
        """Migrate managed memory to a device (Device or ordinal) or to ``"host"``, on ``stream``."""
        self._require_managed("prefetch")
        s = as_stream(stream)
        if location != "host" and isinstance(location, str) and not location.strip().isdigit():
            raise ArgumentError(f"prefetch: location must be a Device, an ordinal or 'host', got {location!r}")
        dev = None if location == "host" else get_device(location).ordinal
        with s.device.activate():
            drv.mem_prefetch_async(self.ptr, self.nbytes, dev, s.handle)
        self.record_stream(s)

    def advise(self, advice: str, location: "Device | int | str | None" = None) -> None:
        """cuMemAdvise on managed memory. ``advice``: read_mostly, preferred_location, accessed_by
        (and unset_*); ``location``: a device, its ordinal, or "host"."""
        self._require_managed("advise")
        dev = None if location in (None, "host") else get_device(location).ordinal
        with self.device.activate():
            drv.mem_advise(self.ptr, self.nbytes, advice, dev)

    def _require_managed(self, what: str) -> None:
        self._check_open(f"{what}: array")
        if self.kind != "managed":
            raise DeviceMismatchError(f"{what} needs managed memory; this array is {self.kind}")

    # -- interop ---------------------------------------------------------------------------------
    @property
    def __cuda_array_interface__(self) -> dict:
        """CUDA Array Interface v3 of device, managed and foreign memory.

        Pinned host memory and dtypes CAI cannot name (numpy "V" kinds, e.g. bfloat16) raise
        AttributeError, so ``hasattr(a, "__cuda_array_interface__")`` is False for them and
        consumers (CuPy, Numba, PyTorch, ``cudart_kit.asarray``) fall back to DLPack. A closed
        array raises ClosedError (not an AttributeError: a probe must not mistake freed memory
        for an array without the protocol)."""
        if self.ptr == 0 and self.nbytes:
            raise _closed_error(self, "__cuda_array_interface__: array")
        if self.kind == "pinned":
            raise AttributeError(
                "a pinned host array does not export __cuda_array_interface__: CAI describes device "
                "memory, and consumers would launch kernels over PCIe on it. Use __dlpack__ (a "
                "kDLCUDAHost tensor) or .numpy() (a zero-copy host view)"
            )
        if self.dtype.kind == "V":
            raise AttributeError(
                f"{self.dtype} has no CUDA Array Interface typestr (CAI cannot name it): use __dlpack__"
            )
        return {
            "shape": self.shape,
            "typestr": self.dtype.str,
            "data": (self.ptr, False),
            "strides": None if self.is_c_contiguous else self.strides,
            "version": 3,
            # The kit orders work explicitly: consumers must order their stream after the
            # producer's (see docs/embedding.md), so no implicit sync stream is given.
            "stream": None,
        }

    def __dlpack_device__(self) -> tuple[int, int]:
        from ._dlpack import kDLCUDA, kDLCUDAHost

        if self.kind == "pinned":
            return (kDLCUDAHost, 0)
        return (kDLCUDA, self.device.ordinal)  # managed memory is device memory to consumers

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """DLPack export (zero-copy). ``stream``: the consumer's stream handle; it is made to
        wait for work queued on this array's streams (None means the legacy default stream,
        -1 means no ordering), as the DLPack protocol asks of a producer."""
        from ._dlpack import make_capsule

        self._check_open("__dlpack__: array")
        if copy:
            raise BufferError("cudart_kit exports without copying; copy=True is not supported")
        my_device = self.__dlpack_device__()
        if dl_device is not None and tuple(dl_device) != my_device:
            raise BufferError(f"array lives on DLPack device {my_device}, {tuple(dl_device)} was asked for")
        if self.kind != "pinned" and stream != -1:
            consumer = Stream.adopt(1 if stream is None else int(stream), device=self.device)
            root = self._base if self._base is not None else self
            for producer in [root.stream, *root._used]:
                if producer is not None and not producer.is_closed and producer != consumer:
                    consumer.wait(producer)
        versioned = max_version is not None and tuple(max_version) >= (1, 0)
        capsule = make_capsule(self.ptr, self.shape, self.strides, self.dtype, my_device[0], my_device[1],
                               (self, _export_token(self._base if self._base is not None else self)), versioned)
        return capsule

    # -- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        """Free the memory now (ordered after every stream that used it). Idempotent. Closing a
        view closes the array it views. Views stay valid objects whose ``ptr`` becomes 0, and
        every kit entry point refuses them (and the array) with ClosedError afterwards.

        While a DLPack consumer still holds an export (e.g. ``torch.from_dlpack(a)``), the free
        is deferred until the last such consumer releases it: the kit refuses the array at once,
        the consumer's tensor stays valid. CAI consumers have no release protocol: close() does
        not wait for them (see docs/embedding.md)."""
        root = self._base if self._base is not None else self
        if root.nbytes:
            root.ptr = 0
            views = root._views
            if views is not None:
                for v in list(views):
                    v.ptr = 0
        if root._exports:
            return  # _export_released frees it when the last consumer lets go
        fin = root._finalizer
        if fin is not None and fin.alive:
            fin()

    def __enter__(self) -> "Array":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def empty(shape, dtype=np.float32, *, stream, kind: str = "device", device=None, _in_graph: bool = False) -> Array:
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
    """
    shape = _normalize_shape(shape, "empty: shape")
    dtype = _normalize_dtype(dtype, "empty: dtype")
    if kind not in KINDS:
        raise ValueError(f"empty: kind must be one of {KINDS}, got {kind!r}")
    nbytes = _checked_nbytes(shape, dtype, "empty")
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
    strides = _c_strides(shape, dtype.itemsize)
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
            arr._finalizer = weakref.finalize(arr, _release_pool, buf, dev, s, used, kind, nbytes)
        else:
            buf = _allocate(dev, s, nbytes, kind)
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


def _allocate(dev: Device, s: Stream, nbytes: int, kind: str):
    global _pinned_mr
    for attempt in (0, 1):
        try:
            if kind == "pinned":
                if _pinned_mr is None:
                    from cuda.core import LegacyPinnedMemoryResource

                    _pinned_mr = LegacyPinnedMemoryResource()
                return _pinned_mr.allocate(nbytes, stream=s.core)
            return dev.core.allocate(nbytes, stream=s.core)
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


def zeros(shape, dtype=np.float32, *, stream, kind: str = "device") -> Array:
    """Allocate and zero on ``stream`` (a byte memset; asynchronous)."""
    arr = empty(shape, dtype, stream=stream, kind=kind)
    memset(arr, 0, stream=stream)
    return arr


def _is_device_object(obj) -> bool:
    """True for objects that describe device memory (CAI exporters, CUDA DLPack exporters)."""
    try:
        obj.__cuda_array_interface__
        return True
    except AttributeError:
        pass
    except Exception:  # PyTorch raises RuntimeError for CUDA tensors that require grad
        return True
    dl = getattr(obj, "__dlpack_device__", None)
    if dl is not None:
        try:
            return int(dl()[0]) in (2, 13)  # kDLCUDA, kDLCUDAManaged
        except Exception:
            return False
    return False


def to_device(host, *, stream, kind: str = "device", dtype=None) -> Array:
    """Allocate an array like the numpy array ``host`` and copy it in on ``stream``.

    ``host``: a numpy array or anything ``np.asarray`` takes (lists, CPU tensors). A pageable
    ``host`` may be reused as soon as this returns (the driver has staged it). Device memory
    (a kit Array, a CUDA tensor / CuPy array) is refused with DeviceMismatchError: take a
    zero-copy view with :func:`asarray` or copy it with :func:`copy`."""
    if not isinstance(host, np.ndarray) and (isinstance(host, Array) or _is_device_object(host)):
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


@_prof.traced("memset")
def memset(arr: Array, byte_value: int, *, stream) -> None:
    """Set every byte of ``arr`` to ``byte_value`` (0..255) on ``stream``."""
    try:
        if isinstance(byte_value, bool):
            raise TypeError
        byte_value = operator.index(byte_value)
    except TypeError:
        raise ArgumentError(f"memset: byte_value must be an int in 0..255, got {byte_value!r}") from None
    if not 0 <= byte_value <= 255:
        raise ValueError(f"memset: byte value {byte_value} outside 0..255")
    s = as_stream(stream)
    arr = _as_array(arr, s, "memset: arr")
    if arr.kind in ("device", "foreign") and arr.ptr and arr.device is not s.device:
        raise DeviceMismatchError(
            f"memset: arr is on device {arr.device.ordinal} but the stream is on device {s.device.ordinal}"
        )
    if not arr.is_c_contiguous:
        raise ShapeError(f"memset: arr must be C-contiguous, got strides {arr.strides} for shape {arr.shape}")
    if arr.nbytes == 0:
        return
    with s.device.activate():
        if arr.nbytes % 4 == 0:
            v = byte_value * 0x01010101
            drv.memset_d32_async(arr.ptr, v, arr.nbytes // 4, s.handle)
        else:
            drv.memset_d8_async(arr.ptr, byte_value, arr.nbytes, s.handle)
    arr.record_stream(s)


# --- foreign arrays -------------------------------------------------------------------------

def _typestr_dtype(typestr: str, what: str = "array") -> np.dtype:
    try:
        return np.dtype(typestr)
    except TypeError:
        raise DTypeError(f"{what} has an unsupported CAI typestr {typestr!r}") from None


def _wait_producer(producer_handle, s: Stream) -> None:
    """Order ``s`` after a producer's stream named by a CUDA Array Interface v3 "stream" entry."""
    if producer_handle is None or s is None:
        return
    producer_handle = int(producer_handle)
    if producer_handle == s.handle:
        return
    producer = Stream.adopt(producer_handle, device=s.device)
    s.wait(producer)


def asarray(obj, *, stream=None, name: str = "asarray: obj") -> Array:
    """A zero-copy kit Array over ``obj``: a kit Array (returned as is), any object exporting the
    CUDA Array Interface (CuPy, PyTorch, Numba...) or DLPack (JAX, PyTorch, cuda.core...).

    With ``stream`` (the stream the caller will use the data on), the producer's pending work is
    ordered before it: the CAI v3 "stream" entry is waited on, and DLPack exporters are handed
    the stream as the protocol says. The object is kept alive; the kit never frees foreign
    memory. Raises ClosedError for a closed kit Array (or a view of one) or a closed stream,
    DeviceMismatchError for numpy arrays (host memory: copy them with to_device) and host
    DLPack tensors, ShapeError for a foreign shape of 2**63 bytes or more or a null data
    pointer, ArgumentError (a TypeError) for anything that is not an array. ``name``: how those
    errors name the argument (a wrapper passes e.g. ``name="matmul: a"``).
    """
    s = None if stream is None else as_stream(stream)
    return _as_array(obj, s, name)


def _as_array(obj, s: "Stream | None", what: str) -> Array:
    """asarray with an already-coerced stream; errors name the argument as ``what``."""
    if isinstance(obj, Array):
        if obj.ptr == 0 and obj.nbytes:
            raise _closed_error(obj, what)
        return obj
    if isinstance(obj, np.ndarray):
        raise DeviceMismatchError(f"{what} is a numpy array, which is host memory; copy it with "
                                  "cudart_kit.to_device(arr, stream=...)")
    cai = getattr(obj, "__cuda_array_interface__", None)
    if cai is not None and cai["typestr"][1:2] == "V" and hasattr(obj, "__dlpack__"):
        cai = None  # an opaque typestr (PyTorch's bfloat16 is "<V2"): DLPack names the type
    if cai is not None:
        ptr = int(cai["data"][0])
        shape = _normalize_shape(cai["shape"], f"{what}'s CAI shape")
        dtype = _typestr_dtype(cai["typestr"], what)
        nbytes = _checked_nbytes(shape, dtype, what)
        if ptr == 0 and nbytes:
            raise ShapeError(f"{what}: {type(obj).__name__} exports a null data pointer for {nbytes} bytes")
        strides = cai.get("strides")
        strides = _c_strides(shape, dtype.itemsize) if strides is None else tuple(int(x) for x in strides)
        _wait_producer(cai.get("stream"), s)
        dev = get_device(max(drv.pointer_attributes(ptr)["device"], 0)) if ptr else (s.device if s else get_device(0))
        return Array._make(ptr, shape, dtype, strides, "foreign", dev, None, owner=obj)
    if hasattr(obj, "__dlpack__"):
        from cuda.core.utils import StridedMemoryView

        try:
            view = StridedMemoryView.from_dlpack(obj, stream_ptr=s.handle if s is not None else -1)
        except Exception as exc:
            raise translate(exc, "__dlpack__", f"importing a {type(obj).__name__} as {what}") from exc
        if not view.is_device_accessible:
            raise DeviceMismatchError(f"{what}: {type(obj).__name__} holds host memory; copy it to the device first")
        dtype = np.dtype(view.dtype)
        if dtype.kind == "V" and dtype.itemsize == 2 and bfloat16 is not None:
            # cuda.core reports DLPack's bfloat16 code as an opaque 2-byte type
            dtype = bfloat16
        shape = tuple(view.shape)
        _checked_nbytes(shape, dtype, what)
        strides = view.strides
        strides = _c_strides(shape, dtype.itemsize) if strides is None else tuple(int(x) * dtype.itemsize for x in strides)
        dev = get_device(max(int(view.device_id), 0))
        return Array._make(int(view.ptr), shape, dtype, strides, "foreign", dev, None, owner=(view, obj))
    raise ArgumentError(
        f"{what} is a {type(obj).__name__}, not a device array: expected a cudart_kit.Array or an object "
        "with __cuda_array_interface__ or __dlpack__"
    )


def _host_pointer(a: np.ndarray, writable: bool) -> int:
    if writable and not a.flags.writeable:
        raise ValueError("copy: dst (a numpy array) is read-only")
    return a.ctypes.data


@_prof.traced("copy")
def copy(dst, src, *, stream, timed: bool = False) -> TimingRecord:
    """Asynchronous copy of ``src`` into ``dst`` on ``stream``.

    Either side may be a kit Array (device, pinned, managed), a foreign device array, or a
    numpy array (pageable host memory). Same dtype and element count, both C-contiguous
    (a non-contiguous numpy *source* is first made contiguous on the host). With pageable
    numpy memory the driver stages the data: host->device returns once the source was read,
    device->host returns once the data arrived. Copies between devices go peer-to-peer when
    possible. Returns a TimingRecord (with events when ``timed``).

    Raises before anything is queued: ClosedError for a closed stream or a closed array (or a
    view of one) on either side, DTypeError / ShapeError for different dtypes or element counts
    or a non-contiguous side, DeviceMismatchError for host DLPack tensors, ArgumentError for an
    object that is not an array.
    """
    s = as_stream(stream)
    dst_host = isinstance(dst, np.ndarray)
    src_host = isinstance(src, np.ndarray)
    if dst_host and src_host:
        raise TypeError("copy: both dst and src are numpy arrays: use numpy to copy host memory")
    if src_host:
        src = np.ascontiguousarray(src)
    d = dst if dst_host else _as_array(dst, s, "copy: dst")
    sa = src if src_host else _as_array(src, s, "copy: src")
    if d.dtype != sa.dtype:
        raise DTypeError(f"copy: dst is {d.dtype} but src is {sa.dtype} (copies never convert)")
    if d.size != sa.size:
        raise ShapeError(f"copy: dst has shape {tuple(d.shape)} ({d.size} elements) but src has shape "
                         f"{tuple(sa.shape)} ({sa.size} elements)")
    if dst_host:
        if not d.flags.c_contiguous:
            raise ShapeError("copy: dst (a numpy array) must be C-contiguous")
    elif not d.is_c_contiguous:
        raise ShapeError(f"copy: dst must be C-contiguous, got strides {d.strides} for shape {d.shape}")
    if not src_host and not sa.is_c_contiguous:
        raise ShapeError(f"copy: src must be C-contiguous, got strides {sa.strides} for shape {sa.shape}")
    nbytes = d.nbytes
    start = begin_timing(s, timed)
    if nbytes:
        with s.device.activate():
            if src_host:
                drv.memcpy_htod_async(d.ptr, _host_pointer(sa, False), nbytes, s.handle)
            elif dst_host:
                drv.memcpy_dtoh_async(_host_pointer(d, True), sa.ptr, nbytes, s.handle)
            else:
                drv.memcpy_async(d.ptr, sa.ptr, nbytes, s.handle)
    if not dst_host:
        d.record_stream(s)
    if not src_host:
        sa.record_stream(s)
    kind = ("H2D" if src_host else "D2H" if dst_host else
            "H2D" if sa.kind == "pinned" else "D2H" if d.kind == "pinned" else "D2D")
    return end_timing("copy", s, start, {"bytes": nbytes, "direction": kind})
