"""Matmul kernels against float64 numpy on fresh random inputs, poisoned outputs, odd shapes."""

from __future__ import annotations

import numpy as np
import pytest

import cudart_kit as ck
from cudart_kit.memory import bfloat16
from cudart_kit.ops.gemm import matmul

ODD = [(1, 1, 1), (1, 4096, 1), (127, 129, 131), (1000, 1, 1000), (4097, 4095, 33)]
TOL = {"naive": 1e-5, "tiled": 1e-5, "simt": 1e-5, "simt16": 1e-5, "tf32": 5e-3, "bf16": 2e-2, "fp16": 2e-2}
DT = {"naive": np.float32, "tiled": np.float32, "simt": np.float32, "simt16": np.float32, "tf32": np.float32,
      "bf16": bfloat16, "fp16": np.float16}


def rel_fro(got, ref):
    return float(np.linalg.norm(np.asarray(got, np.float64) - ref) / np.linalg.norm(ref))


def run(algo, M, N, K, stream, rng, alpha=1.0, beta=0.0, ta=False, tb=False):
    if DT[algo] is None:
        pytest.skip("bfloat16 needs ml_dtypes")
    dt = DT[algo]
    ah = rng.uniform(-1, 1, (K, M) if ta else (M, K)).astype(dt)
    bh = rng.uniform(-1, 1, (N, K) if tb else (K, N)).astype(dt)
    ch = rng.uniform(-1, 1, (M, N)).astype(dt)
    a, b = ck.to_device(ah, stream=stream), ck.to_device(bh, stream=stream)
    out = ck.to_device(ch if beta else np.full((M, N), np.nan, dt), stream=stream)
    res = matmul(a, b, out, alpha=alpha, beta=beta, algo=algo, transpose_a=ta, transpose_b=tb, stream=stream)
    assert res is out
    got = out.to_numpy(stream=stream).astype(np.float64)
    A = ah.astype(np.float64).T if ta else ah.astype(np.float64)
    B = bh.astype(np.float64).T if tb else bh.astype(np.float64)
    ref = alpha * (A @ B) + (beta * ch.astype(np.float64) if beta else 0.0)
    assert not np.isnan(got).any(), "outputs left unwritten (NaN poison)"
    return rel_fro(got, ref)


@pytest.mark.parametrize("algo", ["naive", "tiled", "simt", "simt16", "tf32", "bf16", "fp16"])
@pytest.mark.parametrize("shape", ODD, ids=lambda s: "x".join(map(str, s)))
def test_odd_shapes(algo, shape, stream, rng):
    assert run(algo, *shape, stream, rng) < TOL[algo]


@pytest.mark.parametrize("algo", ["tiled", "simt", "simt16", "tf32", "bf16"])
def test_k_4096_alpha_beta(algo, stream, rng):
    assert run(algo, 256, 384, 4096, stream, rng, alpha=0.75, beta=-1.5) < TOL[algo]


@pytest.mark.parametrize("algo", ["naive", "tiled", "tf32", "bf16", "fp16"])
@pytest.mark.parametrize("ta,tb", [(True, False), (False, True), (True, True)])
def test_transposed(algo, ta, tb, stream, rng):
    assert run(algo, 130, 67, 99, stream, rng, alpha=2.0, ta=ta, tb=tb) < TOL[algo]


def test_auto_and_views(stream, rng):
    ah = rng.uniform(-1, 1, (300, 200)).astype(np.float32)
    bh = rng.uniform(-1, 1, (200, 100)).astype(np.float32)
    a, b = ck.to_device(ah, stream=stream), ck.to_device(bh, stream=stream)
    c = matmul(a, b, stream=stream)                       # auto: simt, new output
    assert rel_fro(c.to_numpy(stream=stream), ah.astype(np.float64) @ bh) < 1e-5
    cp = pytest.importorskip("cupy")
    ca = cp.asarray(a)
    t = matmul(ca.T, ca, stream=stream)                   # a column-major view: read transposed
    assert rel_fro(t.to_numpy(stream=stream), ah.T.astype(np.float64) @ ah) < 1e-5
    sub = matmul(ca[10:74, 20:90], cp.asarray(b)[20:90, :], stream=stream)  # leading dimensions
    assert rel_fro(sub.to_numpy(stream=stream), ah[10:74, 20:90].astype(np.float64) @ bh[20:90]) < 1e-5


def test_errors_before_launch(stream, rng):
    a = ck.to_device(rng.uniform(-1, 1, (8, 5)).astype(np.float32), stream=stream)
    b = ck.to_device(rng.uniform(-1, 1, (6, 4)).astype(np.float32), stream=stream)
    with pytest.raises(ck.ShapeError, match="inner dimensions"):
        matmul(a, b, stream=stream)
    with pytest.raises(ck.DTypeError, match="float64"):
        matmul(a, ck.to_device(np.ones((5, 4)), stream=stream), stream=stream)
    with pytest.raises(ValueError, match="algo"):
        matmul(a, a, algo="fastest", stream=stream)
    with pytest.raises(ValueError, match="beta"):
        matmul(a, ck.to_device(np.ones((5, 4), np.float32), stream=stream), beta=1.0, stream=stream)
    ok = matmul(a, ck.to_device(np.ones((5, 4), np.float32), stream=stream), stream=stream)
    assert ok.shape == (8, 4)


@pytest.mark.parametrize("dt,tol", [(np.float32, 1e-5), (np.float16, 2e-2)] + ([(bfloat16, 2e-2)] if bfloat16 is not None else []))
def test_cublas_backend(dt, tol, stream, rng):
    pytest.importorskip("nvmath", reason="nvmath-python (the cublas extra) is not installed")
    M, N, K = 127, 129, 131
    ah, bh = rng.uniform(-1, 1, (M, K)).astype(dt), rng.uniform(-1, 1, (N, K)).astype(dt)
    ch = rng.uniform(-1, 1, (M, N)).astype(dt)
    a, b, c = (ck.to_device(x, stream=stream) for x in (ah, bh, ch))
    out = matmul(a, b, c, alpha=0.5, beta=2.0, transpose_b=True, algo="cublas", stream=stream)
    assert out is c
    ref = 0.5 * ah.astype(np.float64) @ bh.astype(np.float64).T + 2.0 * ch.astype(np.float64)
    assert rel_fro(c.to_numpy(stream=stream), ref) < tol
    fresh = matmul(a, b, transpose_b=True, algo="cublas", stream=stream)
    assert rel_fro(fresh.to_numpy(stream=stream), ah.astype(np.float64) @ bh.astype(np.float64).T) < tol


def test_cublas_missing_is_clear(stream, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_nvmath(name, *args, **kwargs):
        if name.startswith("nvmath"):
            raise ImportError("simulated: nvmath not installed")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nvmath)
    a = ck.to_device(np.ones((4, 4), np.float32), stream=stream)
    with pytest.raises(ck.CudaKitError, match=r"cudart-kit\[cublas\]"):
        matmul(a, a, algo="cublas", stream=stream)
