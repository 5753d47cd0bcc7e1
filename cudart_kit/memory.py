"""Typed arrays over device (stream-ordered pool), pinned host and managed memory; copies.

Every allocation, copy and free is ordered on an explicit stream. An array used on a stream
other than its allocation stream is freed only after that stream's work queued so far.
"""

from __future__ import annotations

import ctypes
import math
import threading
import weakref

import numpy as np

from . import _driver as drv
from .device import Device, get_device
from .errors import (
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
from .stream import Stream, as_stream

__all__ = [
    "Array", "empty", "empty_like", "zeros", "to_device", "asarray", "copy", "memset",
    "KINDS", "census", "bfloat16",
]

KINDS = ("device", "pinned", "managed")

try:  # bfloat16 has no numpy dtype of its own; ml_dtypes provides one (optional extra)
    import ml_dtypes as _ml_dtypes

    bfloat16 = np.dtype(_ml_dtypes.bfloat16)
except Exception:  # pragma: no cover - depends on the optional package
    bfloat16 = None


# --- live-resource census (framework authors assert on it to prove they do not leak) -------
_census_lock = threading.Lock()
_live = {k: [0, 0] for k in KINDS}  # kind -> [arrays, bytes]
_high = {k: 0 for k in KINDS}


def _count(kind: str, nbytes: int, sign: int) -> None:
    with _census_lock:
        entry = _live[kind]
        entry[0] += sign
        entry[1] += sign * nbytes
        if entry[1] > _high[kind]:
            _high[kind] = entry[1]


def census() -> dict:
    """Live kit-owned arrays and bytes per memory kind, with high-water marks of bytes."""
    with _census_lock:
        return {k: {"arrays": v[0], "bytes": v[1], "high_bytes": _high[k]} for k, v in _live.items()}


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


def _normalize_shape(shape) -> tuple:
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise ShapeError(f"shape must be an int or a sequence of ints, got {shape!r}") from None
    if any(s < 0 for s in shape):
        raise ShapeError(f"negative dimension in shape {shape}")
    return shape


def _normalize_dtype(dtype) -> np.dtype:
    if isinstance(dtype, str) and dtype.lower() in ("bfloat16", "bf16"):
        if bfloat16 is None:
            raise DTypeError("bfloat16 needs the ml_dtypes package (pip install 'cudart-kit[bf16]')")
        return bfloat16
    try:
        return np.dtype(dtype)
    except TypeError:
        raise DTypeError(f"not a dtype: {dtype!r}") from None


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


class Array:
    """A typed n-dimensional array in device, pinned host or managed memory.

    Attributes: ``ptr`` (int address), ``shape``, ``dtype`` (numpy dtype), ``strides`` (bytes),
    ``kind`` ("device", "pinned", "managed" or "foreign"), ``device`` (kit Device),
    ``stream`` (allocation stream; frees are ordered on it).
    """

    __slots__ = (
        "ptr", "shape", "dtype", "strides", "kind", "device", "stream", "nbytes", "size", "c_contiguous", "sig",
        "_buf", "_used", "_finalizer", "_base", "_owner", "__weakref__",
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
        if s is root.stream:
            return
        sink = s._capture
        if sink is not None:  # captured into a graph: the graph keeps the array alive instead
            sink.append(root)
        elif root.stream is not None and s != root.stream:
            root._used.add(s)

    def _check_open(self) -> None:
        if self.is_closed:
            raise ClosedError("array was closed")

    # -- views ----------------------------------------------------------------------------------
    def reshape(self, *shape) -> "Array":
        """A view with a new shape (C-contiguous arrays only)."""
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = shape[0]
        shape = _normalize_shape(shape)
        if -1 in shape:
            known = math.prod(s for s in shape if s != -1)
            shape = tuple(self.size // known if s == -1 else s for s in shape)
        if math.prod(shape) != self.size:
            raise ShapeError(f"cannot reshape array of size {self.size} into shape {shape}")
        if not self.is_c_contiguous:
            raise ShapeError("reshape needs a C-contiguous array")
        root = self._base if self._base is not None else self
        return Array._make(self.ptr, shape, self.dtype, _c_strides(shape, self.itemsize), self.kind,
                           self.device, self.stream, base=root, used=root._used)

    def ravel(self) -> "Array":
        return self.reshape(self.size)

    # -- host access ---------------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """A zero-copy numpy view of pinned or managed memory. No synchronization: sync the
        stream that writes it first. Device memory has no host view: use :meth:`to_numpy`."""
        self._check_open()
        if not self.is_host_accessible:
            raise DeviceMismatchError(
                f"{self.kind} memory is not host-accessible; use to_numpy(stream=...) to copy it"
            )
        if self.nbytes == 0:
            return np.empty(self.shape, self.dtype)
        raw = np.asarray(_HostView(self.ptr, self.nbytes, False, self))
        return np.lib.stride_tricks.as_strided(raw.view(self.dtype), self.shape, self.strides)

    def to_numpy(self, *, stream) -> np.ndarray:
        """Copy into a new numpy array on ``stream`` and wait for it (this call synchronizes)."""
        out = np.empty(self.shape, self.dtype)
        copy(out, self, stream=stream)
        as_stream(stream).sync()
        return out

    def copy_from(self, src, *, stream, timed: bool = False) -> TimingRecord:
        """Asynchronous copy ``src`` -> self on ``stream`` (see :func:`copy`)."""
        return copy(self, src, stream=stream, timed=timed)

    def copy_to(self, dst, *, stream, timed: bool = False) -> TimingRecord:
        """Asynchronous copy self -> ``dst`` on ``stream`` (see :func:`copy`)."""
        return copy(dst, self, stream=stream, timed=timed)

    def fill(self, value, *, stream, timed: bool = False) -> TimingRecord:
        """Set every element to ``value`` with the kit's fill kernel on ``stream``."""
        from .ops.vector import fill

        return fill(self, value, stream=stream, timed=timed)

    def prefetch(self, location: "Device | int | str", *, stream) -> None:
        """Migrate managed memory to a device (Device or ordinal) or to ``"host"``, on ``stream``."""
        self._require_managed("prefetch")
        s = as_stream(stream)
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
        self._check_open()
        if self.kind != "managed":
            raise DeviceMismatchError(f"{what} needs managed memory; this array is {self.kind}")

    # -- interop ---------------------------------------------------------------------------------
    @property
    def __cuda_array_interface__(self) -> dict:
        self._check_open()
        if self.kind == "pinned":
            raise AttributeError("pinned host memory does not export __cuda_array_interface__; use .numpy()")
        typestr = self.dtype.str
        if self.dtype.kind == "V":
            raise AttributeError(f"{self.dtype} has no CUDA Array Interface typestr; use DLPack")
        return {
            "shape": self.shape,
            "typestr": typestr,
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

        self._check_open()
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
        return make_capsule(self.ptr, self.shape, self.strides, self.dtype, my_device[0], my_device[1],
                            self, versioned)

    # -- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        """Free the memory now (ordered after every stream that used it). Idempotent; views
        stay valid objects but refuse use afterwards."""
        root = self._base if self._base is not None else self
        fin = root._finalizer
        if fin is not None and fin.alive:
            fin()
        root.ptr = 0 if root.nbytes else root.ptr

    def __enter__(self) -> "Array":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def empty(shape, dtype=np.float32, *, stream, kind: str = "device", device=None, _in_graph: bool = False) -> Array:
    """Allocate an uninitialised array.

    ``kind``: "device" (stream-ordered pool allocation on ``stream``), "pinned" (page-locked
    host memory, usable by every device), or "managed" (unified memory). ``device`` defaults to
    the stream's device. The array is freed in ``stream``'s order (and after every other stream
    that used it) when closed or collected. Raises CudaOutOfMemoryError (a MemoryError).
    """
    shape = _normalize_shape(shape)
    dtype = _normalize_dtype(dtype)
    s = as_stream(stream)
    dev = s.device if device is None else get_device(device)
    if dev != s.device:
        raise DeviceMismatchError(f"allocation on device {dev.ordinal} with a stream of device {s.device.ordinal}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if s._capture is not None and not _in_graph:
        raise StreamError(
            "cannot allocate on a stream that is being captured into a graph: allocate before "
            "the capture and pass out= arrays to the ops inside it"
        )
    nbytes = math.prod(shape) * dtype.itemsize
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
    return empty(a.shape, a.dtype, stream=stream, kind=kind or (a.kind if a.kind in KINDS else "device"),
                 device=as_stream(stream).device)


def zeros(shape, dtype=np.float32, *, stream, kind: str = "device") -> Array:
    """Allocate and zero on ``stream`` (a byte memset; asynchronous)."""
    arr = empty(shape, dtype, stream=stream, kind=kind)
    memset(arr, 0, stream=stream)
    return arr


def to_device(host, *, stream, kind: str = "device", dtype=None) -> Array:
    """Allocate an array like the numpy array ``host`` and copy it in on ``stream``.

    A pageable ``host`` may be reused as soon as this returns (the driver has staged it)."""
    host = np.asarray(host, dtype=dtype)
    arr = empty(host.shape, host.dtype, stream=stream, kind=kind)
    copy(arr, host, stream=stream)
    return arr


def memset(arr: Array, byte_value: int, *, stream) -> None:
    """Set every byte of ``arr`` to ``byte_value`` (0..255) on ``stream``."""
    if not 0 <= int(byte_value) <= 255:
        raise ValueError(f"byte value {byte_value} outside 0..255")
    s = as_stream(stream)
    arr = asarray(arr, stream=s)
    if not arr.is_c_contiguous:
        raise ShapeError("memset needs a C-contiguous array")
    if arr.nbytes == 0:
        return
    with s.device.activate():
        if arr.nbytes % 4 == 0:
            v = int(byte_value) * 0x01010101
            drv.memset_d32_async(arr.ptr, v, arr.nbytes // 4, s.handle)
        else:
            drv.memset_d8_async(arr.ptr, int(byte_value), arr.nbytes, s.handle)
    arr.record_stream(s)


# --- foreign arrays -------------------------------------------------------------------------

def _typestr_dtype(typestr: str) -> np.dtype:
    try:
        return np.dtype(typestr)
    except TypeError:
        raise DTypeError(f"unsupported typestr {typestr!r}") from None


def _wait_producer(producer_handle, s: Stream) -> None:
    """Order ``s`` after a producer's stream named by a CUDA Array Interface v3 "stream" entry."""
    if producer_handle is None or s is None:
        return
    producer_handle = int(producer_handle)
    if producer_handle == s.handle:
        return
    producer = Stream.adopt(producer_handle, device=s.device)
    s.wait(producer)


def asarray(obj, *, stream=None) -> Array:
    """A zero-copy kit Array over ``obj``: a kit Array (returned as is), any object exporting the
    CUDA Array Interface (CuPy, PyTorch, Numba...) or DLPack (JAX, PyTorch, cuda.core...).

    With ``stream`` (the stream the caller will use the data on), the producer's pending work is
    ordered before it: the CAI v3 "stream" entry is waited on, and DLPack exporters are handed
    the stream as the protocol says. The object is kept alive; the kit never frees foreign
    memory. Numpy arrays are refused (host memory): copy them with to_device.
    """
    if isinstance(obj, Array):
        if obj.is_closed:
            raise ClosedError("array was closed")
        return obj
    if isinstance(obj, np.ndarray):
        raise DeviceMismatchError("a numpy array is host memory; copy it with cudart_kit.to_device(arr, stream=...)")
    s = None if stream is None else as_stream(stream)
    cai = getattr(obj, "__cuda_array_interface__", None)
    if cai is not None and cai["typestr"][1:2] == "V" and hasattr(obj, "__dlpack__"):
        cai = None  # an opaque typestr (PyTorch's bfloat16 is "<V2"): DLPack names the type
    if cai is not None:
        ptr = int(cai["data"][0])
        shape = tuple(int(x) for x in cai["shape"])
        dtype = _typestr_dtype(cai["typestr"])
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
            raise translate(exc, "__dlpack__", f"importing a {type(obj).__name__}") from exc
        if not view.is_device_accessible:
            raise DeviceMismatchError(f"{type(obj).__name__} holds host memory; copy it to the device first")
        dtype = np.dtype(view.dtype)
        if dtype.kind == "V" and dtype.itemsize == 2 and bfloat16 is not None:
            # cuda.core reports DLPack's bfloat16 code as an opaque 2-byte type
            dtype = bfloat16
        shape = tuple(view.shape)
        strides = view.strides
        strides = _c_strides(shape, dtype.itemsize) if strides is None else tuple(int(x) * dtype.itemsize for x in strides)
        dev = get_device(max(int(view.device_id), 0))
        return Array._make(int(view.ptr), shape, dtype, strides, "foreign", dev, None, owner=(view, obj))
    raise TypeError(
        f"{type(obj).__name__} is not a device array: expected a cudart_kit.Array or an object "
        "with __cuda_array_interface__ or __dlpack__"
    )


def _host_pointer(a: np.ndarray, writable: bool) -> int:
    if writable and not a.flags.writeable:
        raise ValueError("destination numpy array is read-only")
    return a.ctypes.data


def copy(dst, src, *, stream, timed: bool = False) -> TimingRecord:
    """Asynchronous copy of ``src`` into ``dst`` on ``stream``.

    Either side may be a kit Array (device, pinned, managed), a foreign device array, or a
    numpy array (pageable host memory). Same dtype and element count, both C-contiguous
    (a non-contiguous numpy *source* is first made contiguous on the host). With pageable
    numpy memory the driver stages the data: host->device returns once the source was read,
    device->host returns once the data arrived. Copies between devices go peer-to-peer when
    possible. Returns a TimingRecord (with events when ``timed``).
    """
    s = as_stream(stream)
    dst_host = isinstance(dst, np.ndarray)
    src_host = isinstance(src, np.ndarray)
    if dst_host and src_host:
        raise TypeError("both sides are numpy arrays: use numpy to copy host memory")
    if src_host:
        src = np.ascontiguousarray(src)
    d = dst if dst_host else asarray(dst, stream=s)
    sa = src if src_host else asarray(src, stream=s)
    if d.dtype != sa.dtype:
        raise DTypeError(f"copy between different dtypes: destination {d.dtype}, source {sa.dtype}")
    if d.size != sa.size:
        raise ShapeError(f"copy between different sizes: destination {tuple(d.shape)} ({d.size} elements), "
                         f"source {tuple(sa.shape)} ({sa.size} elements)")
    if dst_host:
        if not d.flags.c_contiguous:
            raise ShapeError("destination numpy array must be C-contiguous")
    elif not d.is_c_contiguous:
        raise ShapeError("destination array must be C-contiguous")
    if not src_host and not sa.is_c_contiguous:
        raise ShapeError("source array must be C-contiguous")
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
