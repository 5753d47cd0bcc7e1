"""Views (offsets, steps, negative steps, transposes, reshape-views, dtype views, new axes) through
every vector op, every copy direction and both interchange protocols, against float64 numpy on
the host copy; lifetime of views across streams. Fresh random data, poisoned outputs."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

import cudart_kit as ck
from cudart_kit import ops

# name -> (base shape, view function usable on numpy arrays and kit Arrays alike)
VIEWS = {
    "offset": ((1003,), lambda a: a[3:-5]),
    "step3": ((3001,), lambda a: a[::3]),
    "negstep": ((2001,), lambda a: a[::-2]),
    "rowblock": ((97, 65), lambda a: a[10:50]),
    "colblock": ((97, 65), lambda a: a[:, 7:40]),
    "transpose": ((63, 129), lambda a: a.T),
    "block_step_T": ((97, 65), lambda a: a[5:60, 3:50:2].T),
    "reshape_view": ((40, 30), lambda a: a[4:36].reshape(16, 2, 30)),
    "reshape_strided": ((40, 30), lambda a: a[:, :20].reshape(40, 4, 5)),
    "newaxis_neg": ((50, 40), lambda a: a[None, 3:, ::-1]),
    "ellipsis_int": ((6, 50, 40), lambda a: a[..., 2, :]),
    "rank5": ((3, 4, 5, 6, 7), lambda a: a[:, ::2, 1:, ::-1, 1::3]),
    "scalar": ((7, 9), lambda a: a[3, 4:5]),
}
BINARY = ["add", "sub", "mul", "axpy"]
UNARY = ["scale", "copy", "fill"]


def _ref(op, x, y):
    x = x.astype(np.float64)
    y = None if y is None else y.astype(np.float64)
    return {"add": lambda: x + y, "sub": lambda: x - y, "mul": lambda: x * y, "axpy": lambda: 1.5 * x + y,
            "scale": lambda: -0.75 * x, "copy": lambda: x, "fill": lambda: np.full(x.shape, 2.5)}[op]()


def _run(op, x, y, out, s):
    if op == "axpy":
        return ops.axpy(1.5, x, y, out, stream=s)
    if op == "scale":
        return ops.scale(-0.75, x, out, stream=s)
    if op == "copy":
        return ops.copy(x, out, stream=s)
    if op == "fill":
        return ops.fill(out, 2.5, stream=s)
    return getattr(ops, op)(x, y, out, stream=s)


def _pair(rng, shape, dtype, s):
    h = rng.uniform(-2, 2, shape).astype(dtype)
    return h, ck.to_device(h, stream=s)


@pytest.mark.parametrize("out_mode", ["view", "new"])
@pytest.mark.parametrize("op", BINARY + UNARY)
@pytest.mark.parametrize("view", sorted(VIEWS))
def test_op_on_views(stream, rng, view, op, out_mode):
    s = stream
    shape, fn = VIEWS[view]
    hx, dx = _pair(rng, shape, np.float32, s)
    hy, dy = _pair(rng, shape, np.float32, s)
    vx, vy = fn(dx), fn(dy)
    assert vx.shape == fn(hx).shape and vx.strides == fn(hx).strides
    ref = _ref(op, fn(hx), fn(hy))
    if out_mode == "view":
        poison = np.full(shape, np.nan, np.float32)
        dout = ck.to_device(poison, stream=s)
        out = fn(dout)
        got = _run(op, vx, vy, out, s)
        assert got is out
        whole = dout.to_numpy(stream=s)
        mask = np.zeros(shape, bool)
        fn(mask)[...] = True
        assert np.isnan(whole[~mask]).all(), "an op on a view wrote outside the view"
        res = fn(whole)
    else:
        if op == "fill":
            pytest.skip("fill writes into its argument: covered by out_mode=view")
        got = _run(op, vx, vy, None, s)
        if op == "axpy":  # axpy updates y in place by default
            assert got is vy
        else:
            assert got.shape == vx.shape and got.is_c_contiguous and got.base is None
        res = got.to_numpy(stream=s)
    np.testing.assert_allclose(res.astype(np.float64), ref, rtol=2e-7, atol=1e-7)


@pytest.mark.parametrize("view", ["step3", "transpose", "block_step_T", "rank5", "offset"])
def test_dot_on_views(stream, rng, view):
    shape, fn = VIEWS[view]
    hx, dx = _pair(rng, shape, np.float64, stream)
    hy, dy = _pair(rng, shape, np.float64, stream)
    got = ops.dot(fn(dx), fn(dy), stream=stream).to_numpy(stream=stream)
    ref = np.sum(fn(hx).astype(np.float64) * fn(hy))
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_mixed_layouts_in_one_op(stream, rng):
    """x transposed, y a stepped row block, out a column block of a poisoned matrix."""
    s = stream
    hx, dx = _pair(rng, (129, 63), np.float32, s)
    hy, dy = _pair(rng, (200, 129), np.float32, s)
    dout = ck.to_device(np.full((70, 300), np.nan, np.float32), stream=s)
    x, y, out = dx.T, dy[::3][:, :129][:63], dout[3:66, 100:229]
    assert x.shape == y.shape == out.shape == (63, 129)
    ops.add(x, y, out, stream=s)
    whole = dout.to_numpy(stream=s)
    np.testing.assert_allclose(whole[3:66, 100:229], hx.T.astype(np.float64) + hy[::3][:, :129][:63], rtol=2e-7)
    assert np.isnan(whole[:3]).all() and np.isnan(whole[66:]).all() and np.isnan(whole[:, :100]).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float16, "bfloat16"])
def test_strided_ops_other_dtypes(stream, rng, dtype):
    s = stream
    dt = ck.memory.normalize_dtype(dtype)
    hx = rng.uniform(-2, 2, (33, 47)).astype(dt)
    hy = rng.uniform(-2, 2, (47, 33)).astype(dt)
    dx, dy = ck.to_device(hx, stream=s), ck.to_device(hy, stream=s)
    got = ops.mul(dx[:, ::2], dy.T[:, ::2], stream=s).to_numpy(stream=s).astype(np.float64)
    ref = hx[:, ::2].astype(np.float64) * hy.T[:, ::2].astype(np.float64)
    tol = 1e-12 if dt == np.float64 else 1e-2
    np.testing.assert_allclose(got, ref.astype(dt).astype(np.float64), rtol=tol, atol=tol)


def test_dtype_view_and_odd_byte_offsets(stream, rng):
    s = stream
    h = rng.uniform(-2, 2, (20, 16)).astype(np.float64)
    d = ck.to_device(h, stream=s)
    v = d.view(np.float32)[:, 1::2]  # the high words of every float64
    np.testing.assert_array_equal(v.to_numpy(stream=s), h.view(np.float32)[:, 1::2])
    raw = ck.to_device(rng.integers(0, 255, 1001, dtype=np.uint8), stream=s)
    odd = raw[3:803].view(np.float32)  # a float32 view at a 3-byte offset
    assert odd.ptr % 4 == 3
    np.testing.assert_array_equal(odd.to_numpy(stream=s).view(np.uint8), raw.to_numpy(stream=s)[3:803])
    with pytest.raises(ck.ShapeError, match="not 4-byte aligned"):
        ops.add(odd, odd, stream=s)
    # a copy moves the bytes of a misaligned view (byte-wise kernel or memcpy)
    dst = ck.to_device(np.full(200, np.nan, np.float32), stream=s)
    ck.copy(dst, odd, stream=s)
    np.testing.assert_array_equal(dst.to_numpy(stream=s).view(np.uint8), raw.to_numpy(stream=s)[3:803])


@pytest.mark.parametrize("src_kind", ["numpy", "device", "pinned", "managed"])
@pytest.mark.parametrize("dst_kind", ["numpy", "device", "pinned", "managed"])
@pytest.mark.parametrize("layout", ["rowblock", "colblock", "transpose", "negstep", "block_step_T"])
def test_copies_between_layouts(stream, rng, src_kind, dst_kind, layout):
    if src_kind == "numpy" and dst_kind == "numpy":
        pytest.skip("host to host is numpy's job")
    s = stream
    shape, fn = VIEWS[layout]
    hs = rng.uniform(-2, 2, shape).astype(np.float32)
    src_base = hs if src_kind == "numpy" else ck.to_device(hs, stream=s, kind=src_kind)
    poison = np.full(shape, np.nan, np.float32)
    dst_base = poison.copy() if dst_kind == "numpy" else ck.to_device(poison, stream=s, kind=dst_kind)
    src, dst = fn(src_base), fn(dst_base)
    ck.copy(dst, src, stream=s)
    s.sync()
    whole = dst_base if dst_kind == "numpy" else dst_base.to_numpy(stream=s)
    np.testing.assert_array_equal(fn(whole), fn(hs))
    mask = np.zeros(shape, bool)
    fn(mask)[...] = True
    assert np.isnan(whole[~mask]).all()


@pytest.mark.parametrize("layout", ["rowblock", "transpose", "negstep", "rank5", "newaxis_neg"])
def test_contiguous_to_and_from_views(stream, rng, layout):
    s = stream
    shape, fn = VIEWS[layout]
    h = rng.uniform(-2, 2, shape).astype(np.float32)
    d = ck.to_device(h, stream=s)
    v = fn(d)
    np.testing.assert_array_equal(v.to_numpy(stream=s), fn(h))       # gather D2H
    host_view = np.empty(fn(h).shape, np.float32)[..., ::-1] if fn(h).ndim else np.empty((), np.float32)
    ck.copy(host_view, v, stream=s)                                    # into a strided numpy array
    np.testing.assert_array_equal(host_view, fn(h))
    dense = ck.empty(v.shape, np.float32, stream=s)
    ck.copy(dense, v, stream=s)
    np.testing.assert_array_equal(dense.to_numpy(stream=s), fn(h))
    # scatter back into a view of a fresh poisoned base from a strided numpy source
    back = ck.to_device(np.full(shape, np.nan, np.float32), stream=s)
    ck.copy(fn(back), np.ascontiguousarray(fn(h))[..., ::-1][..., ::-1], stream=s)
    np.testing.assert_array_equal(fn(back.to_numpy(stream=s)), fn(h))


class _Broadcast:
    """A CAI exporter of a row broadcast 8 times (stride 0), as numpy broadcast_to would."""

    def __init__(self, a):
        self.__cuda_array_interface__ = {"shape": (8, 8), "strides": (0, 4), "typestr": "<f4",
                                         "data": (a.ptr, False), "version": 3}


def test_copy_refusals(stream):
    s = stream
    a = ck.empty((8, 8), np.float32, stream=s)
    with pytest.raises(ValueError, match="overlap"):
        ck.copy(a[1:], a[:-1], stream=s)
    with pytest.raises(ck.ShapeError, match="different shapes need both sides C-contiguous"):
        ck.copy(ck.empty(32, np.float32, stream=s), a[:, :4], stream=s)
    with pytest.raises(ck.ShapeError, match="8 elements"):
        ck.copy(ck.empty(9, np.float32, stream=s), a[0], stream=s)
    with pytest.raises(ValueError, match="overlap"):  # interleaved rows: the memory ranges overlap
        ck.copy(a[::2], a[1::2], stream=s)
    with pytest.raises(ValueError, match="overlap"):  # the same start, another layout: would race
        ck.copy(a, a.T, stream=s)
    ck.copy(a, a, stream=s)  # the very same view: a copy onto itself, allowed
    ck.copy(a.reshape(64), a, stream=s)  # the same contiguous bytes under another shape: allowed
    with pytest.raises(ck.ShapeError, match="zero stride"):
        ck.copy(_Broadcast(a), a, stream=s)
    np.testing.assert_array_equal(a.to_numpy(stream=s).shape, (8, 8))  # still usable


def test_views_through_dlpack_and_cai(stream, rng):
    torch = pytest.importorskip("torch")
    cupy = pytest.importorskip("cupy")
    s = stream
    h = rng.uniform(-2, 2, (37, 53)).astype(np.float32)
    d = ck.to_device(h, stream=s)
    s.sync()
    for fn in (lambda a: a.T, lambda a: a[3:30:2, 1::3], lambda a: a[5], lambda a: a[None, :, 7], lambda a: a[::-2, 3:-4]):
        v = fn(d)
        if any(st < 0 for st in v.strides):
            with pytest.raises(BufferError, match="negative stride"):
                torch.from_dlpack(v)
        else:
            np.testing.assert_array_equal(torch.from_dlpack(v).cpu().numpy(), fn(h))
        np.testing.assert_array_equal(cupy.asnumpy(cupy.asarray(v)), fn(h))  # CAI: any strides
    # foreign strided arrays come in as strided views
    tt = torch.from_numpy(h).cuda()
    torch.cuda.synchronize()
    for ft, ref in ((tt.t(), h.T), (tt[::2, 1::3], h[::2, 1::3])):
        a = ck.asarray(ft, stream=s)
        assert a.shape == ref.shape and not a.is_c_contiguous
        np.testing.assert_array_equal(a.to_numpy(stream=s), ref)
        out = ops.scale(2.0, ft, stream=s)
        np.testing.assert_allclose(out.to_numpy(stream=s), 2.0 * ref.astype(np.float64), rtol=1e-7)
    cx = cupy.asarray(h)[::-1, 2:40]
    cupy.cuda.runtime.deviceSynchronize()
    np.testing.assert_array_equal(ck.asarray(cx, stream=s).to_numpy(stream=s), h[::-1, 2:40])


def test_view_outlives_its_base(stream, rng):
    s = stream
    h = rng.uniform(-2, 2, (64, 64)).astype(np.float32)
    d = ck.to_device(h, stream=s)
    v = d[8:40, ::-2].T
    del d
    gc.collect()
    assert v.base is not None and not v.is_closed
    np.testing.assert_array_equal(v.to_numpy(stream=s), h[8:40, ::-2].T)
    got = ops.add(v, v, stream=s).to_numpy(stream=s)
    np.testing.assert_allclose(got, 2 * h[8:40, ::-2].T.astype(np.float64))


def test_close_on_a_base_or_view_closes_all(stream):
    s = stream
    d = ck.zeros((10, 10), np.float32, stream=s)
    v1, v2 = d[2:5], d.T
    vv = v1[:, ::2]
    v2.close()  # closing a view frees the allocation for all of them
    for a, name in ((d, "x"), (v1, "x"), (vv, "x")):
        assert a.is_closed
        with pytest.raises(ck.ClosedError, match="closed"):
            ops.add(a, a, stream=s)
    with pytest.raises(ck.ClosedError):
        vv[0]
    with pytest.raises(ck.ClosedError):
        ck.copy(np.empty((3, 5), np.float32), vv, stream=s)
    d.close()  # idempotent


def test_view_free_waits_for_other_stream(device, rng):
    """The base and its view are dropped while a second stream, held by a blocking host callback,
    still has to read the view; memory of the same size is then allocated and overwritten on the
    allocation stream. The second stream must still read the original values."""
    from cudart_kit.module import load_kit_module

    load_kit_module("vector").preload(device)
    load_kit_module("strided").preload(device)
    s, side = ck.Stream.create(device), ck.Stream.create(device)
    try:
        n = 1 << 20
        h = rng.uniform(-2, 2, (n // 1024, 1024)).astype(np.float32)
        base = ck.to_device(h, stream=s)
        view = base[:, ::2]
        result = ck.empty(view.shape, np.float32, stream=side)
        s.sync()
        gate, entered = threading.Event(), threading.Event()
        errors = side.add_callback(lambda: (entered.set(), gate.wait(20)))
        ops.scale(3.0, view, result, stream=side)
        del base, view
        gc.collect()
        assert entered.wait(10)
        reused = [ck.empty((n // 1024, 1024), np.float32, stream=s) for _ in range(4)]
        for r in reused:
            ops.fill(r, -7.0, stream=s)
        s.sync()
        gate.set()
        side.sync()
        assert errors == []
        np.testing.assert_allclose(result.to_numpy(stream=side), 3.0 * h[:, ::2].astype(np.float64), rtol=1e-7)
    finally:
        gate.set()
        s.sync()
        side.sync()
        s.close()
        side.close()


def test_index_errors_leave_array_usable(stream):
    d = ck.zeros((4, 5), np.float32, stream=stream)
    with pytest.raises(IndexError, match="out of bounds for axis 1"):
        d[0, 5]
    with pytest.raises(IndexError, match="advanced indexing"):
        d[[0, 1]]
    with pytest.raises(TypeError, match="no item assignment"):
        d[0] = 1.0
    with pytest.raises(ck.ShapeError, match="without a copy"):
        d.T.reshape(20)
    assert d[1:3].reshape(10).shape == (10,)
    np.testing.assert_array_equal(d.to_numpy(stream=stream), 0)


# --- transposed operands: the _tv twins (4-byte types, 16-byte accesses) and their fallbacks ------
# An operand of logical shape (..., R, C) lives inside a larger NaN-poisoned (or random) base:
# one row of margin above and below, columns from c0 on, a row pitch past the view. "aligned":
# pitch a multiple of 4 elements and c0 = 4 (every pointer and stride on the 16-byte grid: the
# _tv twins); "odd": odd pitch, c0 = 1 (misaligned pointers, odd strides: the tmap twins).
# Transposed operands are stored (..., C, R) and viewed with their last two axes swapped.
TV_SIZES = [(1027, 2053), (70, 130), (1, 1029), (1029, 1), (3, 1027, 2053), (2, 65, 63)]


def _tv_operand(rng, s, shape, transposed: bool, aligned: bool, poison: bool = False):
    """(kit view, host copy of its values, device base, host mask of the view in the base)."""
    lead, inner = tuple(shape[:-2]), tuple(shape[-2:])
    if transposed:
        inner = inner[::-1]
    pitch = -(-(inner[1] + 4) // 4) * 4 if aligned else (inner[1] + 3) | 1
    c0 = 4 if aligned else 1
    bshape = lead + (inner[0] + 2, pitch)
    host = np.full(bshape, np.nan, np.float32) if poison else rng.uniform(-2, 2, bshape).astype(np.float32)
    base = ck.to_device(host, stream=s)
    key = (Ellipsis, slice(1, 1 + inner[0]), slice(c0, c0 + inner[1]))
    mask = np.zeros(bshape, bool)
    mask[key] = True
    v, hv = base[key], host[key]
    if transposed:
        axes = tuple(range(len(lead))) + (len(lead) + 1, len(lead))
        v, hv = v.transpose(*axes), hv.transpose(axes)
    assert v.shape == tuple(shape) and hv.shape == tuple(shape)
    return v, hv, base, mask


def _tv_expect(rec, op_kernel: str, shape, aligned: bool):
    """The kernel a timed launch ran: <op>_tv for aligned layouts with a real transpose, the
    tmap twin <op>_t for odd pitches (degenerate shapes collapse to other kernels)."""
    if min(shape[-2:]) > 1:
        assert rec.meta.get("kernel") == op_kernel + ("_tv" if aligned else "_t"), rec.meta


def _tv_check_out(base, mask, s):
    whole = base.to_numpy(stream=s)
    assert np.isnan(whole[~mask]).all(), "a transposed op wrote outside its output view"
    return whole


@pytest.mark.parametrize("aligned", [True, False], ids=["aligned", "odd"])
@pytest.mark.parametrize("which", ["x", "y", "out"])
@pytest.mark.parametrize("op", BINARY)
@pytest.mark.parametrize("shape", TV_SIZES, ids=lambda sh: "x".join(map(str, sh)))
def test_transposed_binary_ops(stream, rng, shape, op, which, aligned):
    """x.T + y, x + y.T, x + y -> out.T (and sub, mul, axpy) at edge-tile sizes, batched too,
    into a poisoned output view: values against numpy, nothing outside the view written."""
    s = stream
    x, hx, _, _ = _tv_operand(rng, s, shape, which == "x", aligned)
    y, hy, _, _ = _tv_operand(rng, s, shape, which == "y", aligned)
    out, _, obase, omask = _tv_operand(rng, s, shape, which == "out", aligned, poison=True)
    if op == "axpy":
        got, rec = ops.axpy(1.5, x, y, out, stream=s, timed=True)
    else:
        got, rec = getattr(ops, op)(x, y, out, stream=s, timed=True)
    assert got is out
    whole = _tv_check_out(obase, omask, s)
    res = whole[omask].reshape(out.shape if which != "out" else _swap(shape))
    res = _swap_back(res) if which == "out" else res
    np.testing.assert_allclose(res.astype(np.float64), _ref(op, hx, hy), rtol=2e-7, atol=1e-6)
    _tv_expect(rec, f"{op}_f32", shape, aligned)


def _swap(shape):
    return tuple(shape[:-2]) + (shape[-1], shape[-2])


def _swap_back(a):
    return np.swapaxes(a, -1, -2)


@pytest.mark.parametrize("aligned", [True, False], ids=["aligned", "odd"])
@pytest.mark.parametrize("op", ["scale", "copy"])
@pytest.mark.parametrize("shape", TV_SIZES, ids=lambda sh: "x".join(map(str, sh)))
def test_transposed_unary_ops(stream, rng, shape, op, aligned):
    """scale / copy of a transposed view into a poisoned output view (copies bit-exact)."""
    s = stream
    x, hx, _, _ = _tv_operand(rng, s, shape, True, aligned)
    out, _, obase, omask = _tv_operand(rng, s, shape, False, aligned, poison=True)
    if op == "scale":
        got, rec = ops.scale(-0.75, x, out, stream=s, timed=True)
    else:
        got, rec = ops.copy(x, out, stream=s, timed=True)
    assert got is out
    whole = _tv_check_out(obase, omask, s)
    res = whole[omask].reshape(shape)
    if op == "copy":
        np.testing.assert_array_equal(res.view(np.uint32), np.ascontiguousarray(hx).view(np.uint32))
    else:
        np.testing.assert_allclose(res.astype(np.float64), _ref(op, hx, None), rtol=2e-7, atol=1e-7)
    _tv_expect(rec, "scale_f32" if op == "scale" else "copy_b32", shape, aligned)


@pytest.mark.parametrize("case", ["x", "out", "scale", "copy", "ck_copy"])
def test_transposed_large(stream, rng, case):
    """8191 x 4097 (edge tiles along both axes, many tiles per block of the capped grid)."""
    s = stream
    shape = (8191, 4097)
    x, hx, _, _ = _tv_operand(rng, s, shape, case != "out", True)
    out, _, obase, omask = _tv_operand(rng, s, shape, case == "out", True, poison=True)
    if case in ("x", "out"):
        y, hy, _, _ = _tv_operand(rng, s, shape, False, True)
        _, rec = ops.add(x, y, out, stream=s, timed=True)
        ref = _ref("add", hx, hy)
        # x + y -> out.T stages both inputs: 2 buffers x 2 tiles x 64 x 64 x 4 bytes (64 KiB)
        assert rec.meta["shared_mem_bytes"] == (64 * 1024 if case == "out" else 32 * 1024)
        assert rec.meta["block"] == (32, 8, 1)
    elif case == "scale":
        _, rec = ops.scale(-0.75, x, out, stream=s, timed=True)
        ref = _ref("scale", hx, None)
    elif case == "copy":
        _, rec = ops.copy(x, out, stream=s, timed=True)
        ref = hx
    else:
        ck.copy(out, x, stream=s)
        rec, ref = None, hx
    whole = _tv_check_out(obase, omask, s)
    res = whole[omask].reshape(_swap(shape) if case == "out" else shape)
    if case == "out":
        res = _swap_back(res)
    if case in ("copy", "ck_copy"):
        np.testing.assert_array_equal(res, ref)
    else:
        np.testing.assert_allclose(res.astype(np.float64), ref, rtol=2e-7, atol=1e-7)
    if rec is not None:
        assert rec.meta["kernel"].endswith("_tv"), rec.meta
        assert rec.sync().elapsed_ms() >= 0


def test_transposed_fallbacks_pick_tmap(stream, rng):
    """Layouts the vector twins cannot run get the tmap twins and stay correct: float64, a -1
    unit stride (a transposed input reversed along its rows), a misaligned output pointer; a
    negative row step of a transposed input and an aligned output view keep the vector twin."""
    s = stream
    hx = rng.uniform(-2, 2, (128, 72))
    hy = rng.uniform(-2, 2, (72, 128))
    dx, dy = ck.to_device(hx, stream=s), ck.to_device(hy, stream=s)
    got, rec = ops.add(dx.T, dy, stream=s, timed=True)
    np.testing.assert_allclose(got.to_numpy(stream=s), hx.T + hy, rtol=1e-15)
    assert rec.meta["kernel"] == "add_f64_t"
    hx32, hy32 = hx.astype(np.float32), hy.astype(np.float32)
    fx, fy = ck.to_device(hx32, stream=s), ck.to_device(hy32, stream=s)
    got, rec = ops.add(fx.T, fy, stream=s, timed=True)
    np.testing.assert_allclose(got.to_numpy(stream=s), hx32.T + hy32, rtol=2e-7)
    assert rec.meta["kernel"] == "add_f32_tv"
    got, rec = ops.add(fx[:, ::-1].T, fy, stream=s, timed=True)  # the staged input has s2 == -1
    np.testing.assert_allclose(got.to_numpy(stream=s), hx32[:, ::-1].T + hy32, rtol=2e-7)
    assert rec.meta["kernel"] == "add_f32_t"
    # a negative row step of the staged input (s2 == +1, s3 == -72): the vector twin
    got, rec = ops.add(fx[::-1].T, fy, stream=s, timed=True)
    np.testing.assert_allclose(got.to_numpy(stream=s), hx32[::-1].T + hy32, rtol=2e-7)
    assert rec.meta["kernel"] == "add_f32_tv"
    for c0, kernel in [(1, "add_f32_t"), (4, "add_f32_tv")]:
        # an output view of row pitch 136 (aligned) at column c0: off / on the 16-byte grid
        obase = ck.to_device(np.full((73, 136), np.nan, np.float32), stream=s)
        got, rec = ops.add(fx.T, fy, obase[1:, c0:c0 + 128], stream=s, timed=True)
        whole = obase.to_numpy(stream=s)
        np.testing.assert_allclose(whole[1:, c0:c0 + 128], hx32.T + hy32, rtol=2e-7)
        assert np.isnan(whole[0]).all() and np.isnan(whole[:, :c0]).all() and np.isnan(whole[:, c0 + 128:]).all()
        assert rec.meta["kernel"] == kernel
