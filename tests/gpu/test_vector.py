"""Vector ops against float64 numpy references on fresh random data at awkward sizes."""

from __future__ import annotations

import numpy as np
import pytest

import cudart_kit as ck
from cudart_kit import ops
from cudart_kit.memory import bfloat16

SIZES = [1, 31, 257, 1000003]
DTYPES = [np.float32, np.float64, np.float16] + ([bfloat16] if bfloat16 is not None else [])
# one rounding of the result, relative to it (unit roundoff of each format, with a little slack)
RTOL = {np.dtype(np.float32): 1.2e-7, np.dtype(np.float64): 2.3e-16, np.dtype(np.float16): 9.8e-4}
if bfloat16 is not None:
    RTOL[bfloat16] = 7.9e-3


def rand(rng, n, dtype):
    # values in [-2, 2] away from exact zero so relative checks mean something
    x = rng.uniform(-2.0, 2.0, n)
    x[np.abs(x) < 1e-3] = 0.5
    return x.astype(dtype)


def poisoned(n, dtype, stream):
    out = ck.empty(n, dtype, stream=stream)
    ops.fill(out, np.nan, stream=stream)
    return out


# smallest subnormal step of each format: results that tiny carry absolute, not relative, error
ATOL = {np.dtype(np.float32): 1.5e-45, np.dtype(np.float64): 5e-324, np.dtype(np.float16): 6e-8}
if bfloat16 is not None:
    ATOL[bfloat16] = 1e-40


def check(got, ref64, dtype, operands=None):
    """got within one rounding of the exact result. ``operands``: magnitude of the terms summed,
    since a float64 reference of float64 data carries its own rounding error of that size."""
    got64 = np.asarray(got, dtype=np.float64)
    assert not np.isnan(got64).any(), "some outputs were never written (still NaN poison)"
    dt = np.dtype(dtype)
    tol = RTOL[dt] * np.abs(ref64) + ATOL[dt]
    if operands is not None and dt == np.float64:
        tol = tol + 2.3e-16 * operands
    bad = np.abs(got64 - ref64) > tol
    assert not bad.any(), (
        f"{bad.sum()} of {bad.size} elements off; first at {np.argmax(bad)}: "
        f"got {got64[bad][0]!r}, want {ref64[bad][0]!r}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("op", ["add", "sub", "mul"])
def test_binary(op, n, dtype, stream, rng):
    xh, yh = rand(rng, n, dtype), rand(rng, n, dtype)
    x, y = ck.to_device(xh, stream=stream), ck.to_device(yh, stream=stream)
    out = poisoned(n, dtype, stream)
    res = getattr(ops, op)(x, y, out, stream=stream)
    assert res is out
    ref = {"add": np.add, "sub": np.subtract, "mul": np.multiply}[op](xh.astype(np.float64), yh.astype(np.float64))
    check(out.to_numpy(stream=stream), ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n", SIZES)
def test_axpy_scale(n, dtype, stream, rng):
    a = float(rng.uniform(-3, 3))
    a_k = np.float64(a) if dtype == np.float64 else np.float64(np.float32(a))  # what the kernel receives
    xh, yh = rand(rng, n, dtype), rand(rng, n, dtype)
    x, y = ck.to_device(xh, stream=stream), ck.to_device(yh, stream=stream)
    out = poisoned(n, dtype, stream)
    terms = np.abs(a_k * xh.astype(np.float64)) + np.abs(yh.astype(np.float64))
    ops.axpy(a, x, y, out, stream=stream)
    check(out.to_numpy(stream=stream), a_k * xh.astype(np.float64) + yh.astype(np.float64), dtype, terms)
    ops.axpy(a, x, y, stream=stream)  # default out: y in place
    check(y.to_numpy(stream=stream), a_k * xh.astype(np.float64) + yh.astype(np.float64), dtype, terms)
    sc = ops.scale(a, x, stream=stream)
    check(sc.to_numpy(stream=stream), a_k * xh.astype(np.float64), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int32, np.int64, np.uint8, np.int16])
@pytest.mark.parametrize("n", SIZES)
def test_fill_copy(n, dtype, stream, rng):
    value = 7 if np.dtype(dtype).kind in "iu" else 1.25
    out = ck.to_device(rng.integers(0, 100, n).astype(dtype), stream=stream)
    ops.fill(out, value, stream=stream)
    got = out.to_numpy(stream=stream)
    assert (got == np.asarray(value, dtype)).all()
    src_h = rng.integers(0, 100, n).astype(dtype)
    src = ck.to_device(src_h, stream=stream)
    dst = ck.to_device(np.full(n, 3, dtype), stream=stream)
    ops.copy(src, dst, stream=stream)
    assert (dst.to_numpy(stream=stream) == src_h).all()


def test_fill_refuses_unrepresentable(stream):
    out = ck.empty(10, np.uint8, stream=stream)
    with pytest.raises(ck.DTypeError, match="does not fit"):
        ops.fill(out, 300, stream=stream)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n", SIZES)
def test_dot(n, dtype, stream, rng):
    xh, yh = rand(rng, n, dtype), rand(rng, n, dtype)
    x, y = ck.to_device(xh, stream=stream), ck.to_device(yh, stream=stream)
    out = ck.to_device(np.array(np.nan, dtype), stream=stream)
    ops.dot(x, y, out, stream=stream)
    got = float(out.to_numpy(stream=stream))
    ref = float(np.dot(xh.astype(np.float64), yh.astype(np.float64)))
    rel = 1e-6 if dtype == np.float32 else 1e-12
    assert abs(got - ref) <= rel * abs(ref)
    # deterministic: same inputs, same bits
    again = float(ops.dot(x, y, stream=stream).to_numpy(stream=stream))
    assert again == got


@pytest.mark.parametrize("dtype", [np.float16] + ([bfloat16] if bfloat16 is not None else []), ids=lambda d: np.dtype(d).name)
def test_dot_half(dtype, stream, rng):
    n = 100003
    xh, yh = rand(rng, n, dtype), rand(rng, n, dtype)
    got = float(np.float64(ops.dot(ck.to_device(xh, stream=stream), ck.to_device(yh, stream=stream), stream=stream)
                           .to_numpy(stream=stream)))
    ref = float(np.dot(xh.astype(np.float64), yh.astype(np.float64)))
    assert abs(got - ref) <= RTOL[np.dtype(dtype)] * abs(ref) + 1e-6


def test_large_2_28(stream, rng):
    """2^28 float32 (1 GiB per array): 64-bit indexing and the full grid."""
    n = 1 << 28
    xh = rng.standard_normal(n, dtype=np.float32)
    yh = rng.standard_normal(n, dtype=np.float32)
    x, y = ck.to_device(xh, stream=stream), ck.to_device(yh, stream=stream)
    out = poisoned(n, np.float32, stream)
    ops.add(x, y, out, stream=stream)
    got = out.to_numpy(stream=stream)
    assert not np.isnan(got).any()
    np.testing.assert_array_equal(got, xh + yh)  # float32 add rounds once, exactly like numpy
    d = float(ops.dot(x, y, stream=stream).to_numpy(stream=stream))
    ref = float(np.dot(xh.astype(np.float64), yh.astype(np.float64)))
    assert abs(d - ref) <= 1e-6 * abs(ref)


class _Offset:
    """A device-array view at an element offset, to exercise the unaligned kernels."""

    def __init__(self, arr, offset, n):
        self._arr = arr
        self.__cuda_array_interface__ = {
            "shape": (n,), "typestr": arr.dtype.str, "data": (arr.ptr + offset * arr.itemsize, False),
            "strides": None, "version": 3,
        }


@pytest.mark.parametrize("n", [31, 1000003])
def test_unaligned_pointers(n, stream, rng):
    xh, yh = rand(rng, n + 1, np.float32), rand(rng, n + 1, np.float32)
    x, y = ck.to_device(xh, stream=stream), ck.to_device(yh, stream=stream)
    out = poisoned(n + 1, np.float32, stream)
    ops.add(_Offset(x, 1, n), _Offset(y, 1, n), _Offset(out, 1, n), stream=stream)
    got = out.to_numpy(stream=stream)
    assert np.isnan(got[0]), "element before the view was written"
    np.testing.assert_array_equal(got[1:], xh[1:] + yh[1:])


def test_timed_op(stream, rng):
    x = ck.to_device(rand(rng, 1 << 20, np.float32), stream=stream)
    out, rec = ops.add(x, x, stream=stream, timed=True)
    rec.sync()
    assert rec.elapsed_ms() > 0
    plain = ops.add(x, x, stream=stream)
    assert isinstance(plain, ck.Array)


def test_checks_before_launch(stream, rng):
    x = ck.to_device(rand(rng, 10, np.float32), stream=stream)
    y64 = ck.to_device(rand(rng, 10, np.float64), stream=stream)
    y11 = ck.to_device(rand(rng, 11, np.float32), stream=stream)
    with pytest.raises(ck.DTypeError, match="float64"):
        ops.add(x, y64, stream=stream)
    with pytest.raises(ck.ShapeError, match=r"\(11,\)"):
        ops.add(x, y11, stream=stream)
    with pytest.raises(ck.DTypeError, match="supports"):
        ops.add(ck.empty(4, np.int32, stream=stream), ck.empty(4, np.int32, stream=stream), stream=stream)
    with pytest.raises(ck.DeviceMismatchError, match="host memory"):
        ops.add(x, np.ones(10, np.float32), stream=stream)
    with pytest.raises(ck.StreamError, match="stream= is required"):
        ops.add(x, x, stream=None)
    with pytest.raises(ValueError, match="partially overlaps"):
        ops.add(_Offset(x, 0, 9), _Offset(x, 0, 9), _Offset(x, 1, 9), stream=stream)
    # everything still works afterwards
    np.testing.assert_allclose(ops.add(x, x, stream=stream).to_numpy(stream=stream), 2 * x.to_numpy(stream=stream))


def test_ops_on_cupy_and_torch(stream, rng):
    cp = pytest.importorskip("cupy")
    torch = pytest.importorskip("torch")
    xh = rand(rng, 1001, np.float32)
    a = cp.asarray(xh)
    t = torch.from_numpy(xh).cuda()
    torch.cuda.synchronize()
    cp.cuda.Device().synchronize()
    out = ops.add(a, t, stream=stream)  # zero-copy CAI inputs from both libraries
    np.testing.assert_array_equal(out.to_numpy(stream=stream), xh + xh)
    # on torch's own stream, result read back by torch in stream order
    ts = torch.cuda.current_stream()
    res = torch.empty_like(t)
    assert ops.mul(t, t, res, stream=ts) is res  # the caller's out, not a kit wrapper
    np.testing.assert_array_equal(res.cpu().numpy(), xh * xh)


def test_foreign_out_comes_back_as_itself(stream, rng):
    """numpy / CuPy / PyTorch return out= itself, and framework code chains on it: so do the ops,
    timed or not."""
    torch = pytest.importorskip("torch")
    n = 1001
    xh, yh = rand(rng, n, np.float32), rand(rng, n, np.float32)
    x, y = torch.from_numpy(xh).cuda(), torch.from_numpy(yh).cuda()
    torch.cuda.synchronize()
    x64, y64 = xh.astype(np.float64), yh.astype(np.float64)
    cases = {
        "add": (lambda o, **k: ops.add(x, y, o, stream=stream, **k), x64 + y64),
        "sub": (lambda o, **k: ops.sub(x, y, o, stream=stream, **k), x64 - y64),
        "mul": (lambda o, **k: ops.mul(x, y, o, stream=stream, **k), x64 * y64),
        "axpy": (lambda o, **k: ops.axpy(0.5, x, y, o, stream=stream, **k), 0.5 * x64 + y64),
        "scale": (lambda o, **k: ops.scale(0.5, x, o, stream=stream, **k), 0.5 * x64),
        "copy": (lambda o, **k: ops.copy(x, o, stream=stream, **k), x64),
        "fill": (lambda o, **k: ops.fill(o, 0.25, stream=stream, **k), np.full(n, 0.25)),
    }
    for name, (call, ref) in cases.items():
        out = torch.full((n,), float("nan"), device="cuda")
        torch.cuda.synchronize()
        assert call(out) is out, name
        res, rec = call(out, timed=True)
        assert res is out and isinstance(rec, ck.TimingRecord), name
        stream.sync()
        check(out.cpu().numpy(), ref, np.float32)
    yy = torch.from_numpy(yh).cuda()
    torch.cuda.synchronize()
    assert ops.axpy(2.0, x, yy, stream=stream) is yy  # default out: y itself
    d = torch.full((), float("nan"), device="cuda")
    torch.cuda.synchronize()
    assert ops.dot(x, y, d, stream=stream) is d
    stream.sync()
    assert abs(float(d.item()) - float(np.dot(x64, y64))) <= 1e-5 * float(np.dot(np.abs(x64), np.abs(y64)))
