"""The kit's Array: a typed n-dimensional strided view of device, pinned, managed or foreign
memory, with zero-copy views (indexing, transposes, reshapes, dtype views) that share their
base's memory and lifetime, and the CUDA Array Interface / DLPack exports.
"""

from __future__ import annotations

import math
import weakref

import numpy as np

from . import layout as L
from .. import _driver as drv
from .._dlpack import kDLCUDA, kDLCUDAHost, make_capsule
from ..device import get_device
from ..errors import ArgumentError, ClosedError, DeviceMismatchError, DTypeError, ShapeError
from ..stream import Stream, as_stream, closed_stream_error

__all__ = ["Array", "KINDS", "bfloat16", "check_open", "closed_error", "normalize_dtype"]

#: The memory kinds of kit-allocated arrays; an Array over memory the kit did not allocate
#: (imported through CAI / DLPack) has kind "foreign".
KINDS = ("device", "pinned", "managed")

try:  # bfloat16 has no numpy dtype of its own; ml_dtypes provides one (optional extra)
    import ml_dtypes as _ml_dtypes

    bfloat16 = np.dtype(_ml_dtypes.bfloat16)
except Exception:  # pragma: no cover - depends on the optional package
    bfloat16 = None


_SIGS: dict = {}


def _intern_sig(key: tuple) -> tuple:
    if len(_SIGS) > 65536:  # many distinct shapes: start over rather than grow without bound
        _SIGS.clear()
    return _SIGS.setdefault(key, key)


def normalize_dtype(dtype, what: str = "dtype") -> np.dtype:
    """``dtype`` as a numpy dtype ("bfloat16"/"bf16" through ml_dtypes); DTypeError for object,
    zero-size or unknown dtypes."""
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


def closed_error(arr: "Array", what: str) -> ClosedError:
    """The ClosedError for a closed array (or a view of one), naming the argument ``what``."""
    if arr._base is not None:
        return ClosedError(f"{what} is a view of a closed array ({arr._base!r}): its memory was freed")
    return ClosedError(f"{what} is closed ({arr!r}): its memory was freed")


def check_open(arr: "Array", what: str = "array") -> "Array":
    """Return ``arr``; raise ClosedError naming ``what`` (e.g. "matmul: a") when it was closed or is
    a view of a closed array. One attribute read on the open path: closing an array zeroes the
    ``ptr`` of every view of it, so ``ptr == 0`` with ``nbytes > 0`` means closed."""
    if arr.ptr == 0 and arr.nbytes:
        raise closed_error(arr, what)
    return arr


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


def export_token(root: "Array") -> _ExportToken:
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
    """A typed n-dimensional strided array in device, pinned host, managed or foreign memory.

    Attributes: ``ptr`` (int address of the first element; a view's ptr is inside its base),
    ``shape``, ``dtype`` (numpy dtype), ``strides`` (bytes, may be negative or zero), ``kind``
    ("device", "pinned", "managed" or "foreign"), ``device`` (kit Device), ``stream``
    (allocation stream; frees are ordered on it), ``base`` (the array a view views, else None).

    Views (``a[1:5, ::2]``, ``a.T``, ``a.reshape(...)``, ``a.view(dtype)``) share the base's
    memory: it is freed only when the base and every view are gone (a view holds its base) and
    after every stream that used any of them. ``close()`` on the base or on any view frees the
    memory now (ordered after those streams) and turns the base and every view closed: each
    kit entry point then refuses them with ClosedError.
    """

    __slots__ = (
        "ptr", "shape", "dtype", "strides", "kind", "device", "stream", "nbytes", "size", "c_contiguous", "sig",
        "_buf", "_used", "_finalizer", "_base", "_owner", "_views", "_exports", "__weakref__",
    )

    #: the copy module (memory.transfer), set by the memory package once both are defined: an
    #: Array's convenience methods (to_numpy, copy_from, copy_to, fill) run copies, and the copy
    #: module builds on Array, so the dependency is wired in memory/__init__.py, not imported.
    _transfer = None

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
        self.c_contiguous = L.is_c_contiguous(shape, strides, dtype.itemsize)
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
    def base(self) -> "Array | None":
        """The array this one views (the allocation's root), or None for a root."""
        return self._base

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
        view = "" if self._base is None else f" strides={self.strides} view"
        return (f"<cudart_kit.Array {self.kind} shape={self.shape} dtype={self.dtype}{view} "
                f"device={self.device.ordinal if self.device else None} ptr={hex(self.ptr)}>")

    # -- stream bookkeeping -------------------------------------------------------------------
    def record_stream(self, stream) -> None:
        """Declare that queued work on ``stream`` uses this array (or the memory it views), so
        the free waits for it. Kit operations do this themselves; call it when a foreign library
        uses the memory."""
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
            raise closed_error(self, what)

    # -- views ----------------------------------------------------------------------------------
    def _view(self, shape: tuple, strides: tuple, byte_offset: int = 0, dtype=None) -> "Array":
        root = self._base if self._base is not None else self
        view = Array._make(self.ptr + byte_offset if self.ptr else 0, shape, dtype or self.dtype, strides,
                           self.kind, self.device, self.stream, base=root, owner=root._owner, used=root._used)
        if root._views is None:
            root._views = weakref.WeakSet()
        root._views.add(view)
        return view

    def __getitem__(self, key) -> "Array":
        """A zero-copy view by basic indexing: integers, slices with any step (negative too),
        ``...`` and ``None`` (a new axis). IndexError for an index out of range, booleans,
        arrays and other advanced indices (they would need a gather: copy to numpy first)."""
        self._check_open("indexing: array")
        shape, strides, off = L.index(self.shape, self.strides, key, "Array index")
        return self._view(shape, strides, off)

    def __setitem__(self, key, value):
        raise TypeError(
            "cudart_kit.Array has no item assignment (it would hide a stream): take the view and "
            "copy into it, e.g. ck.copy(a[1:3], src, stream=s) or ops.fill(a[1:3], v, stream=s)"
        )

    def __iter__(self):
        raise TypeError("cudart_kit.Array is not iterable on the host: copy it with to_numpy(stream=...)")

    @property
    def T(self) -> "Array":
        """The transposed view (axes reversed), zero copy."""
        return self.transpose()

    def transpose(self, *axes) -> "Array":
        """A view with the axes permuted (reversed by default), zero copy."""
        self._check_open("transpose: array")
        if len(axes) == 1 and not isinstance(axes[0], (int, np.integer)):
            axes = axes[0]
        shape, strides = L.transpose(self.shape, self.strides, axes or None)
        return self._view(shape, strides)

    def reshape(self, *shape) -> "Array":
        """A view with a new shape (one dimension may be -1). It is a view whenever the strides
        allow it (as numpy's ``reshape(copy=False)``), including many non-contiguous views;
        otherwise ShapeError says that a copy is needed (make one with ``ops.copy``)."""
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
            known = L.normalize_shape(shape[:wild[0]] + shape[wild[0] + 1:], "reshape shape")
            k = math.prod(known)
            if k == 0 or self.size % k:
                raise ShapeError(f"cannot reshape array of size {self.size} into shape {shape}")
            shape = known[:wild[0]] + (self.size // k,) + known[wild[0]:]
        else:
            shape = L.normalize_shape(shape, "reshape shape")
        if math.prod(shape) != self.size:
            raise ShapeError(f"cannot reshape array of size {self.size} into shape {shape}")
        strides = L.reshape_strides(self.shape, self.strides, self.itemsize, shape)
        if strides is None:
            raise ShapeError(
                f"reshape: an array of shape {self.shape} with strides {self.strides} cannot be viewed as "
                f"shape {shape} without a copy; make a contiguous copy first (ops.copy(a, stream=s))"
            )
        return self._view(shape, strides)

    def ravel(self) -> "Array":
        """A 1-D view (ShapeError when the layout needs a copy for that, as :meth:`reshape`)."""
        return self.reshape(self.size)

    def view(self, dtype) -> "Array":
        """The same bytes as another dtype (zero copy). As numpy: with a different item size the
        last axis must be contiguous and its byte length a multiple of the new item size. The
        pointer need not be aligned to anything; kernels that need alignment check it."""
        self._check_open("view: array")
        dt = normalize_dtype(dtype, "view: dtype")
        shape, strides = L.view_dtype(self.shape, self.strides, self.itemsize, dt.itemsize)
        return self._view(shape, strides, 0, dt)

    # -- host access ---------------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """A zero-copy numpy view of pinned or managed memory (views included). No
        synchronization: sync the stream that writes it first. Device memory has no host view:
        use :meth:`to_numpy`."""
        self._check_open("numpy: array")
        if not self.is_host_accessible:
            raise DeviceMismatchError(
                f"{self.kind} memory is not host-accessible; use to_numpy(stream=...) to copy it"
            )
        if self.nbytes == 0:
            return np.empty(self.shape, self.dtype)
        lo, hi = L.extent(self.shape, self.strides, self.itemsize)
        raw = np.asarray(_HostView(self.ptr + lo, hi - lo, False, self))
        return _strided_host(raw, -lo, self)

    def to_numpy(self, *, stream) -> np.ndarray:
        """Copy into a new C-contiguous numpy array on ``stream`` and wait for it (this call
        synchronizes). Any view works (a strided one is gathered on the device first).
        Raises ClosedError for a closed array (or a view of one) or a closed stream."""
        self._check_open("to_numpy: array")
        s = as_stream(stream)
        out = np.empty(self.shape, self.dtype)
        self._transfer.copy(out, self, stream=s)
        s.sync()
        return out

    def copy_from(self, src, *, stream, timed: bool = False):
        """Asynchronous copy ``src`` -> self on ``stream`` (see :func:`cudart_kit.copy`)."""
        self._check_open("copy_from: array")
        return self._transfer.copy(self, src, stream=stream, timed=timed)

    def copy_to(self, dst, *, stream, timed: bool = False):
        """Asynchronous copy self -> ``dst`` on ``stream`` (see :func:`cudart_kit.copy`)."""
        self._check_open("copy_to: array")
        return self._transfer.copy(dst, self, stream=stream, timed=timed)

    def fill(self, value, *, stream, timed: bool = False):
        """Set every element to ``value`` on ``stream`` (see :func:`cudart_kit.ops.fill`; views
        included). Returns self (``(self, TimingRecord)`` when ``timed``)."""
        self._check_open("fill: array")
        return self._transfer.fill(self, value, stream=stream, timed=timed)

    def prefetch(self, location, *, stream) -> None:
        """Migrate managed memory (the bytes this array spans) to a device (Device or ordinal) or
        to ``"host"``, on ``stream``."""
        self._require_managed("prefetch")
        s = as_stream(stream)
        if location != "host" and isinstance(location, str) and not location.strip().isdigit():
            raise ArgumentError(f"prefetch: location must be a Device, an ordinal or 'host', got {location!r}")
        dev = None if location == "host" else get_device(location).ordinal
        lo, hi = L.extent(self.shape, self.strides, self.itemsize)
        with s.device.activate():
            drv.mem_prefetch_async(self.ptr + lo, hi - lo, dev, s.handle)
        self.record_stream(s)

    def advise(self, advice: str, location=None) -> None:
        """cuMemAdvise on managed memory. ``advice``: read_mostly, preferred_location, accessed_by
        (and unset_*); ``location``: a device, its ordinal, or "host"."""
        self._require_managed("advise")
        dev = None if location in (None, "host") else get_device(location).ordinal
        lo, hi = L.extent(self.shape, self.strides, self.itemsize)
        with self.device.activate():
            drv.mem_advise(self.ptr + lo, hi - lo, advice, dev)

    def _require_managed(self, what: str) -> None:
        self._check_open(f"{what}: array")
        if self.kind != "managed":
            raise DeviceMismatchError(f"{what} needs managed memory; this array is {self.kind}")

    # -- interop ---------------------------------------------------------------------------------
    @property
    def __cuda_array_interface__(self) -> dict:
        """CUDA Array Interface v3 of device, managed and foreign memory, views included (the
        data pointer is the view's first element, strides in bytes when not C-contiguous).

        Pinned host memory and dtypes CAI cannot name (numpy "V" kinds, e.g. bfloat16) raise
        AttributeError, so ``hasattr(a, "__cuda_array_interface__")`` is False for them and
        consumers (CuPy, Numba, PyTorch, ``cudart_kit.asarray``) fall back to DLPack. A closed
        array raises ClosedError (not an AttributeError: a probe must not mistake freed memory
        for an array without the protocol)."""
        if self.ptr == 0 and self.nbytes:
            raise closed_error(self, "__cuda_array_interface__: array")
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
        if self.kind == "pinned":
            return (kDLCUDAHost, 0)
        return (kDLCUDA, self.device.ordinal)  # managed memory is device memory to consumers

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """DLPack export (zero-copy; views carry their shape and strides, in elements as DLPack
        counts them: BufferError when a byte stride is not a multiple of the item size or is
        negative, which consumers such as PyTorch do not accept; CAI carries those).
        ``stream``: the consumer's stream handle; it is made to wait for work queued on this
        array's streams (None means the legacy default stream, -1 means no ordering), as the
        DLPack protocol asks of a producer."""
        self._check_open("__dlpack__: array")
        if copy:
            raise BufferError("cudart_kit exports without copying; copy=True is not supported")
        if any(s % self.itemsize for s in self.strides):
            raise BufferError(f"strides {self.strides} are not multiples of the item size {self.itemsize}: "
                              "DLPack counts strides in elements")
        if any(s < 0 and d > 1 for s, d in zip(self.strides, self.shape)):
            # PyTorch aborts the whole process on a negative DLPack stride: refuse it here
            raise BufferError(f"strides {self.strides} include a negative stride, which DLPack consumers "
                              "(PyTorch) do not accept: export a copy (ops.copy) or use __cuda_array_interface__")
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
                            (self, export_token(self._base if self._base is not None else self)), versioned)

    # -- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        """Free the memory now (ordered after every stream that used it). Idempotent. Closing a
        view closes the array it views and every other view of it: all stay valid objects whose
        ``ptr`` becomes 0, and every kit entry point refuses them with ClosedError afterwards.

        While a DLPack consumer still holds an export (e.g. ``torch.from_dlpack(a)``), the free
        is deferred until the last such consumer releases it: the kit refuses the array at once,
        the consumer's tensor stays valid. CAI consumers have no release protocol: close() does
        not wait for them (see docs/embedding.md). A foreign array's memory is never freed by
        the kit: close() only drops the kit's reference."""
        root = self._base if self._base is not None else self
        if root.nbytes or root._views:
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


def _strided_host(raw: np.ndarray, start: int, arr: Array) -> np.ndarray:
    """numpy view of ``arr``'s elements inside ``raw`` (bytes of its extent; element 0 at
    ``start``), through the array interface so any byte strides work."""

    class _Iface:
        __slots__ = ("__array_interface__", "_keep")

    it = _Iface()
    it.__array_interface__ = {"data": (raw.ctypes.data + start, False), "shape": arr.shape,
                              "strides": arr.strides, "typestr": arr.dtype.str, "version": 3}
    if arr.dtype.kind == "V" or arr.dtype.fields is not None:
        it.__array_interface__["descr"] = arr.dtype.descr
    it._keep = raw
    out = np.asarray(it)
    return out.view(arr.dtype) if out.dtype != arr.dtype else out
