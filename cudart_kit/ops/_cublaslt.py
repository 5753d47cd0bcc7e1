"""matmul's ``algo="cublas"``: cuBLASLt called directly through nvmath-python's low-level
bindings (``nvmath.bindings.cublasLt``), one ``cublasLtMatmul`` per call.

Row-major kit operands, column-major cuBLAS: a row-major M x N matrix with pitch ld is, byte for
byte, the column-major N x M matrix with the same ld. So the kit computes the column-major
product ``C^T = op(B)^T @ op(A)^T``: cuBLAS's A is the kit's B and cuBLAS's B is the kit's A,
m = N, n = M, k = K, and the stored layouts map one to one — an operand stored transposed
(letter ``t``, see docs/matmul.md) is a cuBLAS ``CUBLAS_OP_T`` operand, one stored as ``n`` an
``OP_N`` one, each with its own leading dimension. No ``CUBLASLT_ORDER_ROW`` layout is used
(every cuBLASLt kernel reads column-major layouts). C and D are ``out``, one layout, in place.

Cached: one cuBLASLt handle per device (``cublasLtCreate`` in that device's context, kept for
the process), and a :class:`Plan` per geometry (device, dtype, M, N, K, stored layouts, leading
dimensions, the three pointers' alignments, compute type) holding the matmul descriptor
(``CUBLAS_COMPUTE_32F``, FP32 scale; ``CUBLAS_COMPUTE_32F_FAST_TF32`` only for float32 with
``allow_tf32=True``), the layouts, the preference (workspace cap, minimum alignments) and the
heuristic's best algorithm. At most :data:`PLAN_CACHE_SIZE` plans; an evicted plan's descriptors
are destroyed. alpha / beta are host scalars (pointer mode host) in the plan's numpy array.

The workspace an algorithm needs is one kit device array per stream, used only on that stream,
so concurrent streams never share one (:func:`workspace`).
"""

from __future__ import annotations

import itertools
import threading
import weakref

import numpy as np

from .. import _driver as drv
from ..errors import CudaKitError, MissingExtraError
from ..memory import bfloat16, empty
from ..stream import Stream
from . import _gemm_sm90 as _sm90

__all__ = ["Plan", "plan_for", "workspace", "stats", "plan_count", "PLAN_CACHE_SIZE", "WORKSPACE_CAP"]

PLAN_CACHE_SIZE = 64
WORKSPACE_CAP = 32 << 20  # bytes an algorithm may ask for (cuBLAS's own default on Hopper)
_BORROWED_WORKSPACES = 16  # workspaces kept for borrowed streams (whose end the kit cannot see)

# cudaDataType_t (library_types.h): stable ABI values
_CUDA_R_32F, _CUDA_R_16F, _CUDA_R_16BF = 0, 2, 14
_CUDA_TYPE = {np.dtype(np.float32): _CUDA_R_32F, np.dtype(np.float16): _CUDA_R_16F}
if bfloat16 is not None:
    _CUDA_TYPE[bfloat16] = _CUDA_R_16BF

#: counters, for tests and the benchmark: plans made / evicted, workspaces allocated
stats = {"plans_made": 0, "plans_evicted": 0, "workspaces_made": 0}

_lock = threading.RLock()  # plan, handle and workspace creation (never taken by a finalizer)
_plans: dict = {}
_handles: dict = {}  # device ordinal -> cublasLtHandle_t
_clock = itertools.count()


def bindings():
    """(cublasLt, cublas) modules of nvmath-python; MissingExtraError without it. Imported by
    every checked call (a module lookup once loaded), never cached here: the plans keep theirs."""
    try:
        from nvmath.bindings import cublas, cublasLt
    except ImportError as exc:
        raise MissingExtraError("algo='cublas'", "nvmath-python (NVIDIA's cuBLAS bindings)", "cublas",
                                str(exc)) from None
    return cublasLt, cublas


def _status_error(lt, api: str, exc: Exception, what: str) -> CudaKitError:
    """A cuBLASLtError (or anything the binding raised) as a kit error naming the call."""
    status = getattr(exc, "status", None)
    try:
        name = lt.get_status_name(int(status)) if status is not None else None
    except Exception:
        name = None
    said = f"{name} (status {int(status)})" if name else f"{type(exc).__name__}: {exc}"
    return CudaKitError(f"{api} failed for {what}: {said}")


def _alignment(ptr: int) -> int:
    """The largest power of two up to 256 dividing ``ptr``: cuBLASLt's heuristics pick kernels for
    the operands' alignment, so a plan serves only pointers aligned at least as well."""
    return min(256, ptr & -ptr) if ptr else 256


def _set(lt_set, dtype_of, obj: int, attr, value) -> None:
    """cublasLt*SetAttribute with the value in the attribute's own C type."""
    v = np.array(value, dtype=dtype_of(attr))
    lt_set(obj, attr, v.ctypes.data, v.itemsize)


def _handle(lt, dev) -> int:
    h = _handles.get(dev.ordinal)
    if h is None:
        with dev.activate():
            try:
                h = _handles[dev.ordinal] = int(lt.create())
            except Exception as exc:
                raise _status_error(lt, "cublasLtCreate", exc, f"device {dev.ordinal}") from exc
    return h


class Plan:
    """One geometry's cuBLASLt objects: descriptor, layouts, preference, algorithm, scalars."""

    __slots__ = ("lt", "handle", "desc", "la", "lb", "lc", "pref", "res", "p_algo", "ws_bytes", "scalars",
                 "p_alpha", "p_beta", "al_a", "al_b", "al_c", "lock", "used", "what", "key")

    def fast(self, a, b, out, alpha, beta, s) -> bool:
        """matmul's cached-plan entry (ops.gemm._fast) for kit-owned contiguous arrays of the
        signatures this plan was made for: pointers checked against the plan's alignments, the
        arrays recorded as used on ``s``, one cublasLtMatmul. False (the caller takes the checked
        path) when a pointer is less aligned or the plan was evicted."""
        pa, pb, pc = a.ptr, b.ptr, out.ptr
        if pa % self.al_a or pb % self.al_b or pc % self.al_c:
            return False
        if a.stream is not s:
            a.record_stream(s)
        if b.stream is not s:
            b.record_stream(s)
        if out.stream is not s:
            out.record_stream(s)
        return self.run(pa, pb, pc, alpha, beta, s)

    def run(self, pa: int, pb: int, pc: int, alpha, beta, s: Stream) -> bool:
        """``out = alpha * op(A) @ op(B) + beta * out`` at these pointers on ``s``: one
        cublasLtMatmul (cuBLAS's A = the kit's B, see the module docstring). False if evicted."""
        need = self.ws_bytes
        ws = workspace(s, need) if need else 0
        with self.lock:
            desc = self.desc
            if not desc:
                return False
            sc = self.scalars
            sc[0] = alpha
            sc[1] = beta
            self.used = next(_clock)
            with s.device.activate():
                try:
                    self.lt.matmul(self.handle, desc, self.p_alpha, pb, self.la, pa, self.lb, self.p_beta,
                                   pc, self.lc, pc, self.lc, self.p_algo, ws, need, s._handle)
                except Exception as exc:
                    raise _status_error(self.lt, "cublasLtMatmul", exc, self.what) from exc
        return True

    def destroy(self) -> None:
        """Destroy the descriptors (after any call in flight on another thread). Idempotent."""
        with self.lock:
            _destroy_all(self.lt, self.desc, self.la, self.lb, self.lc, self.pref)
            self.desc = self.la = self.lb = self.lc = self.pref = 0


def _destroy_all(lt, desc, la, lb, lc, pref) -> None:
    for fn, obj in ((lt.matmul_desc_destroy, desc), (lt.matrix_layout_destroy, la),
                    (lt.matrix_layout_destroy, lb), (lt.matrix_layout_destroy, lc),
                    (lt.matmul_preference_destroy, pref)):
        if obj:
            try:
                fn(obj)
            except Exception:
                pass


def plan_for(dev, dtype, M: int, N: int, K: int, ta: int, tb: int, lda: int, ldb: int, ldc: int,
             pa: int, pb: int, pc: int, allow_tf32: bool = False) -> Plan:
    """The cached plan of this geometry, made (cublasLt heuristic) on first use. ``ta`` / ``tb``:
    A / B stored transposed (after the transpose flags), leading dimensions as stored."""
    tf32 = bool(allow_tf32) and dtype == np.float32
    key = (dev.ordinal, dtype, M, N, K, ta, tb, lda, ldb, ldc, _alignment(pa), _alignment(pb), _alignment(pc), tf32)
    lt, blas = bindings()
    p = _plans.get(key)
    if p is not None and p.desc:
        return p
    with _lock:
        p = _plans.get(key)
        if p is None or not p.desc:
            p = _plans[key] = _make(lt, blas, dev, key)
            stats["plans_made"] += 1
            while len(_plans) > PLAN_CACHE_SIZE:
                victim = min(_plans, key=lambda k: _plans[k].used)
                _plans.pop(victim).destroy()
                stats["plans_evicted"] += 1
    return p


def _make(lt, blas, dev, key) -> Plan:
    _, dtype, M, N, K, ta, tb, lda, ldb, ldc, al_a, al_b, al_c, tf32 = key
    layout = ("t" if ta else "n") + ("t" if tb else "n")
    what = f"a {M}x{N}x{K} {dtype} matmul (layout {layout}, lda {lda}, ldb {ldb}, ldc {ldc})"
    dt = _CUDA_TYPE[np.dtype(dtype)]
    ct = blas.ComputeType.COMPUTE_32F_FAST_TF32 if tf32 else blas.ComputeType.COMPUTE_32F
    op_n, op_t = blas.Operation.N, blas.Operation.T
    MDA, PRA = lt.MatmulDescAttribute, lt.MatmulPreferenceAttribute
    handle = _handle(lt, dev)
    p = Plan()
    p.lt, p.handle, p.what, p.key = lt, handle, what, key
    p.desc = p.la = p.lb = p.lc = p.pref = 0
    api = "cublasLtMatmulDescCreate"
    try:
        with dev.activate():
            p.desc = lt.matmul_desc_create(ct, _CUDA_R_32F)
            api = "cublasLtMatmulDescSetAttribute"
            dset, ddt = lt.matmul_desc_set_attribute, lt.get_matmul_desc_attribute_dtype
            _set(dset, ddt, p.desc, MDA.TRANSA, op_t if tb else op_n)  # cuBLAS's A is the kit's B
            _set(dset, ddt, p.desc, MDA.TRANSB, op_t if ta else op_n)
            _set(dset, ddt, p.desc, MDA.POINTER_MODE, lt.PointerMode.HOST)
            api = "cublasLtMatrixLayoutCreate"  # column-major, as stored: (rows, cols, ld)
            p.la = lt.matrix_layout_create(dt, *((K, N) if tb else (N, K)), ldb)
            p.lb = lt.matrix_layout_create(dt, *((M, K) if ta else (K, M)), lda)
            p.lc = lt.matrix_layout_create(dt, N, M, ldc)
            api = "cublasLtMatmulPreferenceCreate"
            p.pref = lt.matmul_preference_create()
            api = "cublasLtMatmulPreferenceSetAttribute"
            pset, pdt = lt.matmul_preference_set_attribute, lt.get_matmul_preference_attribute_dtype
            _set(pset, pdt, p.pref, PRA.MAX_WORKSPACE_BYTES, WORKSPACE_CAP)
            for attr, al in ((PRA.MIN_ALIGNMENT_A_BYTES, al_b), (PRA.MIN_ALIGNMENT_B_BYTES, al_a),
                             (PRA.MIN_ALIGNMENT_C_BYTES, al_c), (PRA.MIN_ALIGNMENT_D_BYTES, al_c)):
                _set(pset, pdt, p.pref, attr, al)
            api = "cublasLtMatmulAlgoGetHeuristic"
            res, found = lt.MatmulHeuristicResult(1), np.zeros(1, np.int32)
            lt.matmul_algo_get_heuristic(handle, p.desc, p.la, p.lb, p.lc, p.lc, p.pref, 1, res.ptr,
                                         found.ctypes.data)
        if found[0] < 1:
            raise CudaKitError(f"cublasLtMatmulAlgoGetHeuristic found no algorithm for {what} (operand "
                               f"alignments {al_a}, {al_b}, {al_c} bytes, workspace up to {WORKSPACE_CAP} bytes)")
    except CudaKitError:
        _destroy_all(lt, p.desc, p.la, p.lb, p.lc, p.pref)
        raise
    except Exception as exc:
        _destroy_all(lt, p.desc, p.la, p.lb, p.lc, p.pref)
        raise _status_error(lt, api, exc, what) from exc
    p.res = res  # owns the algorithm struct (the first member of cublasLtMatmulHeuristicResult_t)
    p.p_algo = int(res.ptr) + lt.matmul_heuristic_result_dtype.fields["algo"][1]
    p.ws_bytes = int(np.asarray(res.workspace_size).reshape(-1)[0])
    p.scalars = np.zeros(2, np.float32)  # alpha, beta: the scale type is FP32 for every dtype
    p.p_alpha = int(p.scalars.ctypes.data)
    p.p_beta = p.p_alpha + 4
    p.al_a, p.al_b, p.al_c = al_a, al_b, al_c
    p.lock = threading.Lock()
    p.used = next(_clock)
    return p


# --- workspaces: one per stream, used only there ------------------------------------------------

class _Ws:
    __slots__ = ("arr", "fin", "close", "twin")

    def __init__(self, arr, fin, close: bool, twin: bool):
        self.arr, self.fin, self.close, self.twin = arr, fin, close, twin


# owned and capture streams' workspaces, by id(stream): their finalizers remove them (at any time,
# from the garbage collector), so nothing iterates this dict unguarded
_ws: dict = {}
_wsb: dict = {}  # borrowed streams' workspaces, by (device, handle, thread for handle 2)


def _table(s: Stream):
    if s._capture is not None:
        return _ws, ("capture", id(s))
    if s.owned:
        return _ws, id(s)
    h = s._handle  # a borrowed stream: by handle (the per-thread default stream, 2, is per thread)
    return _wsb, (s.device.ordinal, h, threading.get_ident() if h == 2 else 0)


def workspace(s: Stream, nbytes: int) -> int:
    """The address of at least ``nbytes`` of workspace for work queued on ``s`` only.

    - An owned kit Stream: a kit device array allocated on ``s``'s CUDA stream (through a borrowed
      twin of it, so the cache does not keep ``s`` alive), freed in that stream's order when ``s``
      is collected (or when a larger one replaces it).
    - A stream being captured: a buffer the graph holds (``_gemm_sm90.workspace``: allocated on
      the side stream and recorded on the capture, ``record_stream`` puts it in the capture's
      sink), one per capture stream, so replays of two graphs never share one.
    - A borrowed stream (adopted, raw handle): kept per handle, the last
      ``_BORROWED_WORKSPACES`` of them; allocated on the borrowed stream, which it keeps alive.
    """
    table, key = _table(s)
    e = table.get(key)
    if e is not None and e.arr.ptr and e.arr.nbytes >= nbytes:
        return e.arr.ptr
    with _lock:
        e = table.get(key)
        if e is not None and e.arr.ptr and e.arr.nbytes >= nbytes:
            return e.arr.ptr
        capture = s._capture is not None
        owned = s.owned and not capture
        home = Stream._wrap(s._core, s.device, owned=False) if owned else s
        arr = _allocate(nbytes, s, home)
        stats["workspaces_made"] += 1
        fin = weakref.finalize(s, _retire, key) if table is _ws else None
        if e is not None:
            _drop(e)  # outside a capture: freed in the same stream's order, after the work queued
        table[key] = _Ws(arr, fin, not capture, owned)
        if table is _wsb:
            for k in list(_wsb)[:-_BORROWED_WORKSPACES]:
                _drop(_wsb.pop(k))
        return arr.ptr


def _allocate(nbytes: int, s: Stream, home: Stream):
    """A workspace array: graph-held inside a capture, else a pool allocation on ``home``."""
    if s._capture is not None:
        return _sm90.workspace(nbytes, np.uint8, s)
    return empty((nbytes,), np.uint8, stream=home)


def _drop(e: _Ws) -> None:
    """Give a workspace back: freed in its stream's order; a capture's stays with the graph."""
    if e.fin is not None:
        e.fin.detach()
    if not e.close:
        return
    arr = e.arr
    home = arr.stream
    if e.twin and getattr(home._core, "is_closed", False):
        home._core = None  # our twin of a stream closed meanwhile: the kit's closed-stream free
    elif home._handle == 2 and not home.is_closed:
        try:  # the per-thread default stream: which one handle 2 names depends on the thread
            with home.device.activate():
                drv.call("cuCtxSynchronize")
        except Exception:
            pass
    arr.close()


def _retire(key) -> None:
    """Finalizer of a stream with a workspace: runs before the stream's own (newer finalizers
    run first), so the free is still ordered on it. Never raises, takes no lock."""
    e = _ws.pop(key, None)
    if e is not None:
        e.fin = None
        try:
            _drop(e)
        except Exception:
            pass


def plan_count() -> int:
    return len(_plans)


def _clear_plans() -> None:
    """Destroy every cached plan's descriptors and give back the workspaces (capture workspaces
    stay with their graphs). Handles stay (one per device, for the process)."""
    with _lock:
        plans, entries = list(_plans.values()), list(_ws.copy().values()) + list(_wsb.values())
        _plans.clear()
        _ws.clear()
        _wsb.clear()
    for p in plans:
        p.destroy()
    for e in entries:
        _drop(e)
