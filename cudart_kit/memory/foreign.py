"""Foreign arrays: zero-copy kit Arrays over memory another library allocated, imported
through the CUDA Array Interface or DLPack, strides and offsets included, with the producer's
stream ordered before the consumer's.
"""

from __future__ import annotations

import weakref

import numpy as np

from . import layout as L
from .array import Array, bfloat16, closed_error
from .. import _driver as drv
from ..device import get_device
from ..errors import ArgumentError, DeviceMismatchError, DTypeError, ShapeError, translate
from ..stream import Stream, as_stream

__all__ = ["asarray", "coerce", "is_device_object", "op_operand", "torch_facts"]


def is_device_object(obj) -> bool:
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
    return coerce(obj, s, name)


# --- PyTorch tensors, the common foreign array: read straight from the tensor ----------------
# torch's __cuda_array_interface__ is a Python property (CAI v2: no stream entry) costing ~10 us;
# the same facts come from the tensor's own accessors in ~1 us. Tensors CAI refuses
# (requires_grad, sparse, CPU) and lazily negated / conjugated views take the generic path.

_torch_tensor = None  # torch.Tensor, once a torch object was seen (never imported otherwise)
_torch_dtypes: dict = {}
_op_cache: dict = {}  # id(tensor) -> (weakref, data_ptr, shape, stride, torch dtype, Array)


def _torch_kind(obj) -> bool:
    global _torch_tensor
    if _torch_tensor is None:
        if not type(obj).__module__.startswith("torch"):
            return False
        import torch

        _torch_tensor = torch.Tensor
        for name, np_name in (("float32", "float32"), ("float64", "float64"), ("float16", "float16"),
                              ("int8", "int8"), ("int16", "int16"), ("int32", "int32"), ("int64", "int64"),
                              ("uint8", "uint8"), ("bool", "bool"), ("complex64", "complex64"),
                              ("complex128", "complex128")):
            _torch_dtypes[getattr(torch, name)] = np.dtype(np_name)
        if bfloat16 is not None:
            _torch_dtypes[torch.bfloat16] = bfloat16
    return isinstance(obj, _torch_tensor)


def _from_torch(t, what: str, owner) -> "Array | None":
    """A kit Array over a CUDA tensor from its accessors, or None for the generic path."""
    dtype = _torch_dtypes.get(t.dtype)
    if (dtype is None or not t.is_cuda or t.requires_grad or t.layout is not _torch_layout()
            or t.is_neg() or t.is_conj()):
        return None
    shape = tuple(t.shape)
    strides = tuple(x * dtype.itemsize for x in t.stride())
    nbytes = L.checked_nbytes(shape, dtype, what)
    ptr = t.data_ptr()
    if ptr == 0 and nbytes:
        raise ShapeError(f"{what}: a {type(t).__name__} with a null data pointer for {nbytes} bytes")
    return Array._make(ptr, shape, dtype, strides, "foreign", get_device(t.device.index), None, owner=owner)


def _torch_layout():
    import torch

    return torch.strided


def _cached_torch(t, what: str) -> "Array | None":
    """The op path's Array for tensor ``t``, reused while ``t`` is the same live tensor with the
    same data pointer, shape, strides and dtype (any change, e.g. ``t.set_()`` or ``resize_``,
    is a miss: a cache never hands back a stale pointer). The cached Array does not hold ``t``
    (ops do not keep their operands; the caller does), so the cache keeps no tensor alive."""
    hit = _op_cache.get(id(t))
    if hit is not None:
        ref, ptr, shape, stride, tdtype, arr = hit
        if ref() is t and t.data_ptr() == ptr and t.stride() == stride and t.shape == shape and t.dtype is tdtype:
            return arr
    arr = _from_torch(t, what, None)
    if arr is not None:
        if len(_op_cache) > 4096:
            _op_cache.clear()
        _op_cache[id(t)] = (weakref.ref(t), arr.ptr, t.shape, t.stride(), t.dtype, arr)
    return arr


def op_operand(obj) -> "Array | None":
    """An op's fast path for a raw foreign operand: the validated cached Array of a PyTorch CUDA
    tensor, or None (then the op takes its checked path, which coerces and reports errors)."""
    if _torch_tensor is not None and isinstance(obj, _torch_tensor):
        return _cached_torch(obj, "operand")
    return None


def torch_facts(t) -> "tuple | None":
    """What an op's launch plan over PyTorch tensor ``t`` depends on (ops.vector re-checks each
    on every call): (weak reference, data pointer, shape, strides, dtype); None when ``t`` is not
    a torch tensor."""
    if _torch_tensor is None or not isinstance(t, _torch_tensor):
        return None
    return (weakref.ref(t), t.data_ptr(), t.shape, t.stride(), t.dtype)


def coerce(obj, s: "Stream | None", what: str, hold: bool = True) -> Array:
    """asarray with an already-coerced stream; errors name the argument as ``what``. With
    ``hold=False`` (the ops' operands, used only during the call) a PyTorch tensor's Array may
    come from a validated cache and does not keep the tensor alive — except while ``s`` is being
    captured: the graph keeps what its work touches alive, so the Array must hold the tensor."""
    if isinstance(obj, Array):
        if obj.ptr == 0 and obj.nbytes:
            raise closed_error(obj, what)
        return obj
    if not hold and s is not None and s._capture is not None:
        hold = True
    if _torch_kind(obj):
        arr = _from_torch(obj, what, obj) if hold else _cached_torch(obj, what)
        if arr is not None:
            return arr
    if isinstance(obj, np.ndarray):
        raise DeviceMismatchError(f"{what} is a numpy array, which is host memory; copy it with "
                                  "cudart_kit.to_device(arr, stream=...)")
    cai = getattr(obj, "__cuda_array_interface__", None)
    if cai is not None and cai["typestr"][1:2] == "V" and hasattr(obj, "__dlpack__"):
        cai = None  # an opaque typestr (PyTorch's bfloat16 is "<V2"): DLPack names the type
    if cai is not None:
        ptr = int(cai["data"][0])
        shape = L.normalize_shape(cai["shape"], f"{what}'s CAI shape")
        dtype = _typestr_dtype(cai["typestr"], what)
        nbytes = L.checked_nbytes(shape, dtype, what)
        if ptr == 0 and nbytes:
            raise ShapeError(f"{what}: {type(obj).__name__} exports a null data pointer for {nbytes} bytes")
        strides = cai.get("strides")
        strides = L.c_strides(shape, dtype.itemsize) if strides is None else tuple(int(x) for x in strides)
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
        L.checked_nbytes(shape, dtype, what)
        strides = view.strides
        strides = L.c_strides(shape, dtype.itemsize) if strides is None else tuple(int(x) * dtype.itemsize for x in strides)
        dev = get_device(max(int(view.device_id), 0))
        return Array._make(int(view.ptr), shape, dtype, strides, "foreign", dev, None, owner=(view, obj))
    raise ArgumentError(
        f"{what} is a {type(obj).__name__}, not a device array: expected a cudart_kit.Array or an object "
        "with __cuda_array_interface__ or __dlpack__"
    )
