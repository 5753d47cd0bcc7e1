"""Launches of the strided kernels (kernels/strided.cu) over operands of any layout: the layouts
are collapsed together (fewest dimensions, output's memory order), split into launches of at
most 4 dimensions, and tiled so that an operand transposed relative to the output still reads
whole cache lines. Used by copies and fills of views here and by the vector ops on views.
"""

from __future__ import annotations

import itertools

import numpy as np

from . import layout as L
from .._launch import blocks_for, check_geometry, config, do_launch, fast_launch
from ..errors import ShapeError
from ..event import begin_timing, end_timing
from ..module import kit_kernel
from ..stream import Stream

__all__ = ["launch_strided", "element_aligned", "ROWS_PER_THREAD", "THREADS"]

ROWS_PER_THREAD = 8  # mirrors kRows in kernels/strided.cu
def tile_shape(itemsize: int) -> tuple[int, int, int]:
    """The transposed twins' tile (TD2 along d2, TD3 along d3, in elements) and block rows BY
    (a block is 32 x BY threads): mirrors Shape<T> in kernels/strided.cu."""
    return 32, 32, 4


# The vectorized transposed twins (<op>_f32_tv, copy_b32_tv; 4-byte types): their tile and block
# rows (mirror VShape) and staging mode per op family (mirror kVModeOp / kVModeCopy)
VTILE = (64, 64, 8)
VMODES = {"op": 1, "copy": 2}


def vshared_bytes(mode: int, tile: int, nin: int, nstaged: int) -> int:
    """Dynamic shared memory of a _tv launch: 4 * vshared_elems<MODE> in kernels/strided.cu
    (MODE 0: a tile per staged input, 1: two, S >= 2: S tiles per input)."""
    elems = nstaged * tile if mode == 0 else 2 * nstaged * tile if mode == 1 else mode * nin * tile
    return 4 * elems


def tv_ok(inner_str: list, staged: list, ptrs: list, outer_str: list | None = None) -> bool:
    """Whether a _tv twin runs its vector path (mirror of vec_ok in kernels/strided.cu; any other
    layout takes the <op>_t twin): every pointer 16-byte aligned; staged inputs s2 == +1, direct
    inputs and the output s3 == +1; every other element stride (s0, s1, the other of s2 / s3,
    and the strides of dimensions split into several launches) a multiple of 4; |s2| < 2^30 /
    TD2 and |s3| < 2^30 / TD3."""
    td2, td3, _ = VTILE
    l2, l3 = (1 << 30) // td2, (1 << 30) // td3
    if any(p % 16 for p in ptrs) or any(x % 4 for st in outer_str or () for x in st):
        return False
    for o, (s0, s1, s2, s3) in enumerate(inner_str):
        unit, other = (s2, s3) if o < len(staged) and staged[o] else (s3, s2)
        if unit != 1 or (other | s0 | s1) % 4 or not (-l2 < s2 < l2 and -l3 < s3 < l3):
            return False
    return True


THREADS = 256
_checked: set = set()
_sm_count: dict = {}


def element_aligned(ptr: int, strides: tuple, itemsize: int) -> bool:
    """Whether every element of the layout is aligned to its size (loads of a T* need it)."""
    if ptr % itemsize:
        return False
    return all(s % itemsize == 0 for s in strides)


def block_shape(d3: int, inner_unit: bool) -> tuple[int, int]:
    """(block.x, block.y) of THREADS threads: wide along d3 when every operand is unit-stride
    there (coalesced rows), a 32 x 32 tile otherwise (a transposed operand reads whole lines)."""
    if not inner_unit:
        return 32, THREADS // 32
    bx = 32
    while bx < THREADS and bx < d3:
        bx *= 2
    return bx, THREADS // bx


def tiles(dims: tuple, bx: int, by: int) -> int:
    d0, d1, d2, d3 = dims
    rows = by * ROWS_PER_THREAD
    return -(-d3 // bx) * -(-d2 // rows) * d1 * d0


def _contiguous(name: str, scalars: tuple, ptrs: list, n: int, itemsize: int, s: Stream, timed: bool):
    """The vector kernel ``name`` (or its unaligned twin) over ``n`` contiguous elements."""
    vec = all(p % 16 == 0 for p in ptrs)
    kname = name if vec else name + "_u"
    kernel = kit_kernel("vector", kname)
    key = (kname, s.device.ordinal)
    if key not in _checked:
        check_geometry(kernel, s.device, 1, THREADS)
        _checked.add(key)
    per = 16 // itemsize if vec else 1
    return fast_launch(kernel, blocks_for(-(-n // per), THREADS), THREADS, (*scalars, *ptrs, n), s, timed)


def choose(name: str, inner: tuple, inner_str: list, ptrs: list, itemsize: int, outer_str: list | None = None):
    """Which twin of strided kernel ``name`` runs a 4-D layout (``inner`` dims, element strides per
    operand, the output last; ``outer_str``: each operand's strides of the dimensions launched
    one by one), and how: (kernel name, dims, strides, flag arguments, block, tiles, dynamic
    shared bytes). ``<name>v`` when every operand is rows of whole 16-byte vectors; when an
    input's unit stride is along d2 while the output's is along d3 (a transposed input),
    ``<op>_tv`` for 4-byte types on layouts that allow 16-byte accesses (tv_ok), else ``<op>_t``;
    else ``name``."""
    flags: tuple = ()
    smem = 0
    per = 16 // itemsize
    if (all(st[3] == 1 for st in inner_str) and inner[3] % per == 0 and all(p % 16 == 0 for p in ptrs)
            and all(x % per == 0 for st in inner_str for x in st[:3])
            and all(x % per == 0 for st in outer_str or () for x in st)):
        # rows of whole 16-byte vectors (a row or column block, a stepped row view): 16-byte loads
        kname, inner = name + "v", inner[:3] + (inner[3] // per,)
        inner_str = [tuple(x // per for x in st[:3]) + (1,) for st in inner_str]
        bx, by = block_shape(inner[3], True)
        grid = tiles(inner, bx, by)
    elif inner[2] > 1 and inner_str[-1][3] in (1, -1) and any(
            st[2] in (1, -1) and st[3] not in (1, -1) for st in inner_str[:-1]):
        # an input transposed relative to the output: staged through shared-memory tiles
        staged = [st[2] in (1, -1) and st[3] not in (1, -1) for st in inner_str[:-1]]
        flags = tuple(np.int32(f) for f in staged)
        if itemsize == 4 and tv_ok(inner_str, staged, ptrs, outer_str):
            kname = name[:-2] + "_tv"
            td2, td3, by = VTILE
            mode = VMODES["copy" if name.startswith("copy_") else "op"]
            smem = vshared_bytes(mode, td2 * td3, len(staged), sum(staged))
        else:
            kname = name[:-2] + "_t"
            td2, td3, by = tile_shape(itemsize)
        bx = 32
        grid = -(-inner[3] // td3) * -(-inner[2] // td2) * inner[1] * inner[0]
    else:
        kname = name
        bx, by = block_shape(inner[3], all(st[3] in (1, -1) for st in inner_str))
        # a 1-D layout runs the kernels' flat loop: one element per thread and step
        grid = -(-inner[3] // THREADS) if inner[:3] == (1, 1, 1) else tiles(inner, bx, by)
    return kname, inner, inner_str, flags, (bx, by), grid, smem


def launch_strided(name: str, scalars: tuple, ptrs: list, strides: list, shape: tuple, itemsize: int,
                   s: Stream, timed: bool = False, label: str | None = None):
    """Launch ``name`` (a strided kernel of kernels/strided.cu) over ``shape``: arguments are
    ``scalars``, then the pointers, then d0..d3, then each operand's 4 element strides, in the
    order of ``ptrs`` / ``strides`` (byte strides, the output's last). The caller checked
    devices, dtypes, shapes and element alignment. Returns a TimingRecord when ``timed``."""
    # the output first: its memory order drives the tiling
    order = [len(ptrs) - 1] + list(range(len(ptrs) - 1))
    cshape, optrs, cstr = L.elementwise(shape, [ptrs[i] for i in order], [strides[i] for i in order], itemsize)
    ptrs = [optrs[order.index(i)] for i in range(len(ptrs))]
    cstr = [cstr[order.index(i)] for i in range(len(ptrs))]
    for st in cstr:
        if any(x % itemsize for x in st):
            raise ShapeError(f"strides {st} are not multiples of the item size {itemsize}")
    if len(cshape) == 1 and all(st[0] == itemsize for st in cstr):
        # one contiguous run after all (e.g. every operand transposed alike): the 16-byte kernels
        return _contiguous(name[:-2], scalars, ptrs, cshape[0], itemsize, s, timed)
    estr = [tuple(x // itemsize for x in st) for st in cstr]
    dev = s.device
    sms = _sm_count.get(dev.ordinal)
    if sms is None:
        sms = _sm_count[dev.ordinal] = dev.multiprocessor_count
    nd = len(cshape)
    outer = cshape[:-4] if nd > 4 else ()
    inner = (1,) * (4 - min(nd, 4)) + tuple(cshape[-4:])
    inner_str = [(0,) * (4 - min(nd, 4)) + st[-4:] for st in estr]
    outer_str = [st[:-4] for st in estr] if outer else None
    kname, inner, inner_str, flags, (bx, by), grid, smem = choose(name, inner, inner_str, ptrs, itemsize, outer_str)
    kernel = kit_kernel("strided", kname)
    key = (kname, dev.ordinal, smem)
    if key not in _checked:
        check_geometry(kernel, dev, 1, (bx, by), smem)
        _checked.add(key)
    if smem:  # the _tv twins (2 staged tiles: 64 KiB); the Kernel remembers the limit it set
        kernel.ensure_dynamic_shared(dev, smem)
    grid = max(1, min(grid, sms * 16))
    cfg = config((grid, 1, 1), (bx, by, 1), smem)
    start = begin_timing(s, timed)
    for idx in itertools.product(*(range(d) for d in outer)) if outer else [()]:
        pp = [p + sum(i * st[k] for k, i in enumerate(idx)) * itemsize for p, st in zip(ptrs, estr)]
        args = (*scalars, *pp, *flags, *inner)
        for st in inner_str:
            args += st
        do_launch(s, cfg, kernel, args)
    return end_timing(label or name, s, start, {"grid": (grid, 1, 1), "block": (bx, by, 1), "shared_mem_bytes": smem,
                                                   "kernel": kname})
