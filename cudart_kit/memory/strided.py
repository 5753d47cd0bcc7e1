"""Launches of the strided kernels (kernels/strided.cu) over operands of any layout: the layouts
are collapsed together (fewest dimensions, output's memory order), split into launches of at
most 4 dimensions, and tiled so that an operand transposed relative to the output still reads
whole cache lines. Used by copies and fills of views here and by the vector ops on views.
"""

from __future__ import annotations

import itertools

from . import layout as L
from .._launch import blocks_for, check_geometry, config, do_launch, fast_launch
from ..errors import ShapeError
from ..event import begin_timing, end_timing
from ..module import kit_kernel
from ..stream import Stream

__all__ = ["launch_strided", "element_aligned", "ROWS_PER_THREAD", "THREADS"]

ROWS_PER_THREAD = 8  # mirrors kRows in kernels/strided.cu
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
    kernel = kit_kernel("strided", name)
    dev = s.device
    key = (name, dev.ordinal)
    if key not in _checked:
        check_geometry(kernel, dev, 1, (32, THREADS // 32))
        _checked.add(key)
    sms = _sm_count.get(dev.ordinal)
    if sms is None:
        sms = _sm_count[dev.ordinal] = dev.multiprocessor_count
    nd = len(cshape)
    outer = cshape[:-4] if nd > 4 else ()
    inner = cshape[-4:]
    inner = (1,) * (4 - len(inner)) + tuple(inner)
    inner_str = [(0,) * (4 - min(nd, 4)) + st[-4:] for st in estr]
    inner_unit = all(st[3] in (1, -1) for st in inner_str)
    bx, by = block_shape(inner[3], inner_unit)
    grid = max(1, min(tiles(inner, bx, by), sms * 16))
    cfg = config((grid, 1, 1), (bx, by, 1), 0)
    start = begin_timing(s, timed)
    for idx in itertools.product(*(range(d) for d in outer)) if outer else [()]:
        pp = [p + sum(i * st[k] for k, i in enumerate(idx)) * itemsize for p, st in zip(ptrs, estr)]
        args = (*scalars, *pp, *inner)
        for st in inner_str:
            args += st
        do_launch(s, cfg, kernel, args)
    return end_timing(label or name, s, start, {"grid": (grid, 1, 1), "block": (bx, by, 1), "shared_mem_bytes": 0})
