"""Layout arithmetic of strided arrays: shapes, byte strides, offsets; indexing, transposes,
reshapes and dtype views as pure integer arithmetic (no driver, no numpy array), and the
reductions the copy and op paths use (dimension collapsing, pitched 2-D detection, extents).

Strides are in bytes, as in numpy and the CUDA Array Interface, and may be negative or zero.
"""

from __future__ import annotations

import math
import operator

import numpy as np

from ..errors import ShapeError

__all__ = [
    "MAX_NBYTES", "c_strides", "normalize_shape", "checked_nbytes", "is_c_contiguous", "extent",
    "index", "transpose", "reshape_strides", "view_dtype", "collapse", "elementwise", "pitched_2d", "has_zero_stride", "overlaps",
]

# The largest byte count the kit accepts for one array: sizes are signed 64-bit in the driver's
# neighbours (ptrdiff_t, DLPack's int64 shape), so 2**63 bytes and up fit no address space.
MAX_NBYTES = 2**63 - 1


def c_strides(shape: tuple, itemsize: int) -> tuple:
    """Byte strides of a C-contiguous (row-major) array of ``shape``."""
    strides = []
    acc = itemsize
    for dim in reversed(shape):
        strides.append(acc)
        acc *= max(dim, 1)
    return tuple(reversed(strides))


def normalize_shape(shape, what: str = "shape") -> tuple:
    """``shape`` as a tuple of non-negative Python ints. An int or numpy integer is a 1-D shape;
    anything else must be a sequence of them. ShapeError (a ValueError) names the offending
    dimension: floats, strings, bools and negative values are refused, never truncated."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, (bool, np.bool_)):
        shape = (shape,)
    elif isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise ShapeError(f"{what} must be an int or a sequence of ints, got {shape!r} ({type(shape).__name__})")
    shape = tuple(shape)
    dims = []
    for i, d in enumerate(shape):
        try:
            if isinstance(d, (bool, np.bool_)):
                raise TypeError
            d = operator.index(d)
        except TypeError:
            raise ShapeError(
                f"{what} {shape!r}: dimension {i} is {d!r} ({type(d).__name__}), not an integer"
            ) from None
        if d < 0:
            raise ShapeError(f"{what} {shape!r}: dimension {i} is negative ({d})")
        dims.append(d)
    return tuple(dims)


def checked_nbytes(shape: tuple, dtype: np.dtype, what: str = "") -> int:
    """Bytes of ``shape`` elements of ``dtype``; ShapeError when the element count or the byte
    count is 2**63 or more (no address space holds it; the driver's bindings would raise a bare
    OverflowError at 2**64). Pure arithmetic: runs before any driver call."""
    size = math.prod(shape)
    nbytes = size * dtype.itemsize
    if size > MAX_NBYTES or nbytes > MAX_NBYTES:
        raise ShapeError(
            f"{what + ': ' if what else ''}shape {shape} of {dtype} is {size} elements = {nbytes} bytes "
            f"(~2**{math.log2(nbytes):.1f}): no address space can hold it (the limit is 2**63 - 1 bytes)"
        )
    return nbytes


def is_c_contiguous(shape: tuple, strides: tuple, itemsize: int) -> bool:
    """True when the elements are packed in row-major order (dimensions of size 1 may have any
    stride; an array of at most one element is contiguous)."""
    if math.prod(shape) <= 1:
        return True
    acc = itemsize
    for d, s in zip(reversed(shape), reversed(strides)):
        if d != 1 and s != acc:
            return False
        acc *= d
    return True


def extent(shape: tuple, strides: tuple, itemsize: int) -> tuple[int, int]:
    """(lo, hi): the byte range ``[ptr + lo, ptr + hi)`` the elements occupy relative to the
    pointer of the first element; (0, 0) for an empty array."""
    if math.prod(shape) == 0:
        return 0, 0
    lo = hi = 0
    for d, s in zip(shape, strides):
        if s < 0:
            lo += (d - 1) * s
        else:
            hi += (d - 1) * s
    return lo, hi + itemsize


def overlaps(a: tuple, b: tuple) -> bool:
    """Whether two absolute byte ranges (start, stop) intersect (empty ranges never do)."""
    return a[0] < a[1] and b[0] < b[1] and a[0] < b[1] and b[0] < a[1]


def _index_int(i, what: str) -> int:
    if isinstance(i, (bool, np.bool_)):
        raise IndexError(f"{what}: boolean indices are not supported (only integers, slices, ..., None)")
    try:
        return operator.index(i)
    except TypeError:
        raise IndexError(
            f"{what}: {type(i).__name__} indices are not supported; basic indexing takes integers, "
            "slices, ... and None (advanced indexing would need a gather: copy to numpy first)"
        ) from None


def index(shape: tuple, strides: tuple, key, what: str = "index") -> tuple[tuple, tuple, int]:
    """Basic (numpy) indexing as arithmetic: ``(shape, strides, byte_offset)`` of ``a[key]``.

    ``key``: an int, a slice (any step, negative too), ``...``, ``None`` (a new axis of length 1),
    or a tuple of them. IndexError for an integer out of range, a zero step, too many indices,
    more than one ``...``, or anything else (booleans, arrays, floats)."""
    if not isinstance(key, tuple):
        key = (key,)
    n_ell = sum(1 for k in key if k is Ellipsis)
    if n_ell > 1:
        raise IndexError(f"{what}: an index can only have a single ellipsis ('...')")
    n_real = sum(1 for k in key if k is not None and k is not Ellipsis)
    if n_real > len(shape):
        raise IndexError(f"{what}: too many indices for an array of {len(shape)} dimension(s): {n_real} were given")
    if n_ell == 0:
        key = key + (Ellipsis,)
    out_shape: list = []
    out_strides: list = []
    offset = 0
    dim = 0
    for k in key:
        if k is None:
            out_shape.append(1)
            out_strides.append(0)
        elif k is Ellipsis:
            # dimensions the ellipsis covers: all those not consumed by the remaining real indices
            consumed_after = sum(1 for kk in key[key.index(Ellipsis) + 1:] if kk is not None and kk is not Ellipsis)
            n_cover = len(shape) - dim - consumed_after
            for _ in range(n_cover):
                out_shape.append(shape[dim])
                out_strides.append(strides[dim])
                dim += 1
        elif isinstance(k, slice):
            n = shape[dim]
            start, stop, step = k.indices(n) if k.step != 0 else (0, 0, 0)
            if step == 0:
                raise IndexError(f"{what}: slice step cannot be zero")
            length = len(range(start, stop, step))
            out_shape.append(length)
            out_strides.append(strides[dim] * step)
            if length:
                offset += start * strides[dim]
            dim += 1
        else:
            i = _index_int(k, what)
            n = shape[dim]
            if not -n <= i < n:
                raise IndexError(f"{what}: index {i} is out of bounds for axis {dim} with size {n}")
            offset += (i + n if i < 0 else i) * strides[dim]
            dim += 1
    return tuple(out_shape), tuple(out_strides), offset


def transpose(shape: tuple, strides: tuple, axes=None) -> tuple[tuple, tuple]:
    """(shape, strides) with the axes permuted (reversed when ``axes`` is None)."""
    nd = len(shape)
    if axes is None:
        axes = tuple(range(nd))[::-1]
    else:
        try:
            axes = tuple(operator.index(a) for a in axes)
        except TypeError:
            raise ShapeError(f"transpose: axes must be integers, got {axes!r}") from None
        if len(axes) != nd:
            raise ShapeError(f"transpose: axes {axes} do not match an array of {nd} dimension(s)")
        axes = tuple(a + nd if a < 0 else a for a in axes)
        if sorted(axes) != list(range(nd)):
            raise ShapeError(f"transpose: axes {axes} are not a permutation of 0..{nd - 1}")
    return tuple(shape[a] for a in axes), tuple(strides[a] for a in axes)


def reshape_strides(shape: tuple, strides: tuple, itemsize: int, new_shape: tuple) -> tuple | None:
    """Strides that view the elements of (shape, strides) in row-major order as ``new_shape``
    without copying, or None when no such strides exist (e.g. a transposed 2-D array reshaped
    to 1-D). Sizes must already agree."""
    if math.prod(shape) == 0 or math.prod(new_shape) <= 1:
        return c_strides(new_shape, itemsize)
    # drop unit dimensions of the old layout: they constrain nothing
    old = [(d, s) for d, s in zip(shape, strides) if d != 1]
    new_strides = [0] * len(new_shape)
    oi = ni = 0
    n_old, n_new = len(old), len(new_shape)
    while ni < n_new and oi < n_old:
        # grow a group of old dims and a group of new dims until they hold the same element count
        np_, op_ = new_shape[ni], old[oi][0]
        nj, oj = ni + 1, oi + 1
        while np_ != op_:
            if np_ < op_:
                np_ *= new_shape[nj]
                nj += 1
            else:
                op_ *= old[oj][0]
                oj += 1
        # the old group must be contiguous in itself (each dim packed in the next)
        for k in range(oi, oj - 1):
            if old[k][1] != old[k + 1][0] * old[k + 1][1]:
                return None
        # lay the new group out from the innermost old stride
        new_strides[nj - 1] = old[oj - 1][1]
        for k in range(nj - 1, ni, -1):
            new_strides[k - 1] = new_strides[k] * new_shape[k]
        ni, oi = nj, oj
    # trailing unit dimensions of the new shape
    for k in range(ni, n_new):
        new_strides[k] = itemsize
    return tuple(new_strides)


def view_dtype(shape: tuple, strides: tuple, old_itemsize: int, new_itemsize: int) -> tuple[tuple, tuple]:
    """(shape, strides) when the same bytes are read with an item size of ``new_itemsize``:
    the last axis changes length by the itemsize ratio. As numpy: the last axis must be
    contiguous (stride == itemsize) when the sizes differ, and its byte length must divide."""
    if old_itemsize == new_itemsize:
        return shape, strides
    if not shape:
        raise ShapeError(f"view: a 0-d array of {old_itemsize}-byte items cannot be viewed as {new_itemsize}-byte items")
    if shape[-1] != 1 and strides[-1] != old_itemsize:
        raise ShapeError(
            f"view: changing the item size from {old_itemsize} to {new_itemsize} bytes needs a contiguous last "
            f"axis; its stride is {strides[-1]} bytes"
        )
    row_bytes = shape[-1] * old_itemsize
    if row_bytes % new_itemsize:
        raise ShapeError(
            f"view: the last axis holds {row_bytes} bytes, not a multiple of the new item size {new_itemsize}"
        )
    return shape[:-1] + (row_bytes // new_itemsize,), strides[:-1] + (new_itemsize,)


def collapse(shape: tuple, strides_list: list) -> tuple[tuple, list]:
    """Reduce the layout of several same-shape operands to the fewest dimensions that address
    the same elements: unit dimensions are dropped, the dimensions are ordered as the first
    operand (the output) lays them out in memory (largest stride magnitude first), and
    neighbours that every operand packs into each other are merged. Returns (shape, strides
    per operand); a fully contiguous set of operands comes back 1-D with stride itemsize."""
    keep = [i for i, d in enumerate(shape) if d != 1]
    if not keep:
        return (), [() for _ in strides_list]
    first = strides_list[0]
    # stable order by the output's stride magnitude, largest first; ties keep the logical order
    order = sorted(keep, key=lambda i: -abs(first[i]))
    dims = [shape[i] for i in order]
    strs = [[s[i] for i in order] for s in strides_list]
    out_d = [dims[0]]
    out_s = [[s[0]] for s in strs]
    for k in range(1, len(dims)):
        d = dims[k]
        if all(os_[-1] == s[k] * d for os_, s in zip(out_s, strs)):
            out_d[-1] *= d
            for os_, s in zip(out_s, strs):
                os_[-1] = s[k]
        else:
            out_d.append(d)
            for os_, s in zip(out_s, strs):
                os_.append(s[k])
    return tuple(out_d), [tuple(s) for s in out_s]


def elementwise(shape: tuple, ptrs: list, strides_list: list, itemsize: int) -> tuple[tuple, list, list]:
    """The layout an element-wise kernel needs for operands of ``shape`` at ``ptrs`` with
    ``strides_list`` (the output first): collapsed (see :func:`collapse`), then every dimension
    that all operands walk backwards walked forwards instead (the pointers move to the other
    end; element-wise results do not depend on the order), then collapsed again. A result of
    one dimension with every stride ``itemsize`` is plain contiguous memory."""
    cshape, cstr = collapse(shape, strides_list)
    if not cshape:
        return (1,), list(ptrs), [(itemsize,) for _ in ptrs]
    ptrs = list(ptrs)
    flip = [k for k in range(len(cshape)) if all(st[k] < 0 for st in cstr)]
    if flip:
        cstr = [list(st) for st in cstr]
        for k in flip:
            for i, st in enumerate(cstr):
                ptrs[i] += (cshape[k] - 1) * st[k]
                st[k] = -st[k]
        cshape, cstr = collapse(cshape, [tuple(st) for st in cstr])
    return cshape, ptrs, cstr


def pitched_2d(shape: tuple, dst_strides: tuple, src_strides: tuple, itemsize: int) -> tuple | None:
    """(rows, row_bytes, dst_pitch, src_pitch) when a copy between two layouts of ``shape`` is
    rows of contiguous bytes at constant positive pitches on both sides (a row block or a
    column block of a matrix, a stepped row view), as cuMemcpy2D describes memory; None
    otherwise. Both layouts are collapsed together, so element i of one side stays element i
    of the other. Contiguous on both sides is one row."""
    cshape, (ds, ss) = collapse(shape, [dst_strides, src_strides])
    if not cshape:
        return (1, itemsize, itemsize, itemsize) if math.prod(shape) else None
    if len(cshape) == 1:
        if ds[0] == itemsize and ss[0] == itemsize:
            n = cshape[0] * itemsize
            return 1, n, n, n
        return None
    if len(cshape) == 2 and ds[1] == itemsize and ss[1] == itemsize:
        row = cshape[1] * itemsize
        if ds[0] >= row and ss[0] >= row:
            return cshape[0], row, ds[0], ss[0]
    return None


def has_zero_stride(shape: tuple, strides: tuple) -> bool:
    """Whether two elements of the layout share an address through a zero stride (a broadcast
    dimension): an output with one would be written by several threads at once."""
    if math.prod(shape) == 0:
        return False
    return any(d > 1 and s == 0 for d, s in zip(shape, strides))
