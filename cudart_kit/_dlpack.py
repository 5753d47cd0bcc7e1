"""DLPack export: builds DLManagedTensor(Versioned) capsules over memory the kit owns.

The capsule keeps its owner (the exporting Array) alive until the consumer calls the deleter
(or, if never consumed, until the capsule is destroyed). Pure ctypes: no compiled extension.
"""

from __future__ import annotations

import ctypes
import itertools
import threading

import numpy as np

from .errors import DTypeError

kDLCPU, kDLCUDA, kDLCUDAHost, kDLCUDAManaged = 1, 2, 3, 13
_DTYPE_CODE = {"i": 0, "u": 1, "f": 2, "c": 5, "b": 6}
_BFLOAT = 4


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


_Deleter = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", _Deleter)]


class DLPackVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32)]


class DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [
        ("version", DLPackVersion),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", _Deleter),
        ("flags", ctypes.c_uint64),
        ("dl_tensor", DLTensor),
    ]


# Everything a live capsule needs, keyed by manager_ctx; removed by the deleter.
_live: dict[int, tuple] = {}
_live_lock = threading.Lock()
_keys = itertools.count(1)

_api = ctypes.pythonapi
_api.PyCapsule_New.restype = ctypes.py_object
_api.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
# The destructor receives a capsule whose refcount is already zero: handle it as a raw
# address (a py_object argument would incref and later re-free a dying object).
_api.PyCapsule_IsValid.restype = ctypes.c_int
_api.PyCapsule_IsValid.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]


def _release(key: int) -> None:
    with _live_lock:
        _live.pop(key, None)


@_Deleter
def _deleter_legacy(ptr):
    if ptr:
        _release(DLManagedTensor.from_address(ptr).manager_ctx or 0)


@_Deleter
def _deleter_versioned(ptr):
    if ptr:
        _release(DLManagedTensorVersioned.from_address(ptr).manager_ctx or 0)


_CapsuleDestructor = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@_CapsuleDestructor
def _capsule_destructor(capsule):
    # Runs when the capsule dies. A consumer renames a consumed capsule ("used_dltensor"), in
    # which case the consumer owns the tensor and has called (or will call) the deleter.
    for name, cls, deleter in ((b"dltensor", DLManagedTensor, _deleter_legacy),
                               (b"dltensor_versioned", DLManagedTensorVersioned, _deleter_versioned)):
        if _api.PyCapsule_IsValid(capsule, name):
            ptr = _api.PyCapsule_GetPointer(capsule, name)
            deleter(ptr)
            return


_destructor_addr = ctypes.cast(_capsule_destructor, ctypes.c_void_p).value


def dl_dtype(dtype: np.dtype) -> DLDataType:
    if dtype.name == "bfloat16":
        return DLDataType(_BFLOAT, 16, 1)
    code = _DTYPE_CODE.get(dtype.kind)
    if code is None:
        raise DTypeError(f"{dtype} has no DLPack type code")
    return DLDataType(code, dtype.itemsize * 8, 1)


def make_capsule(ptr: int, shape: tuple, strides_bytes: tuple, dtype: np.dtype, device_type: int,
                 device_id: int, owner, versioned: bool, read_only: bool = False):
    """A DLPack capsule over ``ptr`` that keeps ``owner`` alive until the consumer is done."""
    ndim = len(shape)
    shape_arr = (ctypes.c_int64 * max(ndim, 1))(*shape)
    itemsize = dtype.itemsize
    for s in strides_bytes:
        if s % itemsize:
            raise ValueError("DLPack strides are in elements: byte strides must be multiples of the item size")
    strides_arr = (ctypes.c_int64 * max(ndim, 1))(*(s // itemsize for s in strides_bytes))
    tensor = DLTensor(ptr, DLDevice(device_type, device_id), ndim, dl_dtype(dtype),
                      ctypes.cast(shape_arr, ctypes.POINTER(ctypes.c_int64)),
                      ctypes.cast(strides_arr, ctypes.POINTER(ctypes.c_int64)), 0)
    key = next(_keys)
    if versioned:
        flags = 1 if read_only else 0  # DLPACK_FLAG_BITMASK_READ_ONLY
        managed = DLManagedTensorVersioned(DLPackVersion(1, 0), key, _deleter_versioned, flags, tensor)
        name = b"dltensor_versioned"
    else:
        managed = DLManagedTensor(tensor, key, _deleter_legacy)
        name = b"dltensor"
    with _live_lock:
        _live[key] = (owner, managed, shape_arr, strides_arr)
    return _api.PyCapsule_New(ctypes.addressof(managed), name, _destructor_addr)


def live_exports() -> int:
    """How many exported capsules are still held by a consumer (for leak checks)."""
    with _live_lock:
        return len(_live)
