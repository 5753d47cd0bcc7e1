"""Host side of kernels/gemm_sm90.cu: who may run it, its TMA tensor maps, the launch.

The kernels are sm_90a machine code (wgmma, setmaxnreg): they run on compute capability 9.0
only (:func:`unsupported` says why not elsewhere). Each operand reaches shared memory through a
TMA tensor map (128-byte swizzle) over the matrix as stored, built from the operand's own
strides (a row block, column block or transpose of a larger matrix needs no copy). TMA needs a
16-byte-aligned start and rows a multiple of 16 bytes apart: an operand that misses either is
first re-pitched into a workspace. 16-bit operands may be stored either way (every layout nn..tt
has a kernel: wgmma transposes them); TF32 operands must be K-major (layout "nt": A stored M x
K, B stored N x K), so a B stored K x N (or an A stored K x M) is transposed into a workspace.
Tiles, threads and shared memory come from :data:`_gemm_geometry.SM90`. All of it runs on the
caller's stream; inside a graph capture the workspaces belong to the graph (:func:`workspace`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._launch import LaunchPlan
from ..errors import CudaKitError, translate
from ..event import begin_timing, end_timing
from ..launcher import _pointer_of, launch
from ..memory import Array, bfloat16, empty
from ..module import kit_kernel
from ..stream import Stream
from ._gemm_geometry import REPITCH, SM90, TRANSPOSE, layout_name

KINDS = {"bf16_sm90": "bf16", "fp16_sm90": "f16", "tf32_sm90": "tf32"}
_TYPESTR = {"bf16": "<u2", "f16": "<f2", "tf32": "<f4"}  # bf16 is named by the options' data_type
_DATA_TYPE = {"bf16": bfloat16, "f16": np.dtype(np.float16), "tf32": np.dtype(np.float32)}
_ITEMSIZE = {"bf16": 2, "f16": 2, "tf32": 4}


def _tma_ld(ld: int, rows: int, itemsize: int) -> int:
    """Row pitch for the tensor map. A single row's pitch is never used: round it up to 16 bytes."""
    if rows == 1:
        per = 16 // itemsize
        return max(per, -(-ld // per) * per)
    return ld


def unsupported(dev):
    """Why ``dev`` cannot run the Hopper kernels, or None."""
    cc = dev.compute_capability
    if cc != (9, 0):
        return (f"the *_sm90 matmul kernels are sm_90a code (wgmma) and run on compute capability 9.0 "
                f"(H100 / H200) only; device {dev.ordinal} ({dev.name}) is {cc[0]}.{cc[1]}")
    return None


FORCE_BN = None  # tests set 128 or 256 to run one tile shape whatever the problem size
# tests and benchmarks set True / False to run (or not) the persistent wide kernels; an int n >= 1
# runs them on at most n CTAs (many tiles per CTA at small sizes, for tests and the sanitizer)
FORCE_PERSIST = None
FORCE_THREAD_STORE = False  # benchmarks set True: the persistent twins' threads store even where TMA could


def pick_bn(M: int, N: int, sms: int) -> int:
    """The wide tiles (128 x 256) unless the narrow ones (128 x 128) fill the ``sms``
    multiprocessors' waves clearly better (small problems). Cost model: waves x tile width, the
    narrower tile charged 10 % more per FLOP (it reloads A twice as often); on the H100 (132
    SMs) this picks 256 from 2048^2 up and 128 at 1024^2."""
    if FORCE_BN is not None:
        return FORCE_BN
    wide, narrow = SM90.bn_wide, SM90.bn_narrow

    def cost(bn, per_flop):
        return -(-SM90.tiles(M, N, bn) // sms) * bn * per_flop
    return wide if cost(wide, 1.0) <= cost(narrow, 1.1) else narrow


def pick_tile(M: int, N: int, K: int, sms: int) -> tuple[int, bool]:
    """(tile width, persistent): :func:`pick_bn`, and for the wide tiles the persistent kernel
    when there are more tiles than multiprocessors (else every CTA has one tile either way)."""
    bn = pick_bn(M, N, sms)
    if bn != SM90.bn_wide:
        return bn, False
    if FORCE_PERSIST is not None:
        return bn, bool(FORCE_PERSIST)
    return bn, SM90.tiles(M, N, bn) > sms and persistent_wins(M, N, K)


def persistent_wins(M: int, N: int, K: int) -> bool:
    """Where the persistent wide kernel runs faster than the one-tile-per-CTA one (measured:
    docs/matmul.md, tools/matmul_notes.md v16)."""
    return False


# --- TMA descriptors ----------------------------------------------------------------------------

_options: dict = {}


def tma_options(kind: str, box: tuple):
    """The cuda.core ``TensorMapDescriptorOptions`` of the kernels' tensor maps: ``box``, the
    operand's data type, 128-byte swizzle, 256-byte L2 promotion.

    Only public cuda.core names are used. ``TensorMapDescriptorOptions`` is exported by
    cuda.core 1.2.0 and 1.2.2; its swizzle / L2 fields accept nothing but their enum types, which
    have no public name there (they live in the private ``cuda.core._tensor_map``), so they are
    taken as the types of the dataclass's own defaults (``TensorMapSwizzle.NONE``...), or from
    the top-level name should a later release export it. The data type is a numpy dtype, as its
    documentation prefers. Anything missing raises CudaKitError, only when an sm90 kernel runs."""
    key = (kind, box)
    opt = _options.get(key)
    if opt is not None:
        return opt
    data_type = _DATA_TYPE[kind]
    if data_type is None:
        raise CudaKitError("bf16_sm90 names its tensor maps' data type with ml_dtypes' bfloat16: "
                           "pip install 'cudart-kit[bf16]'")
    try:
        import cuda.core as core

        options_t = core.TensorMapDescriptorOptions
        defaults = {f.name: f.default for f in dataclasses.fields(options_t)}
        swizzle_t = getattr(core, "TensorMapSwizzle", None) or type(defaults["swizzle"])
        l2_t = getattr(core, "TensorMapL2Promotion", None) or type(defaults["l2_promotion"])
        opt = options_t(box_dim=tuple(box), data_type=data_type, swizzle=swizzle_t.SWIZZLE_128B,
                        l2_promotion=l2_t.L2_256B)
    except Exception as exc:
        try:
            from cuda.core import __version__ as have
        except Exception:  # noqa: BLE001 - only for the message
            have = "unknown"
        raise CudaKitError(
            "the *_sm90 matmul kernels build their TMA descriptors with cuda.core's public "
            "TensorMapDescriptorOptions (128-byte swizzle, 256-byte L2 promotion) and "
            f"StridedMemoryView.as_tensor_map, as in cuda-core 1.2; cuda-core {have} does not provide "
            f"them ({type(exc).__name__}: {exc}). Use another algo, or a cuda-core release with that API"
        ) from exc
    _options[key] = opt
    return opt


_tmaps: dict = {}


class _Stored:
    """The CUDA Array Interface of an operand as stored (rows x cols, byte strides (pitch,
    itemsize)), the form cuda.core's tensor-map builder reads: the operand's own strides, read
    through :func:`_gemm_geometry.classify` (a transposed view is its untransposed storage). Its
    own class only because a kit Array of bfloat16 exports no CAI (the tensor map names the type
    through its options). No stream: ordering is the caller's (everything runs on one stream)."""

    __slots__ = ("__cuda_array_interface__",)

    def __init__(self, ptr: int, shape: tuple, strides: tuple, typestr: str):
        self.__cuda_array_interface__ = {"shape": shape, "strides": strides, "typestr": typestr,
                                         "data": (ptr, False), "version": 3, "stream": None}


def tensor_map(dev, kind: str, ptr: int, shape: tuple, ld: int, box: tuple):
    """A cached TMA descriptor (SW128) for a matrix stored row-major (rows x cols, rows ``ld``
    elements apart) at ptr. The descriptor encodes only the address and geometry, so equal keys
    are interchangeable."""
    key = (dev.ordinal, kind, ptr, shape, ld, box)
    tm = _tmaps.get(key)
    if tm is not None:
        return tm
    options = tma_options(kind, box)
    itemsize = _ITEMSIZE[kind]
    try:
        from cuda.core.utils import StridedMemoryView

        with dev.activate():
            stored = _Stored(ptr, shape, (ld * itemsize, itemsize), _TYPESTR[kind])
            view = StridedMemoryView.from_cuda_array_interface(stored, stream_ptr=-1)
            tm = view.as_tensor_map(options=options)
    except Exception as exc:
        raise CudaKitError(f"building the TMA tensor map for a {shape[0]}x{shape[1]} {kind} matrix "
                           f"(pitch {ld}, box {box}) failed: {type(exc).__name__}: {exc}") from exc
    if len(_tmaps) >= 1024:
        _tmaps.clear()
    _tmaps[key] = tm
    return tm


# --- workspaces -------------------------------------------------------------------------------

_side: dict = {}


def side_stream(dev) -> Stream:
    """A stream per device for the little work a matmul inside a graph capture does outside the
    graph (allocating a workspace the graph will own, planning cuBLAS). Never captured. A cache
    like the kit's loaded modules: it lives as long as the process, so it is a borrowed kit
    Stream over a cuda.core stream held here, not an owned one the leak census would count."""
    s = _side.get(dev.ordinal)
    if s is None:
        from cuda.core import StreamOptions

        with dev.activate():
            try:
                core = dev.core.create_stream(options=StreamOptions(nonblocking=True))
            except Exception as exc:
                raise translate(exc, "cuStreamCreate", "creating the matmul side stream") from exc
        s = _side[dev.ordinal] = Stream._wrap(core, dev, owned=False, owner=core)
    return s


def workspace(n: int, dtype, s: Stream) -> Array:
    """A scratch array of ``n`` elements for work queued on ``s``; give it back with
    :func:`release` once that work is queued.

    Outside a capture: a pool allocation on ``s``, freed in ``s``'s order. Inside a capture: a
    pool allocation made on :func:`side_stream` and waited for (a host wait at capture time,
    never at replay), then handed to the graph, which keeps it for its lifetime and frees it
    after its last replay. Not a graph allocation node: the TMA descriptors encode the
    workspace's address at capture time, and cuda.core's descriptor builder asks the driver
    about that address (cuPointerGetAttribute), which for graph memory, mapped only while the
    graph runs, it need not answer. Replays of one graph never overlap (CUDA orders them), so
    one buffer serves them all."""
    if not s.is_capturing:
        return empty((n,), dtype, stream=s)
    side = side_stream(s.device)
    w = empty((n,), dtype, stream=side)
    side.sync()  # the pool may hand out memory whose previous user's work is still queued
    w.record_stream(s)  # on a capturing stream: the graph holds w from here on
    return w


def release(w: Array, s: Stream) -> None:
    """Give back a :func:`workspace` once the work reading it is queued on ``s``: freed in
    ``s``'s order; inside a capture the graph owns it, so nothing happens here."""
    if not s.is_capturing:
        w.close()


def _transposed(src, rows: int, cols: int, ld: int, s) -> tuple[Array, int]:
    """float32 (rows x cols, pitch ld) at src -> a new (cols x rows) workspace on s, 16-byte rows."""
    ldo = -(-rows // 4) * 4
    grid = TRANSPOSE.grid(rows, cols)
    if grid[1] > 65535:
        raise CudaKitError(f"tf32_sm90: a {rows}x{cols} operand is too wide to transpose (more than "
                           f"{65535 * TRANSPOSE.tile} columns)")
    out = workspace(cols * ldo, np.float32, s)
    try:
        launch(kit_kernel("gemm", "transpose_f32"), grid, TRANSPOSE.block, src, rows, cols, ld, out, ldo, stream=s)
    except BaseException:
        release(out, s)
        raise
    return out, ldo


def _repitched(src, rows: int, cols: int, ld: int, itemsize: int, s) -> tuple[Array, int]:
    """(rows x cols, pitch ld) at src -> a new workspace on s whose rows are 16-byte aligned."""
    per = 16 // itemsize
    ldo = -(-cols // per) * per
    out = workspace(rows * ldo, np.uint16 if itemsize == 2 else np.uint32, s)
    blocks = REPITCH.blocks(rows * cols, s.device.multiprocessor_count)
    try:
        launch(kit_kernel("gemm", f"repitch_b{8 * itemsize}"), blocks, REPITCH.threads, src, rows, cols, ld, out, ldo,
               stream=s)
    except BaseException:
        release(out, s)
        raise
    return out, ldo


def _operand(kind: str, src, rows: int, cols: int, ld: int, k_major: bool, s, keep: list):
    """(pointer, pitch, k_major) of an operand the kernel can read, from (rows x cols, pitch ld)
    as stored. TF32 must be K-major: transpose. TMA needs 16-byte-aligned starts and pitches:
    re-pitch into a workspace when not (a copy of O(rows * cols), small next to the product).
    Workspaces go to ``keep``; the caller releases them once the kernel is queued."""
    it = _ITEMSIZE[kind]
    if kind == "tf32" and not k_major:
        out, ldo = _transposed(src, rows, cols, ld, s)
        keep.append(out)
        return out.ptr, ldo, True
    if src.ptr % 16 == 0 and (rows == 1 or (ld * it) % 16 == 0):
        return src.ptr, ld, k_major
    out, ldo = _repitched(src, rows, cols, ld, it, s)
    keep.append(out)
    return out.ptr, ldo, k_major


# gemm_sm90_*(CUtensorMap tmA, CUtensorMap tmB, int M, int N, int K, float alpha, float beta, T* C,
# int ldc, const T* bias, long long bias_sm, long long bias_sn, int act): the tensor maps (passed
# by value: cuda.core packs the descriptor objects), alpha, beta, C and the epilogue
# (kernels/epilogue.cuh) are a plan's slots, bound per launch; M, N, K and ldc are packed once.
_SLOTS = (0, 1, 5, 6, 7, 9, 10, 11, 12)
# the persistent twins: (tmA, tmB, CUtensorMap tmC, M, N, K, alpha, beta, C, ldc, int tma_store,
# bias, bias_sm, bias_sn, act); tmC (out's map) and tma_store are slots too (:func:`_bind`)
_SLOTS_P = (0, 1, 2, 6, 7, 8, 10, 11, 12, 13, 14)
NO_EPILOGUE = (0, np.int64(0), np.int64(0), np.int32(0))
_TMA_STORE, _THREAD_STORE = np.int32(1), np.int32(0)


def _setup(kind: str, layout: str, M: int, N: int, K: int, lda: int, ldb: int, ldc: int, dev, epi: bool = False):
    """The kernel's :class:`LaunchPlan` (slots tmA, tmB, alpha, beta, C and the epilogue: see
    ``_SLOTS``; a persistent twin's also tmC and tma_store: ``_SLOTS_P``, filled by :func:`_bind`), tile
    (width, persistent: :func:`pick_tile`) and the two tensor-map geometries (stored shape, pitch, box) for operands stored in
    ``layout``: A M x K ("n") or K x M ("t"), pitch lda; B K x N ("n") or N x K ("t"), pitch ldb;
    out's row pitch ldc. A K-major operand (A "n", B "t") is read in boxes of one 128-byte row of
    K; an MN-major one in boxes of SM90.mn_box elements of M or N."""
    ta, tb = layout[0] == "t", layout[1] == "t"
    it = _ITEMSIZE[kind]
    sms = dev.multiprocessor_count
    bn, persist = pick_tile(M, N, K, sms)
    bk, box = SM90.bk(it), SM90.mn_box
    kern = kit_kernel("gemm_sm90", SM90.kernel(kind, bn, layout, persist) + ("_epi" if epi else ""))
    mnk = (np.int32(M), np.int32(N), np.int32(K), np.float32(1), np.float32(0), 0, np.int32(ldc))
    if persist:
        args, slots = (None, None, None, *mnk, _THREAD_STORE, *NO_EPILOGUE), _SLOTS_P
    else:
        args, slots = (None, None, *mnk, *NO_EPILOGUE), _SLOTS
    ctas = FORCE_PERSIST if type(FORCE_PERSIST) is int and persist else sms
    plan = LaunchPlan(kern, dev, SM90.grid(M, N, bn, persist, ctas), SM90.threads, args, slots=slots,
                      shared_mem_bytes=SM90.smem_bytes(bn, persist))
    a_shape, b_shape = ((K, M) if ta else (M, K)), ((N, K) if tb else (K, N))
    geo_a = (a_shape, _tma_ld(lda, a_shape[0], it), (bk, box) if ta else (SM90.bm, bk))
    geo_b = (b_shape, _tma_ld(ldb, b_shape[0], it), (bn, bk) if tb else (bk, box))
    # out's tensor map for the persistent twins' TMA stores: boxes of 128 rows x 128 bytes
    geo_c = ((M, N), _tma_ld(ldc, M, it), (SM90.bm, 128 // it)) if persist else None
    return plan, (bn, persist), geo_a, geo_b, geo_c


def _bind(dev, kind: str, geo_c, tma, tmb, o_ptr: int, alpha32, beta32, bias: int, tail: tuple) -> tuple:
    """A plan's slot values: the tensor maps, alpha, beta, out and the epilogue; for a persistent
    twin (``geo_c`` not None) also out's tensor map and whether the kernel stores through it —
    when out starts 16-byte aligned with 16-byte row pitches (TMA's rule), else the threads store
    and any valid map fills the slot (A's: never read)."""
    if geo_c is None:
        return (tma, tmb, alpha32, beta32, o_ptr, bias, *tail)
    (M, _), ld, _ = geo_c
    if o_ptr % 16 == 0 and (M == 1 or (ld * _ITEMSIZE[kind]) % 16 == 0) and not FORCE_THREAD_STORE:
        tmc = _tmaps.get((dev.ordinal, kind, o_ptr, *geo_c)) or tensor_map(dev, kind, o_ptr, *geo_c)
        return (tma, tmb, tmc, alpha32, beta32, o_ptr, _TMA_STORE, bias, *tail)
    return (tma, tmb, tma, alpha32, beta32, o_ptr, _THREAD_STORE, bias, *tail)


def run(kind: str, A: Array, B: Array, O: Array, ta: int, tb: int, lda: int, ldb: int, ldc: int,
        M: int, N: int, K: int, alpha32, beta32, s, timed: bool, epi: tuple = NO_EPILOGUE):
    """gemm_sm90_<kind>_<BN>_<layout> on s, after any transpose / re-pitch of the operands.
    ``ta``/``tb``: A stored K x M / B stored N x K (the layout letters "t"), pitches lda / ldb
    as classified from the operands' strides; ``ldc``: out's row pitch; ``epi``: the kernel's
    last four parameters (bias array or 0, its strides along M and N, activation code)."""
    dev = s.device
    start = begin_timing(s, timed)
    o_ptr = _pointer_of(O, s, "matmul: out")
    _pointer_of(A, s, "matmul: a"), _pointer_of(B, s, "matmul: b")  # device checks; recorded as used on s
    keep: list = []
    try:
        a_ptr, lda, a_k = _operand(kind, A, K if ta else M, M if ta else K, lda, not ta, s, keep)
        b_ptr, ldb, b_k = _operand(kind, B, N if tb else K, K if tb else N, ldb, bool(tb), s, keep)
        plan, (bn, persist), geo_a, geo_b, geo_c = _setup(kind, layout_name(not a_k, b_k), M, N, K, lda, ldb, ldc,
                                                          dev, epi is not NO_EPILOGUE)
        tmA, tmB = tensor_map(dev, kind, a_ptr, *geo_a), tensor_map(dev, kind, b_ptr, *geo_b)
        bias = epi[0] if type(epi[0]) is int else _pointer_of(epi[0], s, "matmul: bias")
        plan.launch(s, _bind(dev, kind, geo_c, tmA, tmB, o_ptr, alpha32, beta32, bias, epi[1:]))
    finally:
        for w in keep:  # queued before the kernel on s: freed in s's order after it
            release(w, s)
    return end_timing(plan.kernel.name, s, start, {"bn": bn, "persistent": persist}) if timed else None


def fast_plan(kind: str, M: int, N: int, K: int, ta: bool, tb: bool, dev, epi: tuple | None = None):
    """A launcher for kit-owned contiguous operands stored in layout (``ta``, ``tb``) (A stored
    K x M if ``ta`` else M x K, B stored N x K if ``tb`` else K x N, out M x N) whose rows are
    TMA-aligned, or None. As in :func:`run`, a TF32 B stored K x N is transposed into a
    :func:`workspace` on the stream first (a TF32 A stored K x M gets no plan), so the plan works
    inside a graph capture too. It looks the tensor maps up by pointer and launches; it declines
    (returns False) when FORCE_BN or FORCE_PERSIST has changed since it was made. ``epi``: the epilogue's last three
    parameters come from it (bias strides, activation; the plan runs the ``_epi`` twin) and the
    bias pointer from each call's ``bias``."""
    it = _ITEMSIZE[kind]
    transpose_b = kind == "tf32" and not tb
    a_rows, a_pitch = (K, M) if ta else (M, K)
    b_rows, b_pitch = (N, K) if tb else (K, N)
    if (kind == "tf32" and ta) or (a_rows > 1 and (a_pitch * it) % 16) or \
            (not transpose_b and b_rows > 1 and (b_pitch * it) % 16):
        return None
    ldt = -(-K // 4) * 4  # TF32: B^T (N x K) rows padded to 16 bytes, made by transpose_f32
    plan, _, geo_a, geo_b, geo_c = _setup(kind, layout_name(ta, tb or transpose_b), M, N, K, a_pitch,
                                           ldt if transpose_b else b_pitch, N, dev, epi is not None)
    tail = NO_EPILOGUE[1:] if epi is None else tuple(epi[1:])
    if transpose_b:
        t_grid = TRANSPOSE.grid(K, N)
        if t_grid[1] > 65535:
            return None
        # transpose_f32(in, rows, cols, ldi, out, ldo), as in _transposed: in and out are the slots
        t_plan = LaunchPlan(kit_kernel("gemm", "transpose_f32"), dev, t_grid, TRANSPOSE.block,
                            (0, np.int32(K), np.int32(N), np.int32(N), 0, np.int32(ldt)), slots=(0, 4))
    # the test switches as the plan was made, compared by identity on each call (two global reads;
    # True and 1 differ: 1 is a CTA count; an equal int that is another object only re-plans)
    ordinal, forced_bn, forced_p = dev.ordinal, FORCE_BN, FORCE_PERSIST

    def go(a: Array, b: Array, out: Array, alpha, beta, s, bias: Array | None = None) -> bool:
        if FORCE_BN is not forced_bn or FORCE_PERSIST is not forced_p:
            return False
        if bias is not None and bias.stream is not s:
            bias.record_stream(s)
        bptr = 0 if bias is None else bias.ptr
        for arr in (a, b, out):
            if arr.stream is not s:
                arr.record_stream(s)
        if not transpose_b:
            tma = _tmaps.get((ordinal, kind, a.ptr, *geo_a)) or tensor_map(dev, kind, a.ptr, *geo_a)
            tmb = _tmaps.get((ordinal, kind, b.ptr, *geo_b)) or tensor_map(dev, kind, b.ptr, *geo_b)
            plan.launch(s, _bind(dev, kind, geo_c, tma, tmb, out.ptr, np.float32(alpha), np.float32(beta), bptr, tail))
            return True
        bt = workspace(N * ldt, np.float32, s)
        try:
            t_plan.launch(s, (b.ptr, bt.ptr))
            tma = _tmaps.get((ordinal, kind, a.ptr, *geo_a)) or tensor_map(dev, kind, a.ptr, *geo_a)
            tmb = _tmaps.get((ordinal, kind, bt.ptr, *geo_b)) or tensor_map(dev, kind, bt.ptr, *geo_b)
            plan.launch(s, _bind(dev, kind, geo_c, tma, tmb, out.ptr, np.float32(alpha), np.float32(beta), bptr, tail))
        finally:
            release(bt, s)  # queued before the kernel: freed in s's order after it (the graph's, inside one)
        return True

    return go
