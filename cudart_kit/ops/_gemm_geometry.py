"""The matmul kernels' geometry on the Python side, defined once: the layout vocabulary, one
frozen dataclass per kernel family mirroring the ``// <geometry NAME>`` blocks of kernels/gemm.cu
and kernels/gemm_sm90.cu field by field, and the classification of a 2-D operand's (shape,
strides) into a stored layout and leading dimension.

Every field here is a constant of a C block (lower-cased name; tests/test_gemm_cpu.py parses the
blocks and fails when either side has a field, or a value, the other lacks). The kernels'
static_asserts tie those constants to the code that uses them; the methods below only derive
launch geometry from them. Pure Python: no driver, no kit import beyond errors.

Layouts (the same letters in kernel names, here and in docs/matmul.md): two letters, the stored
layouts of A then B in row-major terms. ``n``: stored as op() reads it (A stored M x K, B stored
K x N). ``t``: stored transposed (A stored K x M, B stored N x K; a column-major view such as
``x.T`` is one). "nn" is plain ``a @ b``; "nt" is ``a @ b_stored.T``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..errors import ShapeError

__all__ = ["LAYOUTS", "layout_name", "layout_flags", "Stored", "classify", "overlaps", "TABLE",
           "LIMITS", "NAIVE", "TILED", "SIMT128", "SIMT256", "WMMA_TF32", "WMMA_B16", "TRANSPOSE", "REPITCH", "EPILOGUE",
           "SM90"]

LAYOUTS = ("nn", "nt", "tn", "tt")


def layout_name(ta, tb) -> str:
    """The layout of A stored transposed (``ta``) and B stored transposed (``tb``): "nn" .. "tt"."""
    return ("t" if ta else "n") + ("t" if tb else "n")


def layout_flags(layout: str) -> tuple[bool, bool]:
    """(A stored transposed, B stored transposed) of a layout name; ValueError for anything else."""
    if layout not in LAYOUTS:
        raise ValueError(f"a matmul layout is one of {LAYOUTS}, got {layout!r}")
    return layout[0] == "t", layout[1] == "t"


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


# --- the table: one dataclass per kernel family, fields = the C block's constants -------------

@dataclass(frozen=True)
class Limits:
    """Shared-memory limits the portable kernels are built to fit (gemm.cu ``geo::limits``)."""

    portable_smem_optin: int   # opt-in dynamic bytes per block on sm_86 / sm_89 (99 KiB)
    static_smem: int           # static bytes per block on every GPU (48 KiB)


@dataclass(frozen=True)
class Naive:
    """gemm_naive_f32: one thread per output."""

    threads_x: int
    threads_y: int

    @property
    def block(self) -> tuple[int, int]:
        return (self.threads_x, self.threads_y)

    def grid(self, M: int, N: int) -> tuple[int, int]:
        return (_cdiv(N, self.threads_x), _cdiv(M, self.threads_y))


@dataclass(frozen=True)
class Tiled:
    """gemm_tiled_f32: tile x tile outputs per block through shared memory."""

    tile: int
    threads_x: int
    threads_y: int
    static_smem: int

    @property
    def block(self) -> tuple[int, int]:
        return (self.threads_x, self.threads_y)

    def grid(self, M: int, N: int) -> tuple[int, int]:
        return (_cdiv(N, self.tile), _cdiv(M, self.tile))


@dataclass(frozen=True)
class Simt128:
    """gemm_simt128_f32: FP32 SIMT, bm x bn x bk block tile, layout "nn" only."""

    bm: int
    bn: int
    bk: int
    stages: int
    threads: int
    thread_m: int
    thread_n: int
    min_blocks: int
    static_smem: int

    kernel = "gemm_simt128_f32"

    def grid(self, M: int, N: int) -> tuple[int, int]:
        return (_cdiv(N, self.bn), _cdiv(M, self.bm))


@dataclass(frozen=True)
class Simt256:
    """gemm_simt256_<layout>_f32: FP32 SIMT, bm x bn x bk block tile, a cp.async ring of
    ``stages``, one kernel per layout; dynamic shared memory ``smem_<layout>``."""

    bm: int
    bn: int
    bk: int
    stages: int
    threads: int
    warps_m: int
    warps_n: int
    thread_m: int
    thread_n: int
    a_pitch: int
    b_pitch_n: int
    b_pitch_t: int
    min_blocks: int
    smem_nn: int
    smem_nt: int
    smem_tn: int
    smem_tt: int

    def grid(self, M: int, N: int) -> tuple[int, int]:
        return (_cdiv(N, self.bn), _cdiv(M, self.bm))

    def tiles(self, M: int, N: int) -> int:
        return _cdiv(M, self.bm) * _cdiv(N, self.bn)

    def smem_bytes(self, layout: str) -> int:
        layout_flags(layout)
        return getattr(self, f"smem_{layout}")

    def kernel(self, layout: str) -> str:
        layout_flags(layout)
        return f"gemm_simt256_{layout}_f32"


@dataclass(frozen=True)
class Wmma:
    """gemm_<dtype> (single stage, static shared memory) and gemm_<dtype>_cp_<layout> (a cp.async
    ring of ``cp_stages``, dynamic shared memory ``cp_smem_<layout>``): WMMA, bm x bn x bk."""

    bm: int
    bn: int
    bk: int
    threads: int
    warps_m: int
    warps_n: int
    warp_m: int
    warp_n: int
    wk: int
    itemsize: int
    pad: int
    scratch: int
    static_smem: int
    cp_stages: int
    cp_smem_nn: int
    cp_smem_nt: int
    cp_smem_tn: int
    cp_smem_tt: int

    def grid(self, M: int, N: int) -> tuple[int, int]:
        return (_cdiv(N, self.bn), _cdiv(M, self.bm))

    def cp_smem_bytes(self, layout: str) -> int:
        layout_flags(layout)
        return getattr(self, f"cp_smem_{layout}")

    @staticmethod
    def cp_kernel(algo: str, layout: str) -> str:
        layout_flags(layout)
        return f"gemm_{algo}_cp_{layout}"


@dataclass(frozen=True)
class Transpose:
    """transpose_f32: tile x tile blocks of threads_x x threads_y threads."""

    tile: int
    threads_x: int
    threads_y: int
    static_smem: int

    @property
    def block(self) -> tuple[int, int]:
        return (self.threads_x, self.threads_y)

    def grid(self, rows: int, cols: int) -> tuple[int, int]:
        return (_cdiv(rows, self.tile), _cdiv(cols, self.tile))


@dataclass(frozen=True)
class Repitch:
    """1-D grid-stride kernels: repitch_b16 / repitch_b32 (copies), epilogue_<type> (matmul's
    bias and activation as a pass of its own)."""

    threads: int
    blocks_per_sm: int

    def blocks(self, n: int, sms: int) -> int:
        """Blocks over ``n`` elements on a GPU of ``sms`` multiprocessors: one per ``threads``
        elements, at most ``blocks_per_sm`` per SM; the grid-stride loop covers the rest."""
        return max(1, min(_cdiv(n, self.threads), self.blocks_per_sm * sms))


@dataclass(frozen=True)
class Sm90:
    """gemm_sm90_<kind>_<bn>_<layout>: wgmma + TMA, a bm x bn tile per CTA (bn one of bn_narrow,
    bn_wide), a ring of ``stages``, dynamic shared memory ``smem_bn<bn>``; gemm_sm90_<kind>_<bn_wide>p_<layout>:
    the persistent twins (each CTA walks tiles blockIdx.x, + gridDim.x, ...), ``smem_bn256p``: the
    ring and the epilogue's ``staging_bytes`` buffer."""

    bm: int
    bn_narrow: int
    bn_wide: int
    stages: int
    threads: int
    consumers: int
    group_m: int
    producer_regs: int
    consumer_regs: int
    row_bytes: int
    bk_b16: int
    bk_tf32: int
    mn_box: int
    align_slack: int
    bias_floats: int
    smem_bn128: int
    smem_bn256: int
    staging_bytes: int
    smem_bn256p: int
    smem_optin: int

    def bk(self, itemsize: int) -> int:
        return self.bk_tf32 if itemsize == 4 else self.bk_b16

    def smem_bytes(self, bn: int, persistent: bool = False) -> int:
        if bn not in (self.bn_narrow, self.bn_wide):
            raise ValueError(f"the sm90 kernels have tiles {self.bn_narrow} and {self.bn_wide} wide, not {bn}")
        if persistent:
            self._persistent_width(bn)
            return self.smem_bn256p
        return getattr(self, f"smem_bn{bn}")

    def _persistent_width(self, bn: int) -> None:
        if bn != self.bn_wide:
            raise ValueError(f"the persistent sm90 kernels have {self.bn_wide}-wide tiles, not {bn}")

    def tiles(self, M: int, N: int, bn: int) -> int:
        return _cdiv(M, self.bm) * _cdiv(N, bn)

    def kernel(self, kind: str, bn: int, layout: str, persistent: bool = False) -> str:
        """The entry point's name; ``persistent``: the persistent twin (``<bn>p``), which exists
        for the wide tiles only and runs on any grid of 1 .. tiles CTAs (:meth:`grid`)."""
        layout_flags(layout)
        if kind == "tf32" and layout != "nt":
            raise ValueError("the TF32 sm90 kernel reads K-major operands only: layout 'nt'")
        if persistent:
            self._persistent_width(bn)
        return f"gemm_sm90_{kind}_{bn}{'p' if persistent else ''}_{layout}"

    def grid(self, M: int, N: int, bn: int, persistent: bool, sms: int) -> int:
        """CTAs of a launch: one per tile, or for the persistent kernels one per multiprocessor
        (one CTA fits an SM: the shared memory), never more than there are tiles."""
        tiles = self.tiles(M, N, bn)
        return min(tiles, sms) if persistent else tiles


LIMITS = Limits(portable_smem_optin=99 * 1024, static_smem=48 * 1024)
NAIVE = Naive(threads_x=16, threads_y=16)
TILED = Tiled(tile=16, threads_x=16, threads_y=16, static_smem=2176)
SIMT128 = Simt128(bm=128, bn=128, bk=16, stages=2, threads=256, thread_m=8, thread_n=8, min_blocks=2,
                  static_smem=32768)
SIMT256 = Simt256(bm=128, bn=256, bk=16, stages=3, threads=256, warps_m=2, warps_n=4, thread_m=16, thread_n=8,
                  a_pitch=132, b_pitch_n=256, b_pitch_t=260, min_blocks=1,
                  smem_nn=74496, smem_nt=75264, smem_tn=74496, smem_tt=75264)
WMMA_TF32 = Wmma(bm=128, bn=128, bk=32, threads=256, warps_m=2, warps_n=4, warp_m=64, warp_n=32, wk=8, itemsize=4,
                 pad=4, scratch=8192, static_smem=43520, cp_stages=2,
                 cp_smem_nn=78848, cp_smem_nt=81920, cp_smem_tn=75776, cp_smem_tt=78848)
WMMA_B16 = Wmma(bm=128, bn=128, bk=32, threads=256, warps_m=2, warps_n=4, warp_m=64, warp_n=32, wk=16, itemsize=2,
                pad=8, scratch=8192, static_smem=27136, cp_stages=3,
                cp_smem_nn=65024, cp_smem_nt=69632, cp_smem_tn=60416, cp_smem_tt=65024)
TRANSPOSE = Transpose(tile=32, threads_x=32, threads_y=8, static_smem=4224)
REPITCH = Repitch(threads=256, blocks_per_sm=32)
EPILOGUE = Repitch(threads=256, blocks_per_sm=32)
SM90 = Sm90(bm=128, bn_narrow=128, bn_wide=256, stages=4, threads=384, consumers=2, group_m=16, producer_regs=40,
            consumer_regs=232, row_bytes=128, bk_b16=64, bk_tf32=32, mn_box=64, align_slack=1024,
            bias_floats=256, smem_bn128=133184, smem_bn256=198720, staging_bytes=32768, smem_bn256p=231488,
            smem_optin=227 * 1024)

# source file -> geometry block name -> its mirror
TABLE = {
    "gemm.cu": {"limits": LIMITS, "naive": NAIVE, "tiled": TILED, "simt128": SIMT128, "simt256": SIMT256,
                "wmma_tf32": WMMA_TF32, "wmma_b16": WMMA_B16, "transpose": TRANSPOSE, "repitch": REPITCH, "epilogue": EPILOGUE},
    "gemm_sm90.cu": {"sm90": SM90},
}


# --- operands: (shape, strides) -> stored layout and leading dimension ------------------------

class Stored(NamedTuple):
    """How a 2-D operand lies in memory, in the kernels' terms."""

    transposed: bool  # stored as the transpose of its shape (a column-major view): layout letter "t"
    ld: int           # elements between consecutive stored rows, >= the stored row length


def _requirement(rows: int, cols: int, it: int) -> str:
    return (f"a row-major operand (strides (ld*{it}, {it}) with ld >= {cols}) or a column-major one "
            f"(strides ({it}, ld*{it}) with ld >= {rows})")


def classify(shape, strides, itemsize: int, ptr: int = 0, *, what: str = "matmul: operand",
             needs: str | None = None) -> Stored:
    """The stored layout of a 2-D operand with byte ``strides`` starting at address ``ptr``.

    Row-major (unit stride along columns, rows ``ld >= cols`` elements apart: a whole matrix, a
    row block or a column block of a larger one) gives ``Stored(False, ld)``; column-major (unit
    stride along rows: a transpose ``x.T`` of one of those) gives ``Stored(True, ld)`` with ld
    the distance between columns. The stride of a dimension of extent 1 is never used, so any
    value is accepted there (a single row's ld is its length). Anything else (a stepped or
    reversed view, broadcast or overlapping rows, strides or an address that are not whole
    elements) raises ShapeError naming ``what``, the layout found and what is needed (``needs``,
    default: a row- or column-major operand)."""
    if len(shape) != 2:
        raise ShapeError(f"{what} must be 2-D, got shape {tuple(shape)}")
    rows, cols = (int(x) for x in shape)
    s0, s1 = (int(x) for x in strides)
    it = int(itemsize)
    if rows == 0 or cols == 0:  # nothing is read; the caller refuses empty problems by their sizes
        return Stored(False, max(cols, 1))
    if ptr % it:
        raise ShapeError(f"{what} has shape ({rows}, {cols}) and strides ({s0}, {s1}) bytes ({it}-byte elements) "
                         f"but starts at byte address {ptr:#x}, not a multiple of its {it}-byte elements: the kernels "
                         "read whole, aligned elements; copy it into an aligned array first")

    def pitch(s: int, extent: int) -> int | None:  # elements between rows/columns, if usable
        return s // it if s > 0 and s % it == 0 and s // it >= extent else None

    if (cols == 1 or s1 == it) and (rows == 1 or pitch(s0, cols) is not None):
        return Stored(False, cols if rows == 1 else s0 // it)
    if (rows == 1 or s0 == it) and (cols == 1 or pitch(s1, rows) is not None):
        return Stored(True, rows if cols == 1 else s1 // it)
    if s0 < 0 or s1 < 0:
        why = "a negative stride (a reversed view)"
    elif it not in (s0, s1):
        why = "no dimension has unit stride (a stepped view or a larger dtype's view?)"
    elif s0 % it or s1 % it:
        why = "a stride that is not a whole number of elements"
    else:
        why = "its rows or columns overlap (a broadcast view or a leading dimension below the extent)"
    raise ShapeError(f"{what} has shape ({rows}, {cols}) and strides ({s0}, {s1}) bytes ({it}-byte elements): "
                     f"{why}; {needs or 'the kernels read ' + _requirement(rows, cols, it)}; "
                     "copy it into a contiguous array first")


def _extent(ptr: int, shape, strides, itemsize: int) -> tuple[int, int]:
    lo = ptr + sum(min(0, (d - 1) * s) for d, s in zip(shape, strides))
    hi = ptr + sum(max(0, (d - 1) * s) for d, s in zip(shape, strides)) + itemsize
    return lo, hi


def overlaps(p1: int, shape1, strides1, p2: int, shape2, strides2, itemsize: int) -> bool:
    """Whether two 2-D views of ``itemsize``-byte elements may share a byte. Exact for two views
    with the same row-major (or the same column-major) strides, as sibling blocks of one matrix
    have; otherwise whether their address ranges intersect (conservative)."""
    if 0 in tuple(shape1) or 0 in tuple(shape2):
        return False
    lo1, hi1 = _extent(p1, shape1, strides1, itemsize)
    lo2, hi2 = _extent(p2, shape2, strides2, itemsize)
    if hi1 <= lo2 or hi2 <= lo1:
        return False
    (r1, c1), (r2, c2) = shape1, shape2
    s, t = tuple(strides1), tuple(strides2)
    if s != t:
        return True
    if s[0] == itemsize and s[1] != itemsize:  # both column-major: the same question transposed
        r1, c1, r2, c2, s = c1, r1, c2, r2, (s[1], s[0])
    if s[1] != itemsize or s[0] <= 0 or s[0] % itemsize or (p2 - p1) % itemsize:
        return True
    ld, d = s[0] // itemsize, (p2 - p1) // itemsize
    if ld < c1 or ld < c2:
        return True
    # element (i, j) of view 1 at i*ld + j, (i', j') of view 2 at d + i'*ld + j': equal when
    # q = i - i' has d - q*ld = j - j' in [-(c2 - 1), c1 - 1]
    q_lo = max(-(r2 - 1), _cdiv(d - (c1 - 1), ld))
    q_hi = min(r1 - 1, (d + c2 - 1) // ld)
    return q_lo <= q_hi
