"""The one module that calls cuda.bindings.driver directly, for what cuda.core lacks.

Every call goes through :func:`call`, which checks the CUresult and raises the kit's
error naming the API. The driver is loaded lazily: importing this module touches nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading

from .errors import CudaKitError, NoDeviceError, NoDriverError, driver_error, translate, visible_devices_hint

_lock = threading.Lock()
_driver = None  # cuda.bindings.driver, once initialised
_init_error: BaseException | None = None


def driver():
    """Return ``cuda.bindings.driver`` after a successful ``cuInit``; raise NoDriverError otherwise."""
    global _driver, _init_error
    d = _driver
    if d is not None:
        return d
    with _lock:
        if _driver is not None:
            return _driver
        if _init_error is not None:
            raise _init_error
        try:
            from cuda.bindings import driver as d
        except ImportError as exc:  # a broken installation, not a missing driver
            raise ImportError(f"cuda-bindings is not importable ({exc}); reinstall it: "
                              "pip install 'cuda-bindings>=13,<14'") from exc
        try:
            (res,) = d.cuInit(0)
        except Exception as exc:  # libcuda.so missing: pathfinder raises on first call
            err = translate(exc, "cuInit")
            _init_error = err if isinstance(err, CudaKitError) else NoDriverError(str(exc))
            raise _init_error from exc
        if res != d.CUresult.CUDA_SUCCESS:
            name = getattr(res, "name", str(res))
            if name == "CUDA_ERROR_NO_DEVICE":
                # the driver read CUDA_VISIBLE_DEVICES in this cuInit: the hint names that value
                _init_error = NoDeviceError(visible_devices_hint(
                    "the NVIDIA driver loaded but reports no CUDA device (CUDA_ERROR_NO_DEVICE)"))
            else:
                _init_error = NoDriverError(f"cuInit failed with {name}")
            raise _init_error
        _driver = d
        return d


def call(fn_name: str, *args, context: str = ""):
    """Call ``driver.<fn_name>(*args)``, check the result, return the remaining outputs.

    Returns None, a single value, or a tuple, matching what the binding returns after the result.
    """
    d = driver()
    out = getattr(d, fn_name)(*args)
    res = out[0]
    if res != 0:  # CUresult is an IntEnum; 0 is CUDA_SUCCESS
        raise driver_error(res, fn_name, context)
    if len(out) == 1:
        return None
    if len(out) == 2:
        return out[1]
    return out[1:]


def version() -> int:
    """Driver's CUDA version as an int, e.g. 13000."""
    return int(call("cuDriverGetVersion"))


def device_count() -> int:
    return int(call("cuDeviceGetCount"))


def attribute_enum():
    return driver().CUdevice_attribute


def device_attribute(attr, ordinal: int) -> int:
    return int(call("cuDeviceGetAttribute", attr, ordinal))


# --- contexts -----------------------------------------------------------------------------

def ctx_get_current() -> int:
    """Current context handle as an int (0 when none)."""
    return int(call("cuCtxGetCurrent"))


def ctx_set_current(handle: int) -> None:
    d = driver()
    call("cuCtxSetCurrent", d.CUcontext(handle))


def primary_ctx_retain(ordinal: int) -> int:
    return int(call("cuDevicePrimaryCtxRetain", ordinal))


# --- peers ----------------------------------------------------------------------------------
# Context peer access covers memory allocated in a context (cuMemAlloc: foreign arrays); memory
# from a stream-ordered pool (every kit device array) follows the pool's access list instead
# (cuMemPoolSetAccess, through cuda.core in device.py), never cuCtxEnablePeerAccess.

def ctx_enable_peer_access(peer_ctx: int, context: str = "") -> bool:
    """cuCtxEnablePeerAccess: let the *current* context access memory allocated in
    ``peer_ctx``. True when this call enabled it, False when it already was
    (CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED is success); any other failure raises."""
    d = driver()
    (res,) = d.cuCtxEnablePeerAccess(d.CUcontext(peer_ctx), 0)
    if res == d.CUresult.CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED:
        return False
    if res != 0:
        raise driver_error(res, "cuCtxEnablePeerAccess", context)
    return True


def ctx_disable_peer_access(peer_ctx: int, context: str = "") -> bool:
    """cuCtxDisablePeerAccess from the current context. True when this call disabled it, False
    when it was not enabled (CUDA_ERROR_PEER_ACCESS_NOT_ENABLED is success)."""
    d = driver()
    (res,) = d.cuCtxDisablePeerAccess(d.CUcontext(peer_ctx))
    if res == d.CUresult.CUDA_ERROR_PEER_ACCESS_NOT_ENABLED:
        return False
    if res != 0:
        raise driver_error(res, "cuCtxDisablePeerAccess", context)
    return True


def memcpy_peer_async(dst: int, dst_ctx: int, src: int, src_ctx: int, nbytes: int, stream: int) -> None:
    """cuMemcpyPeerAsync: ``nbytes`` from ``src`` (memory of ``src_ctx``) to ``dst`` (memory of
    ``dst_ctx``) on ``stream`` (of either context). The driver copies directly when the devices
    have a peer path the pools/contexts grant, and through host memory otherwise; it needs no
    unified-address mapping of pool memory on the issuing device, which cuMemcpyAsync may."""
    d = driver()
    call("cuMemcpyPeerAsync", d.CUdeviceptr(dst), d.CUcontext(dst_ctx), d.CUdeviceptr(src), d.CUcontext(src_ctx),
         nbytes, d.CUstream(stream), context=f"copying {nbytes} bytes between devices")


def memcpy_2d_peer_async(dst: int, dst_ctx: int, dst_pitch: int, src: int, src_ctx: int, src_pitch: int,
                         width_bytes: int, rows: int, stream: int) -> None:
    """cuMemcpy3DPeerAsync of one slice: ``rows`` rows of ``width_bytes`` between pitched
    device layouts of two contexts (there is no 2-D peer copy in the driver API)."""
    d = driver()
    p = d.CUDA_MEMCPY3D_PEER()
    dev_mem = d.CUmemorytype.CU_MEMORYTYPE_DEVICE
    p.srcMemoryType, p.srcDevice, p.srcContext = dev_mem, d.CUdeviceptr(src), d.CUcontext(src_ctx)
    p.dstMemoryType, p.dstDevice, p.dstContext = dev_mem, d.CUdeviceptr(dst), d.CUcontext(dst_ctx)
    p.srcPitch, p.dstPitch = src_pitch, dst_pitch
    p.srcHeight, p.dstHeight = rows, rows
    p.WidthInBytes, p.Height, p.Depth = width_bytes, rows, 1
    call("cuMemcpy3DPeerAsync", p, d.CUstream(stream),
         context=f"copying {rows} rows of {width_bytes} bytes between devices (pitches {src_pitch} -> {dst_pitch})")


def mem_get_info() -> tuple[int, int]:
    """(free, total) bytes of the current context's device."""
    free, total = call("cuMemGetInfo")
    return int(free), int(total)


# --- streams ------------------------------------------------------------------------------

def stream_query(stream: int) -> bool:
    """cuStreamQuery: True when all work on the stream is done, False when CUDA_ERROR_NOT_READY."""
    d = driver()
    (res,) = d.cuStreamQuery(d.CUstream(stream))
    if res == d.CUresult.CUDA_SUCCESS:
        return True
    if res == d.CUresult.CUDA_ERROR_NOT_READY:
        return False
    raise driver_error(res, "cuStreamQuery")


def stream_is_capturing(stream: int) -> bool:
    """cuStreamIsCapturing: True while the stream is being captured into a graph (also when the
    query itself fails, e.g. the legacy stream during another stream's global-mode capture: the
    caller then treats the stream as one it must not queue work on)."""
    d = driver()
    res, status = d.cuStreamIsCapturing(d.CUstream(stream))
    return res != d.CUresult.CUDA_SUCCESS or status != d.CUstreamCaptureStatus.CU_STREAM_CAPTURE_STATUS_NONE


def stream_priority_range() -> tuple[int, int]:
    """(least, greatest) priority of the current context. Lower numbers are higher priority."""
    least, greatest = call("cuCtxGetStreamPriorityRange")
    return int(least), int(greatest)


def stream_device(stream: int) -> int:
    """Ordinal of the device a stream belongs to."""
    d = driver()
    return int(call("cuStreamGetDevice", d.CUstream(stream)))


# Host callbacks: a ctypes function pointer the driver calls on its own thread. The
# Python callable is kept in _callbacks until it ran, so it cannot be collected early.
_HOSTFN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_callbacks: dict[int, tuple] = {}
_cb_lock = threading.Lock()
_cb_next = [1]


def _trampoline(user_data):
    key = int(user_data or 0)
    with _cb_lock:
        entry = _callbacks.pop(key, None)
    if entry is None:
        return
    fn, errors = entry[0], entry[1]
    try:
        fn()
    except BaseException as exc:  # never let an exception cross into the driver's thread
        errors.append(exc)


_trampoline_c = _HOSTFN(_trampoline)
_trampoline_addr = ctypes.cast(_trampoline_c, ctypes.c_void_p).value


def launch_host_func(stream: int, fn, errors: list) -> None:
    """Enqueue ``fn()`` to run on a driver thread after the stream's prior work."""
    d = driver()
    with _cb_lock:
        key = _cb_next[0]
        _cb_next[0] += 1
        _callbacks[key] = (fn, errors)
    try:
        call("cuLaunchHostFunc", d.CUstream(stream), d.CUhostFn(_trampoline_addr), key)
    except BaseException:
        with _cb_lock:
            _callbacks.pop(key, None)
        raise


# --- memory -------------------------------------------------------------------------------

def memcpy_async(dst: int, src: int, nbytes: int, stream: int) -> None:
    """Unified-addressing copy (device, pinned or managed on either side)."""
    d = driver()
    call("cuMemcpyAsync", d.CUdeviceptr(dst), d.CUdeviceptr(src), nbytes, d.CUstream(stream))


def memcpy_htod_async(dst: int, src_host: int, nbytes: int, stream: int) -> None:
    """Host -> device; the host side may be pageable (the driver stages it and returns once
    the source has been read, so the caller may reuse it right after)."""
    d = driver()
    call("cuMemcpyHtoDAsync", d.CUdeviceptr(dst), src_host, nbytes, d.CUstream(stream))


def memcpy_dtoh_async(dst_host: int, src: int, nbytes: int, stream: int) -> None:
    """Device -> host; with a pageable destination the driver returns only after the copy."""
    d = driver()
    call("cuMemcpyDtoHAsync", dst_host, d.CUdeviceptr(src), nbytes, d.CUstream(stream))


def memset_d8_async(dst: int, value: int, count: int, stream: int) -> None:
    d = driver()
    call("cuMemsetD8Async", d.CUdeviceptr(dst), value, count, d.CUstream(stream))


def memset_d32_async(dst: int, value: int, count: int, stream: int) -> None:
    d = driver()
    call("cuMemsetD32Async", d.CUdeviceptr(dst), value, count, d.CUstream(stream))


def mem_alloc_managed(nbytes: int, attach_global: bool = True) -> int:
    d = driver()
    flag = d.CUmemAttach_flags.CU_MEM_ATTACH_GLOBAL if attach_global else d.CUmemAttach_flags.CU_MEM_ATTACH_HOST
    return int(call("cuMemAllocManaged", nbytes, int(flag)))


def mem_free(ptr: int) -> None:
    d = driver()
    call("cuMemFree", d.CUdeviceptr(ptr))


def _location(device: int | None):
    """CUmemLocation for a device ordinal, or the host when ``device`` is None / -1."""
    d = driver()
    loc = d.CUmemLocation()
    if device is None or device < 0:
        loc.type = d.CUmemLocationType.CU_MEM_LOCATION_TYPE_HOST
        loc.id = 0
    else:
        loc.type = d.CUmemLocationType.CU_MEM_LOCATION_TYPE_DEVICE
        loc.id = device
    return loc


def mem_prefetch_async(ptr: int, nbytes: int, device: int | None, stream: int) -> None:
    d = driver()
    call("cuMemPrefetchAsync", d.CUdeviceptr(ptr), nbytes, _location(device), 0, d.CUstream(stream))


_ADVICE = {
    "read_mostly": "CU_MEM_ADVISE_SET_READ_MOSTLY",
    "unset_read_mostly": "CU_MEM_ADVISE_UNSET_READ_MOSTLY",
    "preferred_location": "CU_MEM_ADVISE_SET_PREFERRED_LOCATION",
    "unset_preferred_location": "CU_MEM_ADVISE_UNSET_PREFERRED_LOCATION",
    "accessed_by": "CU_MEM_ADVISE_SET_ACCESSED_BY",
    "unset_accessed_by": "CU_MEM_ADVISE_UNSET_ACCESSED_BY",
}


def mem_advise(ptr: int, nbytes: int, advice: str, device: int | None) -> None:
    d = driver()
    try:
        enum = getattr(d.CUmem_advise, _ADVICE[advice])
    except KeyError:
        raise ValueError(f"unknown advice {advice!r}; choose one of {sorted(_ADVICE)}") from None
    call("cuMemAdvise", d.CUdeviceptr(ptr), nbytes, enum, _location(device))


def pointer_attributes(ptr: int) -> dict:
    """Memory type and device ordinal of a pointer (for foreign allocations)."""
    d = driver()
    attrs = [
        d.CUpointer_attribute.CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
        d.CUpointer_attribute.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
        d.CUpointer_attribute.CU_POINTER_ATTRIBUTE_IS_MANAGED,
    ]
    res, values = d.cuPointerGetAttributes(len(attrs), attrs, d.CUdeviceptr(ptr))
    if res != 0:
        raise driver_error(res, "cuPointerGetAttributes")
    mtype, ordinal, managed = values
    return {"memory_type": int(mtype) if mtype is not None else 0, "device": int(ordinal), "managed": bool(managed)}


def mempool_set_release_threshold(ordinal: int, nbytes: int) -> None:
    d = driver()
    pool = call("cuDeviceGetMemPool", ordinal)
    value = d.cuuint64_t(nbytes)
    call(
        "cuMemPoolSetAttribute", pool,
        d.CUmemPool_attribute.CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, value,
    )


def mempool_get_attribute(ordinal: int, name: str) -> int:
    d = driver()
    pool = call("cuDeviceGetMemPool", ordinal)
    attr = getattr(d.CUmemPool_attribute, f"CU_MEMPOOL_ATTR_{name.upper()}")
    return int(call("cuMemPoolGetAttribute", pool, attr))


def mempool_trim(ordinal: int, keep_bytes: int = 0) -> None:
    pool = call("cuDeviceGetMemPool", ordinal)
    call("cuMemPoolTrimTo", pool, keep_bytes)


# --- modules ------------------------------------------------------------------------------

def library_kernel_names(library_handle: int) -> list[str]:
    """Names of every kernel in a loaded CUlibrary."""
    d = driver()
    lib = d.CUlibrary(library_handle)
    count = int(call("cuLibraryGetKernelCount", lib))
    kernels = call("cuLibraryEnumerateKernels", count, lib)
    names = []
    for k in kernels:
        name = call("cuKernelGetName", k)
        names.append(name.decode() if isinstance(name, bytes) else str(name))
    return names


# --- stream capture -------------------------------------------------------------------------

@contextlib.contextmanager
def relaxed_capture_mode():
    """Run the block in relaxed stream-capture mode on this thread, then restore the previous
    mode. While a thread captures in "global" or "thread_local" mode the driver refuses calls
    it deems unsafe (pointer queries, pool attributes, module loads, waits on other streams)
    even when they touch nothing being captured; work queued on the capturing stream is still
    captured."""
    d = driver()
    prev = call("cuThreadExchangeStreamCaptureMode", d.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_RELAXED)
    try:
        yield
    finally:
        call("cuThreadExchangeStreamCaptureMode", prev)


def memcpy_2d_async(dst: int, dst_pitch: int, src: int, src_pitch: int, width_bytes: int, rows: int,
                    stream: int, *, dst_host: bool = False, src_host: bool = False) -> None:
    """cuMemcpy2DAsync of ``rows`` rows of ``width_bytes`` between pitched layouts. Device, managed
    and pinned pointers are given as unified addresses; ``*_host`` marks pageable host memory
    (then the driver stages it, and a device->pageable copy returns once the data arrived)."""
    d = driver()
    p = d.CUDA_MEMCPY2D()
    unified, host = d.CUmemorytype.CU_MEMORYTYPE_UNIFIED, d.CUmemorytype.CU_MEMORYTYPE_HOST
    if src_host:
        p.srcMemoryType, p.srcHost = host, src
    else:
        p.srcMemoryType, p.srcDevice = unified, d.CUdeviceptr(src)
    if dst_host:
        p.dstMemoryType, p.dstHost = host, dst
    else:
        p.dstMemoryType, p.dstDevice = unified, d.CUdeviceptr(dst)
    p.srcPitch, p.dstPitch = src_pitch, dst_pitch
    p.WidthInBytes, p.Height = width_bytes, rows
    call("cuMemcpy2DAsync", p, d.CUstream(stream), context=f"copying {rows} rows of {width_bytes} bytes (pitches {src_pitch} -> {dst_pitch})")


def kernel_params(values: tuple, sizes: tuple):
    """A packed ``void*[]`` for cuLaunchKernel: each value (an int or a numpy scalar) stored at
    its parameter's width. Returns (keep-alive object, address of the pointer array)."""
    import numpy as _np

    n = len(values)
    slots = [ctypes.create_string_buffer(max(int(sz), 1)) for sz in sizes]
    for buf, v, sz in zip(slots, values, sizes):
        if isinstance(v, _np.generic):
            raw = v.tobytes()
        else:  # Python ints: pointers and 8-byte integers (the launcher packs nothing else as int)
            raw = int(v).to_bytes(int(sz), "little", signed=int(v) < 0)
        if len(raw) != sz:
            raise ValueError(f"parameter of {sz} bytes given {len(raw)} bytes")
        ctypes.memmove(buf, raw, sz)
    ptrs = (ctypes.c_void_p * max(n, 1))(*[ctypes.addressof(b) for b in slots])
    return (slots, ptrs), ctypes.addressof(ptrs)


def function_handle(kernel_handle: int):
    """A CUfunction object for a CUkernel handle (the driver launches a CUkernel given as a
    CUfunction in the stream's context)."""
    return driver().CUfunction(int(kernel_handle))


def stream_handle_object(handle: int):
    return driver().CUstream(int(handle))
