"""Index arithmetic of views (cudart_kit.memory.layout) against numpy on host arrays: shapes,
byte strides and offsets of indexing, transposes, reshapes and dtype views, and the errors for
out-of-range or unsupported indices. No driver needed."""

import itertools
import random

import numpy as np
import pytest

from cudart_kit.errors import ShapeError
from cudart_kit.memory import layout as L


def _offset(base: np.ndarray, view: np.ndarray) -> int:
    return view.__array_interface__["data"][0] - base.__array_interface__["data"][0]


def _rand_slice(rng, n):
    start = rng.choice([None, rng.randint(-n - 2, n + 2)])
    stop = rng.choice([None, rng.randint(-n - 2, n + 2)])
    step = rng.choice([None, 1, 2, 3, -1, -2, -3])
    return slice(start, stop, step)


@pytest.mark.parametrize("seed", range(40))
def test_index_matches_numpy(seed):
    rng = random.Random(seed)
    nd = rng.randint(1, 4)
    shape = tuple(rng.randint(1, 6) for _ in range(nd))
    base = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    parts = []
    for d in range(nd):
        r = rng.random()
        if r < 0.3:
            parts.append(rng.randint(-shape[d], shape[d] - 1))
        else:
            parts.append(_rand_slice(rng, shape[d]))
    if rng.random() < 0.3:
        parts.insert(rng.randint(0, len(parts)), None)
    if rng.random() < 0.3:
        parts.insert(rng.randint(0, len(parts)), Ellipsis)
    key = tuple(parts)
    # numpy gives a scalar for all-integer keys; a trailing ... keeps the 0-d view
    ref = base[key if any(k is Ellipsis for k in key) else key + (Ellipsis,)]
    shape2, strides2, off = L.index(base.shape, base.strides, key)
    assert shape2 == ref.shape, key
    if ref.size:
        assert tuple(s for s, d in zip(strides2, shape2) if d > 1) == tuple(s for s, d in zip(ref.strides, ref.shape) if d > 1), key
        assert off == _offset(base, ref), key


def test_index_errors():
    shape, strides = (3, 4), (16, 4)
    with pytest.raises(IndexError, match="out of bounds for axis 1 with size 4"):
        L.index(shape, strides, (0, 4))
    with pytest.raises(IndexError, match="out of bounds for axis 0"):
        L.index(shape, strides, -4)
    with pytest.raises(IndexError, match="too many indices"):
        L.index(shape, strides, (0, 0, 0))
    with pytest.raises(IndexError, match="single ellipsis"):
        L.index(shape, strides, (Ellipsis, Ellipsis))
    with pytest.raises(IndexError, match="step cannot be zero"):
        L.index(shape, strides, slice(None, None, 0))
    with pytest.raises(IndexError, match="boolean"):
        L.index(shape, strides, True)
    with pytest.raises(IndexError, match="list indices are not supported"):
        L.index(shape, strides, [0, 1])
    with pytest.raises(IndexError, match="float indices"):
        L.index(shape, strides, 1.0)


def test_index_ellipsis_and_newaxis():
    base = np.zeros((2, 3, 4, 5), np.float64)
    for key in [(Ellipsis, 1), (1, Ellipsis), (0, Ellipsis, 2), (None, Ellipsis, None), (Ellipsis,), ()]:
        ref = base[key]
        shape2, strides2, off = L.index(base.shape, base.strides, key)
        assert shape2 == ref.shape
        assert off == _offset(base, ref)


@pytest.mark.parametrize("shape", [(6,), (2, 3), (4, 1, 3), (2, 3, 4), (3, 4, 5, 2)])
def test_transpose_matches_numpy(shape):
    a = np.empty(shape, np.float32)
    assert L.transpose(a.shape, a.strides) == (a.T.shape, a.T.strides)
    for axes in itertools.permutations(range(len(shape))):
        t = a.transpose(axes)
        assert L.transpose(a.shape, a.strides, axes) == (t.shape, t.strides)
    if len(shape) > 1:
        with pytest.raises(ShapeError, match="not a permutation"):
            L.transpose(a.shape, a.strides, (0,) * len(shape))
    with pytest.raises(ShapeError, match="do not match"):
        L.transpose(a.shape, a.strides, tuple(range(len(shape) + 1)))


def _numpy_view_reshape(a, new):
    try:
        return np.reshape(a, new, copy=False)
    except ValueError:
        return None


@pytest.mark.parametrize("seed", range(60))
def test_reshape_view_matches_numpy(seed):
    rng = random.Random(1000 + seed)
    shape = tuple(rng.randint(1, 4) for _ in range(rng.randint(1, 4)))
    base = np.empty(tuple(d * 2 for d in shape), np.float32)
    # a view of the base: sliced, maybe stepped, maybe transposed
    v = base[tuple(slice(0, d, rng.choice([1, 2])) for d in shape)]
    if rng.random() < 0.5:
        v = v.T
    size = v.size
    # candidate new shapes: factorizations of the size
    divs = [d for d in range(1, size + 1) if size % d == 0]
    a = rng.choice(divs)
    b = rng.choice([d for d in divs if (size // a) % d == 0])
    new = tuple(x for x in (a, b, size // (a * b)) if True)
    ref = _numpy_view_reshape(v, new)
    got = L.reshape_strides(v.shape, v.strides, 4, new)
    if ref is None:
        assert got is None, (v.shape, v.strides, new)
    else:
        assert got is not None, (v.shape, v.strides, new)
        assert tuple(s for s, d in zip(got, new) if d > 1) == tuple(s for s, d in zip(ref.strides, new) if d > 1)


def test_view_dtype():
    a = np.zeros((3, 8), np.uint8)
    assert L.view_dtype(a.shape, a.strides, 1, 4) == ((3, 2), (8, 4))
    sub = a[:, 1:5]  # odd byte offset, contiguous last axis
    assert L.view_dtype(sub.shape, sub.strides, 1, 2) == ((3, 2), (8, 2))
    with pytest.raises(ShapeError, match="not a multiple"):
        L.view_dtype((3, 3), (8, 1), 1, 2)
    with pytest.raises(ShapeError, match="contiguous last axis"):
        L.view_dtype((3, 4), (8, 2), 1, 2)
    with pytest.raises(ShapeError, match="0-d"):
        L.view_dtype((), (), 4, 2)


def test_collapse_and_pitched():
    # a contiguous 3-D array collapses to 1-D
    assert L.collapse((2, 3, 4), [(48, 16, 4)]) == ((24,), [(4,)])
    # a row block of a (10, 8) float32 matrix: rows of 5 elements at a 32-byte pitch
    assert L.collapse((4, 5), [(32, 4)]) == ((4, 5), [(32, 4)])
    assert L.pitched_2d((4, 5), (20, 4), (32, 4), 4) == (4, 20, 20, 32)
    # a transposed source is not pitched
    assert L.pitched_2d((4, 5), (20, 4), (4, 16), 4) is None
    # same transposition on both sides: collapsed in memory order, one contiguous run
    assert L.pitched_2d((4, 5), (4, 16), (4, 16), 4) == (1, 80, 80, 80)
    # a negative row step is not a cuMemcpy2D layout
    assert L.pitched_2d((4, 5), (20, 4), (-32, 4), 4) is None
    assert L.has_zero_stride((3, 4), (0, 4)) and not L.has_zero_stride((1, 4), (0, 4))
    assert not L.has_zero_stride((0, 5), (0, 0))  # no elements, nothing shared


def test_extent_and_contiguity():
    a = np.zeros((5, 6), np.float32)
    v = a[::-2, 1:4]
    lo, hi = L.extent(v.shape, v.strides, 4)
    start = _offset(a, v)
    assert start + lo >= 0 and start + hi <= a.nbytes
    assert L.extent((0, 3), (12, 4), 4) == (0, 0)
    assert L.is_c_contiguous(a.shape, a.strides, 4)
    assert not L.is_c_contiguous(a.T.shape, a.T.strides, 4)
    assert L.is_c_contiguous((1, 5), (999, 4), 4)
    assert L.overlaps((0, 8), (4, 12)) and not L.overlaps((0, 8), (8, 12)) and not L.overlaps((0, 0), (0, 4))


def test_shape_and_size_checks():
    assert L.normalize_shape(np.int32(5)) == (5,)
    with pytest.raises(ShapeError, match="negative"):
        L.normalize_shape((2, -1))
    with pytest.raises(ShapeError, match="no address space"):
        L.checked_nbytes((2**62, 4), np.dtype(np.float32))


def test_strided_kernel_choice():
    """Which twin of a strided kernel a layout gets (cudart_kit.memory.strided.choose)."""
    from cudart_kit.memory.strided import THREADS, choose

    # column blocks of float32 matrices: rows of whole 16-byte vectors -> the vectorized twin
    k, dims, strs, flags, block, _ = choose("add_f32_s", (1, 1, 64, 40), [(0, 0, 80, 1)] * 3, [0, 16, 32], 4)
    assert k == "add_f32_sv" and dims == (1, 1, 64, 10) and strs[0] == (0, 0, 20, 1) and flags == ()
    # ...not when a pointer is off the 16-byte grid, or a row is not whole vectors
    assert choose("add_f32_s", (1, 1, 64, 40), [(0, 0, 80, 1)] * 3, [0, 4, 32], 4)[0] == "add_f32_s"
    assert choose("add_f32_s", (1, 1, 64, 42), [(0, 0, 80, 1)] * 3, [0, 16, 32], 4)[0] == "add_f32_s"
    # x transposed relative to the output: shared-memory tiles, x flagged, y read directly
    k, _, _, flags, block, grid = choose("add_f32_s", (1, 1, 100, 70), [(0, 0, 1, 100), (0, 0, 70, 1), (0, 0, 70, 1)],
                                         [0, 0, 0], 4)
    # 32 x 32 tiles on 32 x 4 threads: ceil(70 / 32) * ceil(100 / 32)
    assert k == "add_f32_t" and [int(f) for f in flags] == [1, 0] and block == (32, 4) and grid == 3 * 4
    assert all(f.dtype == np.int32 for f in flags)  # the kernel takes int flags: 4 bytes each
    # a copy from a transposed source
    assert choose("copy_b32_s", (1, 1, 9, 9), [(0, 0, 1, 9), (0, 0, 9, 1)], [0, 0], 4)[0] == "copy_b32_t"
    # stepped 1-D: the plain twin, its flat loop sized by elements
    k, _, _, _, block, grid = choose("scale_f64_s", (1, 1, 1, 5000), [(0, 0, 0, 3), (0, 0, 0, 1)], [0, 0], 8)
    assert k == "scale_f64_s" and grid == -(-5000 // THREADS)
