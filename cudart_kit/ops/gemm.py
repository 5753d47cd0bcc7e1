"""Matrix multiply over kernels/gemm.cu (every GPU from sm_80) and kernels/gemm_sm90.cu (wgmma +
TMA, compute capability 9.0 only): C = alpha * op(A) @ op(B) + beta * C on a given stream.

Row-major throughout. An operand is read where it lies, through its own strides: row-major with
a leading dimension (a row block or column block of a larger matrix) or column-major (a
transposed view such as ``x.T``), which the kernels read as stored transposed; ``transpose_a`` /
``transpose_b`` transpose on top. The layout names ("nn", "nt", "tn", "tt"), the tiles and the
shared-memory sizes of every kernel come from :mod:`._gemm_geometry`.
"""

from __future__ import annotations

import numpy as np

from .. import profiling as _prof
from .. import _driver as drv
from .._launch import LaunchPlan
from ..errors import DeviceCapabilityError, DeviceMismatchError, DTypeError, ShapeError, StreamError
from ..launcher import launch, pack_args
from ..memory import Array, asarray, bfloat16, check_open, empty
from ..module import Kernel, kit_kernel
from ..stream import Stream, as_stream
from . import _cublaslt
from . import _gemm_sm90 as _sm90
from ._gemm_geometry import (EPILOGUE, NAIVE, SIMT128, SIMT256, TILED, WMMA_B16, WMMA_TF32, classify, layout_name,
                             overlaps)

__all__ = ["matmul", "ALGOS", "ACTIVATIONS", "SIMT", "choose_algo", "layout_of", "simt_tile"]

# matmul's activation= values, and their codes in kernels/epilogue.cuh (ACT_NONE, ACT_RELU, ACT_GELU)
ACTIVATIONS = (None, "relu", "gelu")
_ACT_CODE = {None: 0, "relu": 1, "gelu": 2}
_NO_EPILOGUE = _sm90.NO_EPILOGUE  # the kernels' last four parameters (kernels/epilogue.cuh): none

# FP32 SIMT algorithms: "simt" picks one of the two tile shapes for the problem (simt_tile)
SIMT = ("simt", "simt128", "simt256")

ALGOS = ("auto", "naive", "tiled", *SIMT, "tf32", "bf16", "fp16", "tf32_sm90", "bf16_sm90", "fp16_sm90",
         "cublas")
_F32, _F16 = np.dtype(np.float32), np.dtype(np.float16)
_BF16 = (bfloat16,) if bfloat16 is not None else ()
_DTYPES_OF = {"naive": (_F32,), "tiled": (_F32,), **{k: (_F32,) for k in SIMT}, "tf32": (_F32,), "fp16": (_F16,),
              "tf32_sm90": (_F32,), "fp16_sm90": (_F16,), "bf16_sm90": _BF16, "bf16": _BF16,
              "cublas": (_F32, _F16) + _BF16}


def _kernel(name: str) -> Kernel:
    return kit_kernel("gemm", name)


def layout_of(arr: Array, what: str, needs: str | None = None) -> tuple[int, int]:
    """(stored transposed, leading dimension) of a 2-D array, from its shape and byte strides
    (:func:`._gemm_geometry.classify`): row-major with ld >= columns (0, ld), or column-major, a
    transposed view (1, ld). Anything else raises ShapeError naming ``matmul: <what>`` and saying
    what is needed (``needs``)."""
    st = classify(arr.shape, arr.strides, arr.itemsize, arr.ptr, what=f"matmul: {what}", needs=needs)
    return int(st.transposed), st.ld


def _needs(name: str, rows: int, cols: int, it: int) -> str:
    """What the ``name`` kernel reads, for an error about an operand stored rows x cols."""
    if name == "simt128":
        return (f"the simt128 kernel reads row-major operands only (layout nn: strides (ld*{it}, {it}) with "
                f"ld >= {cols}); 'simt', 'simt256' and 'auto' read column-major ones too")
    extra = ("; an operand whose start or leading dimension is not 16-byte aligned is re-pitched first"
             if name in _sm90.KINDS else "")
    return (f"the {name} kernel reads a row-major operand (strides (ld*{it}, {it}) with ld >= {cols}) or a "
            f"column-major one (strides ({it}, ld*{it}) with ld >= {rows}), any leading dimension{extra}")


def simt_tile(M: int, N: int, sms: int, transposed: bool = False) -> str:
    """The SIMT kernel "simt" runs for an M x N output on a GPU with ``sms`` multiprocessors.
    simt256 (SIMT256.bm x SIMT256.bn = 128x256 tiles, one CTA per SM) is the fast one once its
    grid covers at least half the SMs; below that the 128x128 tiles of simt128 (two CTAs per SM)
    keep more of the GPU busy (1000^3 on the H200: 32 CTAs of simt256 ran at half the speed of 64
    of simt128). Only simt256 reads transposed operands, so ``transposed`` inputs always get it."""
    return "simt256" if transposed or 2 * SIMT256.tiles(M, N) >= sms else "simt128"


def choose_algo(dtype: np.dtype, ta: int, tb: int, allow_tf32: bool, sm90: bool = False) -> str:
    """What 'auto' runs. ``sm90``: the device runs the Hopper kernels (compute capability 9.0).
    float32 -> simt (any layout: its 128x256 kernel reads transposed operands too); with
    ``allow_tf32`` tf32_sm90, else tf32. bfloat16 -> bf16_sm90, else bf16; float16 -> fp16_sm90,
    else fp16. On the H100 each choice was the fastest of its dtype in tools/bench_gemm.py."""
    if dtype == _F32:
        if allow_tf32:
            return "tf32_sm90" if sm90 else "tf32"
        return "simt"
    if dtype == _F16:
        return "fp16_sm90" if sm90 else "fp16"
    if bfloat16 is not None and dtype == bfloat16:
        return "bf16_sm90" if sm90 else "bf16"
    raise DTypeError(f"matmul supports float32, float16 and bfloat16, got {dtype}")


@_prof.traced("matmul")
def matmul(a, b, out=None, *, alpha: float = 1.0, beta: float = 0.0, bias=None, activation: str | None = None,
           algo: str = "auto", transpose_a: bool = False, transpose_b: bool = False, allow_tf32: bool = False,
           stream, timed: bool = False):
    """``out = act(alpha * op(a) @ op(b) + beta * out + bias)`` with one kernel launch on ``stream``.

    ``a``, ``b``: 2-D device arrays (kit Arrays or any CAI / DLPack array, views included) of one
    dtype, each row-major with any leading dimension (a row or column block of a larger matrix)
    or column-major (a transposed view, read as stored transposed: layouts "nn".."tt" in
    docs/matmul.md); ``transpose_a`` / ``transpose_b`` transpose on top. ``out`` (M x N, the
    inputs' dtype, row-major with any leading dimension: it may be a block of a larger array,
    whose other elements are left untouched; never overlapping ``a`` or ``b``) is allocated on
    ``stream`` when omitted (then ``beta`` must be 0). ``algo``: see ALGOS and
    :func:`choose_algo`. Shapes, dtypes, device and layout are checked before the launch; a
    layout no kernel reads (a stepped or reversed view, a column-major out) is a ShapeError
    saying what the kernel needs, never a copy made behind the caller's back (the only copies
    are the sm90 workspaces below).

    Epilogue (docs/matmul.md, "Fused epilogues"): ``bias``, a device array of out's dtype
    broadcast to M x N as numpy broadcasts — shape (N,) or (1, N) adds ``bias[j]`` to column j,
    (M, 1) adds ``bias[i]`` to row i, (M, N) adds element-wise; any strides (a view) — and
    ``activation`` ``None``, ``"relu"`` or ``"gelu"`` (the tanh form, as
    ``torch.nn.functional.gelu(x, approximate="tanh")``), both applied in FP32 to
    ``alpha * op(a) @ op(b) + beta * out`` before the one rounding to out's dtype, inside the
    kernel's own epilogue for every kit algorithm (no extra pass over out). With
    ``algo="cublas"`` they are a second kernel over out, after cuBLAS (out is rounded to its
    dtype in between). ``bias`` must not overlap ``out``. Returns ``out`` — the caller's own object when one was
    passed, a PyTorch tensor stays a tensor — (``(out, TimingRecord)`` if ``timed``).

    Work the algorithm needs besides the product (tf32_sm90's transposed B, the re-pitched copy
    of an operand TMA cannot read, cuBLAS's workspace) is queued on ``stream`` too. Inside a
    graph capture (``stream`` a capture's stream) every algorithm and layout works: pass
    ``out=``; the workspaces belong to the graph (docs/matmul.md, "Graph capture").

    Raises ClosedError naming the stream for a closed stream, and naming ``a``, ``b`` or ``out``
    for a closed array (or a view of one), before anything is queued, on every path (cached
    plans included); StreamError for ``out=None`` inside a capture; ShapeError, DTypeError,
    DeviceMismatchError, DeviceCapabilityError, ValueError for bad arguments (a bias that does
    not broadcast to M x N is a ShapeError, one of another dtype a DTypeError, an unknown
    activation a ValueError).
    """
    s = stream if type(stream) is Stream and stream._core is not None else as_stream(stream)  # closed: ClosedError
    if s._capture is not None:
        # Inside a capture the host side may ask the driver about pointers, load a module, plan
        # cuBLAS on a side stream and wait for it: calls the driver may refuse a thread capturing
        # in "global" or "thread_local" mode, though none touches the stream being captured.
        with drv.relaxed_capture_mode():
            res = _matmul(a, b, out, alpha, beta, algo, transpose_a, transpose_b, allow_tf32, s, timed, bias,
                          activation)
    else:
        res = _matmul(a, b, out, alpha, beta, algo, transpose_a, transpose_b, allow_tf32, s, timed, bias, activation)
    if out is None or type(out) is Array:
        return res
    return (out, res[1]) if timed else out  # a foreign out= comes back as the caller's object


def _matmul(a, b, out, alpha, beta, algo: str, transpose_a, transpose_b, allow_tf32, s: Stream, timed: bool,
            bias=None, activation=None):
    # Fast path: kit-owned contiguous arrays whose signatures (dtype, shape, device) were seen
    # before with this algo: the checks below passed then and depend on nothing else (kit-owned
    # arrays are whole allocations: distinct ones never overlap), so a cached plan launches
    # directly (small matmuls are bound by host time). A closed array has ptr 0 and takes the
    # checked path, which names it; so does out= one of the inputs. With an epilogue the key adds
    # the bias's signature (a kit-owned contiguous bias: its broadcast strides follow from its
    # shape) and the activation; the plan rebinds the bias pointer too.
    if type(a) is Array and type(b) is Array and type(out) is Array and not timed:
        if bias is None and activation is None:
            plan = _fast.get((a.sig, b.sig, out.sig, algo, allow_tf32, transpose_a, transpose_b))
            if (plan is not None and a.sig[2] is s.device and a.ptr and b.ptr and out.ptr and out is not a
                    and out is not b and plan(a, b, out, alpha, beta, s)):
                return out
        elif bias is None or (type(bias) is Array and bias.ptr and bias is not out):
            plan = _fast.get((a.sig, b.sig, out.sig, algo, allow_tf32, transpose_a, transpose_b,
                              None if bias is None else bias.sig, activation))
            if (plan is not None and a.sig[2] is s.device and a.ptr and b.ptr and out.ptr and out is not a
                    and out is not b and plan(a, b, out, alpha, beta, s, bias)):
                return out
    if algo not in ALGOS:
        raise ValueError(f"matmul: algo must be one of {ALGOS}, got {algo!r}")
    if activation not in _ACT_CODE:
        raise ValueError(f"matmul: activation must be one of {ACTIVATIONS}, got {activation!r}")
    for x, what in ((a, "a"), (b, "b"), (out, "out"), (bias, "bias")):
        if isinstance(x, Array):
            check_open(x, f"matmul: {what}")
    A, B = asarray(a, stream=s, name="matmul: a"), asarray(b, stream=s, name="matmul: b")
    for arr, what in ((A, "a"), (B, "b")):
        if arr.kind in ("device", "foreign") and arr.device is not s.device:
            raise DeviceMismatchError(f"matmul: {what} is on device {arr.device.ordinal}, the stream on {s.device.ordinal}")
    if A.dtype != B.dtype:
        raise DTypeError(f"matmul: a is {A.dtype} but b is {B.dtype}")
    if algo == "auto":
        sm90 = False
        if allow_tf32 or A.dtype != _F32:
            sm90 = _sm90.unsupported(s.device) is None
        name = choose_algo(A.dtype, 0, 0, allow_tf32, sm90)  # the choice does not depend on the layout
    else:
        name = algo
    if A.dtype not in _DTYPES_OF[name]:
        raise DTypeError(f"matmul: algo {name!r} takes {', '.join(str(d) for d in _DTYPES_OF[name]) or 'bfloat16 (needs ml_dtypes)'}, got {A.dtype}")
    it = A.itemsize
    ta, lda = _operand_layout(A, "a", name)
    tb, ldb = _operand_layout(B, "b", name)
    ta ^= int(bool(transpose_a))
    tb ^= int(bool(transpose_b))
    # op(A) is M x K, op(B) is K x N, whatever the storage
    M, K = (A.shape[1], A.shape[0]) if transpose_a else A.shape
    K2, N = (B.shape[1], B.shape[0]) if transpose_b else B.shape
    if K != K2:
        raise ShapeError(f"matmul: inner dimensions differ: op(a) is {M}x{K}, op(b) is {K2}x{N}")
    if min(M, N, K) < 1:
        raise ShapeError(f"matmul: M, N, K must be >= 1, got {M}, {N}, {K}")
    if name in _sm90.KINDS and algo != "auto":
        why = _sm90.unsupported(s.device)
        if why is not None:
            raise DeviceCapabilityError(f"matmul algo {name!r}: {why}")
    if name == "simt128" and (ta or tb):
        raise ShapeError(f"matmul: algo 'simt128' reads layout nn only (a stored M x K, b stored K x N, both "
                         f"row-major), got {layout_name(ta, tb)} ({_stored_as(ta, tb)}); use 'simt', 'simt256' or "
                         "'auto' for transposed ones")
    if out is None:
        if s.is_capturing:
            raise StreamError("matmul: pass out= inside a graph capture: allocate the output before the capture "
                              "(the kit allocates only an op's own workspaces inside one)")
        if beta != 0:
            raise ValueError("matmul: beta != 0 needs an out= array to accumulate into")
        O = empty((M, N), A.dtype, stream=s)
        ldc = N
    else:
        O = asarray(out, stream=s, name="matmul: out")
        if O.shape != (M, N):
            raise ShapeError(f"matmul: out must be {M}x{N} {A.dtype}, got {O.shape} {O.dtype}")
        if O.dtype != A.dtype:
            raise DTypeError(f"matmul: out is {O.dtype} but a and b are {A.dtype}; out must be {M}x{N} {A.dtype}")
        row_major = f"a row-major out (strides (ldc*{it}, {it}) with ldc >= {N})"
        tc, ldc = layout_of(O, "out", f"the {name} kernel writes {row_major}")
        if tc:  # unit stride along M, not along N (a single row is row-major whatever its row stride)
            hint = ("; for a column-major out compute its transpose instead: out.T = op(b).T @ op(a).T"
                    if M > 1 else "")
            raise ShapeError(f"matmul: out has shape {O.shape} and strides {O.strides} (column-major): the {name} "
                             f"kernel writes {row_major}{hint}")
        for arr, what in ((A, "a"), (B, "b")):
            if overlaps(O.ptr, O.shape, O.strides, arr.ptr, arr.shape, arr.strides, it):
                raise ShapeError(f"matmul: out overlaps {what} in memory; the kernels read the inputs while "
                                 "writing out, so it must be separate memory")
    for n_, what in ((lda, "lda"), (ldb, "ldb"), (ldc, "ldc"), (M, "M"), (N, "N"), (K, "K")):
        if n_ > 2**31 - 1:
            raise ShapeError(f"matmul: {what}={n_} does not fit the kernels' 32-bit indices")
    epi = _NO_EPILOGUE if bias is None and activation is None else _epilogue(bias, activation, M, N, O, s)
    alpha32, beta32 = np.float32(alpha), np.float32(beta)
    if name == "cublas":
        fast_key = ((A.sig, B.sig, O.sig, algo, allow_tf32, transpose_a, transpose_b)
                    if type(a) is Array and type(b) is Array and type(out) is Array and epi is _NO_EPILOGUE
                    else None)
        return _cublas(A, B, O, float(alpha), float(beta), ta, tb, lda, ldb, ldc, M, N, K, bool(allow_tf32), s,
                       timed, fast_key, epi)
    # plans are kept for kit-owned contiguous arrays (row-major, so ta / tb are the transpose
    # flags and the layout follows from the signature; kit allocations are 256-byte aligned)
    plannable = (type(a) is Array and type(b) is Array and type(out) is Array and A.sig[3] and A.sig[4]
                 and B.sig[3] and B.sig[4] and O.sig[3] and O.sig[4])
    key = (A.sig, B.sig, O.sig, algo, allow_tf32, transpose_a, transpose_b)
    if epi is not _NO_EPILOGUE:  # a plan for a kit-owned contiguous bias (or none), keyed as above
        plannable = plannable and (bias is None or (type(bias) is Array and bias.sig[3] and bias.sig[4]))
        key += (None if bias is None or not plannable else bias.sig, activation)
    layout = layout_name(ta, tb)
    if name in _sm90.KINDS:
        rec = _sm90.run(_sm90.KINDS[name], A, B, O, ta, tb, lda, ldb, ldc, M, N, K, alpha32, beta32, s, timed, epi)
        if plannable:
            plan = _sm90.fast_plan(_sm90.KINDS[name], M, N, K, bool(ta), bool(tb), s.device,
                                   None if epi is _NO_EPILOGUE else epi)
            if plan is not None:
                _remember(key, plan)
        return (O, rec) if timed else O
    if name in ("naive", "tiled"):
        geo = NAIVE if name == "naive" else TILED
        kernel, grid, block, smem = _kernel(f"gemm_{name}_f32"), geo.grid(M, N), geo.block, 0
        args = (M, N, K, alpha32, A, lda, ta, B, ldb, tb, beta32, O, ldc, *epi)
    elif name in SIMT:
        # bit 0: 16-byte loads of A and B; bit 1: 16-byte stores of C (kernels/gemm.cu)
        vec_ok = (int(lda % 4 == 0 and ldb % 4 == 0 and A.ptr % 16 == 0 and B.ptr % 16 == 0)
                  | 2 * int(ldc % 4 == 0 and O.ptr % 16 == 0))
        kname = simt_tile(M, N, s.device.multiprocessor_count, bool(ta or tb)) if name == "simt" else name
        if kname == "simt256":  # one kernel per stored layout
            kernel = _kernel(SIMT256.kernel(layout))
            grid, block, smem = SIMT256.grid(M, N), SIMT256.threads, SIMT256.smem_bytes(layout)
        else:
            kernel, grid, block, smem = _kernel(SIMT128.kernel), SIMT128.grid(M, N), SIMT128.threads, 0
        args = (M, N, K, alpha32, A, lda, B, ldb, beta32, O, ldc, vec_ok, *epi)
    else:
        geo = WMMA_TF32 if name == "tf32" else WMMA_B16
        grid, block, smem = geo.grid(M, N), geo.threads, 0
        a_rows, b_rows = (K if ta else M), (N if tb else K)  # rows as stored
        if _cp_ok(A, a_rows, lda) and _cp_ok(B, b_rows, ldb):  # cp.async-pipelined twin
            kernel, smem = _kernel(geo.cp_kernel(name, layout)), geo.cp_smem_bytes(layout)
            args = (M, N, K, alpha32, A, lda, B, ldb, beta32, O, ldc, *epi)
        else:
            kernel = _kernel(f"gemm_{name}")
            args = (M, N, K, alpha32, A, lda, ta, B, ldb, tb, beta32, O, ldc, *epi)
    rec = launch(kernel, grid, block, *args, stream=s, timed=timed, shared_mem_bytes=smem)  # checked
    if plannable:
        _remember(key, _simple_plan(kernel, grid, block, smem, args, A, B, O, s))
    return (O, rec) if timed else O


def _operand_layout(arr: Array, what: str, name: str) -> tuple[int, int]:
    """layout_of an input, with what the ``name`` kernel reads in the error."""
    rows, cols = arr.shape if arr.ndim == 2 else (0, 0)
    return layout_of(arr, what, _needs(name, rows, cols, arr.itemsize) if arr.ndim == 2 else None)


def _stored_as(ta, tb) -> str:
    return (f"a stored {'K x M' if ta else 'M x K'}, b stored {'N x K' if tb else 'K x N'}: "
            "a column-major view or a transpose flag")


def _epilogue(bias, activation, M: int, N: int, O: Array, s: Stream) -> tuple:
    """The kernels' last four parameters (kernels/epilogue.cuh) for ``bias`` broadcast to M x N
    and ``activation``: (bias array or 0, its element strides along M and N, activation code)."""
    act = np.int32(_ACT_CODE[activation])
    if bias is None:
        return (0, np.int64(0), np.int64(0), act)
    Bi = asarray(bias, stream=s, name="matmul: bias")
    if Bi.dtype != O.dtype:
        raise DTypeError(f"matmul: bias must be {O.dtype} (out's dtype), got {Bi.dtype}")
    if Bi.kind in ("device", "foreign") and Bi.device is not s.device:
        raise DeviceMismatchError(f"matmul: bias is on device {Bi.device.ordinal}, the stream on {s.device.ordinal}")
    shape, strides, it = tuple(Bi.shape), tuple(Bi.strides), Bi.itemsize
    if len(shape) == 1:
        shape, strides = (1, *shape), (0, *strides)
    if len(shape) != 2 or shape[0] not in (1, M) or shape[1] not in (1, N):
        raise ShapeError(f"matmul: bias of shape {tuple(Bi.shape)} does not broadcast to out's {M}x{N}: pass "
                         f"({N},) or (1, {N}) for one value per column, ({M}, 1) for one per row, or ({M}, {N})")
    if any(st % it for st in strides):
        raise ShapeError(f"matmul: bias strides {tuple(Bi.strides)} are not whole {it}-byte elements")
    sm, sn = (0 if shape[0] == 1 else strides[0] // it), (0 if shape[1] == 1 else strides[1] // it)
    # bias is read while out is written: as M x N views (stride 0 along broadcast dimensions)
    if Bi.nbytes and overlaps(O.ptr, O.shape, O.strides, Bi.ptr, (M, N), (sm * it, sn * it), it):
        raise ShapeError("matmul: bias overlaps out in memory; the kernels read bias while writing out, so it "
                         "must be separate memory")
    return (Bi, np.int64(sm), np.int64(sn), act)


_fast: dict = {}


def _remember(key, plan) -> None:
    if len(_fast) > 1024:
        _fast.clear()
    _fast[key] = plan


def _cp_ok(arr: Array, rows: int, ld: int) -> bool:
    """The cp.async WMMA kernels copy 16-byte chunks: a 16-byte-aligned start and pitch."""
    return arr.ptr % 16 == 0 and (rows == 1 or (ld * arr.itemsize) % 16 == 0)


def _simple_plan(kernel: Kernel, grid, block, smem: int, args: tuple, A: Array, B: Array, O: Array, s0: Stream):
    """A launcher for the next calls with arrays of the same signatures: a :class:`LaunchPlan` of
    this (checked) launch's packed argument list whose slots are the three pointers, alpha, beta
    and the epilogue's bias pointer, rebound per call (the bias's strides and the activation are
    packed: they follow from the key)."""
    packed = pack_args(kernel, args, s0)
    ia, ib, io = [i for i, v in enumerate(args) if v is A or v is B or v is O]  # in this order in every list
    ialpha, ibeta = [i for i, v in enumerate(args) if type(v) is np.float32]
    ibias = len(args) - 4  # the epilogue's bias pointer (kernels/epilogue.cuh): rebound when one is given
    plan = LaunchPlan(kernel, s0.device, grid, block, packed, slots=(ia, ib, io, ialpha, ibeta, ibias),
                      shared_mem_bytes=smem)

    def go(a: Array, b: Array, out: Array, alpha, beta, s: Stream, bias: Array | None = None) -> bool:
        for arr in (a, b, out) if bias is None else (a, b, out, bias):
            if arr.stream is not s:
                arr.record_stream(s)
        plan.launch(s, (a.ptr, b.ptr, out.ptr, np.float32(alpha), np.float32(beta), 0 if bias is None else bias.ptr))
        return True

    return go


def _clear_plans() -> None:
    """Forget every cached plan (kit kernels' and cuBLAS's, destroying the latter's descriptors and
    giving back its per-stream workspaces): the next call of each geometry takes the checked path
    again. For tests and for releasing cuBLAS resources."""
    _fast.clear()
    _cublaslt._clear_plans()


def _cublas(A: Array, B: Array, O: Array, alpha: float, beta: float, ta: int, tb: int, lda: int, ldb: int,
            ldc: int, M: int, N: int, K: int, allow_tf32: bool, s: Stream, timed: bool, fast_key,
            epi: tuple = _NO_EPILOGUE):
    """cuBLAS (cublasLt) on ``s``, in place into ``O``: one cublasLtMatmul through nvmath-python's
    bindings (ops/_cublaslt.py). Everything matmul checked holds (shapes, dtypes, layouts, A's and
    B's devices, no overlap); ``ta`` / ``tb`` say whether A / B are stored transposed (views and
    transpose flags combined), with their leading dimensions as stored. The plan of the geometry
    (descriptors, the heuristic's algorithm) is made once; with kit-owned contiguous operands
    (``fast_key``: matmul's cached-plan key) later calls go straight to it from matmul's fast path.
    Inside a graph capture the workspace is a buffer the graph holds. An epilogue (``epi``, the
    kernels' last four parameters) runs as epilogue_<type> over out after cuBLAS, on ``s``."""
    from ..event import begin_timing, end_timing

    if O.kind in ("device", "foreign") and O.ptr and O.device is not s.device:
        raise DeviceMismatchError(f"matmul: out is on device {O.device.ordinal}, the stream on {s.device.ordinal}")
    plan = _cublaslt.plan_for(s.device, A.dtype, M, N, K, ta, tb, lda, ldb, ldc, A.ptr, B.ptr, O.ptr, allow_tf32)
    for arr in (A, B, O):  # recorded as used on s (inside a capture: held by the graph)
        if arr.stream is not s:
            arr.record_stream(s)
    start = begin_timing(s, timed)
    while not plan.run(A.ptr, B.ptr, O.ptr, alpha, beta, s):  # evicted by another thread meanwhile
        plan = _cublaslt.plan_for(s.device, A.dtype, M, N, K, ta, tb, lda, ldb, ldc, A.ptr, B.ptr, O.ptr,
                                  allow_tf32)
    if epi is not _NO_EPILOGUE:
        kname = {_F32: "epilogue_f32", _F16: "epilogue_fp16"}.get(A.dtype, "epilogue_bf16")
        launch(_kernel(kname), EPILOGUE.blocks(M * N, s.device.multiprocessor_count), EPILOGUE.threads,
               M, N, O, ldc, *epi, stream=s)
    rec = end_timing("cublas", s, start)
    if fast_key is not None and A.sig[3] and A.sig[4] and B.sig[3] and B.sig[4] and O.sig[3] and O.sig[4]:
        _remember(fast_key, plan.fast)
    return (O, rec) if timed else O
