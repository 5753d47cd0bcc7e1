"""Index arithmetic of views (cudart_kit.memory.layout) against numpy on host arrays: shapes,
byte strides and offsets of indexing, transposes, reshapes and dtype views, and the errors for
out-of-range or unsupported indices. No driver needed."""

import itertools
import random
import re
from pathlib import Path

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
    k, dims, strs, flags, block, _, smem = choose("add_f32_s", (1, 1, 64, 40), [(0, 0, 80, 1)] * 3, [0, 16, 32], 4)
    assert k == "add_f32_sv" and dims == (1, 1, 64, 10) and strs[0] == (0, 0, 20, 1) and flags == () and smem == 0
    # ...not when a pointer is off the 16-byte grid, or a row is not whole vectors
    assert choose("add_f32_s", (1, 1, 64, 40), [(0, 0, 80, 1)] * 3, [0, 4, 32], 4)[0] == "add_f32_s"
    assert choose("add_f32_s", (1, 1, 64, 42), [(0, 0, 80, 1)] * 3, [0, 16, 32], 4)[0] == "add_f32_s"
    # x transposed relative to the output, odd strides (no 16-byte accesses): the tmap twin,
    # x flagged, y read directly
    k, _, _, flags, block, grid, smem = choose("add_f32_s", (1, 1, 100, 70),
                                               [(0, 0, 1, 100), (0, 0, 70, 1), (0, 0, 70, 1)], [0, 0, 0], 4)
    # 32 x 32 tiles on 32 x 4 threads: ceil(70 / 32) * ceil(100 / 32); static shared memory only
    assert k == "add_f32_t" and [int(f) for f in flags] == [1, 0] and block == (32, 4) and grid == 3 * 4
    assert smem == 0
    assert all(f.dtype == np.int32 for f in flags)  # the kernel takes int flags: 4 bytes each
    # a copy from a transposed source
    assert choose("copy_b32_s", (1, 1, 9, 9), [(0, 0, 1, 9), (0, 0, 9, 1)], [0, 0], 4)[0] == "copy_b32_t"
    # stepped 1-D: the plain twin, its flat loop sized by elements
    k, _, _, _, block, grid, _ = choose("scale_f64_s", (1, 1, 1, 5000), [(0, 0, 0, 3), (0, 0, 0, 1)], [0, 0], 8)
    assert k == "scale_f64_s" and grid == -(-5000 // THREADS)


# x.T + y -> out over a (1027 x 2052) float32 output: x is (2052 x 1027) transposed, rows padded
XT = [(0, 0, 1, 1028), (0, 0, 2052, 1), (0, 0, 2052, 1)]
DIMS = (1, 1, 1027, 2052)


def test_transposed_choice_vector_twin():
    """Aligned 4-byte layouts with a transposed operand get the _tv twins (64 x 64 tiles on 32 x 8
    threads, dynamic shared memory: MODE 1 for ops, a 2-stage ring for copy)."""
    from cudart_kit.memory.strided import VTILE, choose

    k, dims, strs, flags, block, grid, smem = choose("add_f32_s", DIMS, XT, [0, 4096, 8192], 4)
    assert k == "add_f32_tv" and VTILE == (64, 64, 8) and block == (32, 8)
    assert dims == DIMS and strs == XT and [int(f) for f in flags] == [1, 0]
    assert grid == -(-2052 // 64) * -(-1027 // 64)
    assert smem == 4 * 2 * 1 * 64 * 64  # MODE 1: two buffers of the one staged tile (32 KiB)
    # x + y -> out.T: both inputs staged, 64 KiB (above the 48 KiB default: the limit is raised)
    both = [(0, 0, 1, 1028), (0, 0, 1, 1028), (0, 0, 2052, 1)]
    k, _, _, flags, _, _, smem = choose("add_f32_s", DIMS, both, [0, 0, 0], 4)
    assert k == "add_f32_tv" and [int(f) for f in flags] == [1, 1] and smem == 64 * 1024
    # y staged only; the scalar ops and scale take the same twin
    k, _, _, flags, _, _, _ = choose("axpy_f32_s", DIMS, [XT[1], XT[0], XT[2]], [0, 0, 0], 4)
    assert k == "axpy_f32_tv" and [int(f) for f in flags] == [0, 1]
    for op in ("sub", "mul"):
        assert choose(f"{op}_f32_s", DIMS, XT, [0, 0, 0], 4)[0] == f"{op}_f32_tv"
    k, _, _, flags, _, _, smem = choose("scale_f32_s", DIMS, [XT[0], XT[2]], [0, 0], 4)
    assert k == "scale_f32_tv" and smem == 32 * 1024
    # copy: MODE 2 (two stages of the input's tile), 32 KiB
    k, _, _, _, block, _, smem = choose("copy_b32_s", DIMS, [XT[0], XT[2]], [16, 32], 4)
    assert k == "copy_b32_tv" and block == (32, 8) and smem == 4 * 2 * 1 * 64 * 64
    # batched: d0 / d1 strides multiples of 4, and the outer strides of a launch split
    bat = [(1027 * 2052 * 3, 1028 * 2052, 1, 1028), (0, 1027 * 2052, 2052, 1), (1027 * 2052 * 2, 1027 * 2052, 2052, 1)]
    assert choose("add_f32_s", (2, 3) + DIMS[2:], bat, [0, 0, 0], 4)[0] == "add_f32_tv"
    assert choose("add_f32_s", (2, 3) + DIMS[2:], bat, [0, 0, 0], 4, [(8,), (4,), (12,)])[0] == "add_f32_tv"


@pytest.mark.parametrize("case", ["ptr", "ptr_out", "pitch", "direct_pitch", "batch", "outer", "f64", "neg_staged",
                                  "neg_direct", "neg_out", "huge_s3", "huge_s2"])
def test_transposed_choice_falls_back_to_tmap(case):
    """Layouts the vector path cannot run (the kernel would take its slow element loop) go to
    the tmap twins: a pointer off the 16-byte grid, a stride not a multiple of 4 elements,
    8-byte elements, a -1 unit stride, strides past the 32-bit tile offsets."""
    from cudart_kit.memory.strided import VTILE, choose

    strs, ptrs, item, name, outer = [list(XT), [0, 0, 0], 4, "add_f32_s", None]
    dims = DIMS
    l3 = (1 << 30) // VTILE[1]
    if case == "ptr":
        ptrs = [0, 4, 0]
    elif case == "ptr_out":
        ptrs = [0, 0, 8]
    elif case == "pitch":
        strs[0] = (0, 0, 1, 1027)  # the staged input's row pitch
    elif case == "direct_pitch":
        strs[1] = (0, 0, 2053, 1)
    elif case == "batch":
        dims, strs = (1, 2) + DIMS[2:], [(0, 1027 * 1028 + 2, 1, 1028), (0, 4, 2052, 1), (0, 4, 2052, 1)]
    elif case == "outer":
        outer = [(0,), (6,), (0,)]
    elif case == "f64":
        name, item = "add_f64_s", 8
    elif case == "neg_staged":
        strs[0] = (0, 0, -1, 1028)
    elif case == "neg_direct":
        strs[1] = (0, 0, 2052, -1)
    elif case == "neg_out":
        strs[2] = (0, 0, 2052, -1)
    elif case == "huge_s3":
        strs[0] = (0, 0, 1, l3)  # |s3| must stay below 2^30 / TD3
    elif case == "huge_s2":
        strs[1] = (0, 0, (1 << 30) // VTILE[0], 1)
    k, _, _, flags, block, _, smem = choose(name, dims, strs, ptrs, item, outer)
    assert k == name[:-2] + "_t" and block == (32, 4) and smem == 0
    assert sum(int(f) for f in flags) >= 1
    if case == "huge_s3":  # one below the limit is still the vector twin
        strs[0] = (0, 0, 1, l3 - 4)
        assert choose(name, dims, strs, ptrs, item, outer)[0] == "add_f32_tv"


KERNEL_SRC = Path(__file__).resolve().parent.parent / "kernels" / "strided.cu"


def _ternary(expr: str) -> str:
    """A C conditional expression (no parentheses) as a Python one."""
    expr = expr.strip()
    q = expr.find("?")
    if q < 0:
        return expr
    depth = 0
    for i in range(q + 1, len(expr)):
        depth += expr[i] == "?"
        if expr[i] == ":":
            if depth == 0:
                return f"(({_ternary(expr[q + 1:i])}) if ({expr[:q]}) else ({_ternary(expr[i + 1:])}))"
            depth -= 1
    raise ValueError(expr)


def test_host_mirrors_strided_cu():
    """The host's copies of kernels/strided.cu constants: kRows, Shape<T> (tmap's tile), VShape
    and the _tv modes, and the dynamic shared-memory formula vshared_elems (evaluated here)."""
    from cudart_kit.memory import strided as S

    src = KERNEL_SRC.read_text()
    assert int(re.search(r"constexpr int kRows = (\d+);", src).group(1)) == S.ROWS_PER_THREAD
    shape = re.search(r"template <typename T> struct Shape : TShape<(\d+), (\d+), (\d+)> \{\};", src)
    assert tuple(int(v) for v in shape.groups()) == S.tile_shape(4) == S.tile_shape(8) == S.tile_shape(2)
    vshape = re.search(r"using VShape = TShape<(\d+), (\d+), (\d+)>;", src)
    assert tuple(int(v) for v in vshape.groups()) == S.VTILE
    modes = re.search(r"constexpr int kVModeOp = (\d+), kVModeCopy = (\d+);", src)
    assert (int(modes.group(1)), int(modes.group(2))) == (S.VMODES["op"], S.VMODES["copy"])
    # the entry points use them
    assert "vtmap2<T, VShape, kVModeOp>" in src and "vtmap1<T, VShape, kVModeOp>" in src
    assert "vtmap1<T, VShape, kVModeCopy>" in src and "__launch_bounds__(32 * VShape::BY" in src
    body = re.search(r"constexpr int vshared_elems\(int tile, int nin, int nstaged\) \{\s*return ([^;]+);", src)
    formula = _ternary(body.group(1))
    for mode, nin, nst in itertools.product(range(5), (1, 2), (1, 2)):
        if nst <= nin:
            want = 4 * eval(formula, {}, {"MODE": mode, "tile": 4096, "nin": nin, "nstaged": nst})
            assert S.vshared_bytes(mode, 4096, nin, nst) == want, (mode, nin, nst)
    # the kernel's guard compares the launch's bytes against that formula, in T's bytes
    assert "dyn_smem_bytes() < sizeof(T) * vshared_elems<MODE>(S::TD2 * S::TD3, NIN, popcount(MASK))" in src
    # vec_ok's limits are the host's (tv_ok): unit strides +1, others multiples of 4, 2^30 / TD
    ok = src[src.index("__device__ __forceinline__ bool vec_ok("):]
    ok = ok[:ok.index("\n}\n")]
    for part in ("(int64_t(1) << 30) / S::TD2", "(int64_t(1) << 30) / S::TD3", "unit == 1", "& 3) == 0",
                 "(a & 15) == 0"):
        assert part in ok, part


def test_every_transposed_twin_of_4_byte_types_has_a_vector_twin():
    """choose() sends every 4-byte <op>_t layout that passes tv_ok to <op>_tv: the built image
    must hold one for each (skipped when the strided artifact is not built here)."""
    from cudart_kit import build, image

    path = build.artifact_dir() / "strided.fatbin"
    if not path.exists():
        pytest.skip("strided.fatbin not built")
    names = set(image.kernel_names(path))
    t4 = {n for n in names if re.fullmatch(r"(add|sub|mul|axpy|scale)_f32_t|copy_b32_t", n)}
    assert len(t4) == 6
    assert {n + "v" for n in t4} <= names
    assert not any(n.endswith("_tv") and n[:-1] not in t4 for n in names)
