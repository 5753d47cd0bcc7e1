"""matmul's fused epilogue (bias=, activation=: kernels/epilogue.cuh) on the GPU, every algorithm,
against float64 numpy: out = act(alpha op(a) op(b) + beta out + bias) at odd shapes, bias per
column, per row and full, as views (stepped, reversed, transposed) and foreign arrays, out a block
of a NaN-poisoned array, transposed operands; and against PyTorch's addmm + relu / gelu(tanh)."""

from __future__ import annotations

import numpy as np
import pytest

import cudart_kit as ck
from cudart_kit.memory import bfloat16
from cudart_kit.ops.gemm import SIMT, matmul

from test_gemm import DT, PORTABLE, SM90, TOL

ALGOS = PORTABLE + SM90 + ["cublas"]
SHAPES = [(1, 1, 1), (127, 129, 131), (1000, 77, 300), (4097, 4095, 33)]


def _gelu(v):
    return 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3)))


ACT = {None: lambda v: v, "relu": lambda v: np.maximum(v, 0.0), "gelu": _gelu}


def rel_fro(got, ref):
    """Frobenius error relative to the reference, or to 1 per element where the reference is
    smaller (relu can zero a whole 1x1 result)."""
    ref = np.asarray(ref, np.float64)
    return float(np.linalg.norm(np.asarray(got, np.float64) - ref) / max(np.linalg.norm(ref), np.sqrt(ref.size)))


def _dtype(algo):
    if algo == "cublas":
        pytest.importorskip("nvmath", reason="nvmath-python (the cublas extra) is not installed")
        return np.float32
    if DT[algo] is None:
        pytest.skip("bfloat16 needs ml_dtypes")
    return DT[algo]


def _bias(kind, M, N, dt, stream, rng):
    """(the bias view matmul gets, its M x N float64 broadcast)."""
    if kind == "col":
        h = rng.uniform(-2, 2, N).astype(dt)
        return ck.to_device(h, stream=stream), np.broadcast_to(h.astype(np.float64), (M, N))
    if kind == "row":
        h = rng.uniform(-2, 2, (M, 1)).astype(dt)
        return ck.to_device(h, stream=stream), np.broadcast_to(h.astype(np.float64), (M, N))
    if kind == "col_stepped_reversed":
        h = rng.uniform(-2, 2, 2 * N + 1).astype(dt)
        return ck.to_device(h, stream=stream)[::-2][:N], np.broadcast_to(h[::-2][:N].astype(np.float64), (M, N))
    if kind == "scalar":  # (1, 1): one value for every element (both strides 0)
        h = rng.uniform(-2, 2, (1, 1)).astype(dt)
        return ck.to_device(h, stream=stream), np.broadcast_to(h.astype(np.float64), (M, N))
    if kind == "full_T":
        h = rng.uniform(-2, 2, (N, M)).astype(dt)
        return ck.to_device(h, stream=stream).T, h.T.astype(np.float64)
    raise AssertionError(kind)


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("bias_kind,activation", [("col", "relu"), ("row", "gelu"), ("col_stepped_reversed", None),
                                                  ("full_T", "gelu"), ("scalar", "gelu"), (None, "relu")])
def test_epilogue_matches_numpy(algo, shape, bias_kind, activation, stream, rng):
    dt = _dtype(algo)
    M, N, K = shape
    ah = rng.uniform(-1, 1, (M, K)).astype(dt)
    bh = rng.uniform(-1, 1, (K, N)).astype(dt)
    ch = rng.uniform(-1, 1, (M, N)).astype(dt)
    a, b = ck.to_device(ah, stream=stream), ck.to_device(bh, stream=stream)
    big = np.full((M + 3, N + 5), np.nan, dt)
    big[1:1 + M, 2:2 + N] = ch
    bigd = ck.to_device(big, stream=stream)
    out = bigd[1:1 + M, 2:2 + N]
    bias, ref_bias = (None, 0.0) if bias_kind is None else _bias(bias_kind, M, N, dt, stream, rng)
    res = matmul(a, b, out, alpha=0.5, beta=-1.25, bias=bias, activation=activation, algo=algo, stream=stream)
    assert res is out
    got = bigd.to_numpy(stream=stream)
    ref = ACT[activation](0.5 * (ah.astype(np.float64) @ bh.astype(np.float64)) - 1.25 * ch.astype(np.float64)
                          + ref_bias)
    assert not np.isnan(got[1:1 + M, 2:2 + N]).any(), "outputs left unwritten (NaN poison)"
    assert rel_fro(got[1:1 + M, 2:2 + N], ref) < TOL.get(algo, 1e-5)
    rest = np.ones(big.shape, bool)
    rest[1:1 + M, 2:2 + N] = False
    assert np.isnan(got[rest].astype(np.float64)).all(), "wrote outside the out block"


@pytest.mark.parametrize("algo", SM90)
@pytest.mark.parametrize("shape", [(127, 129, 131), (4097, 4095, 33), (1000, 1300, 300)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("bias_kind,activation", [("col", "relu"), ("row", "gelu"), ("full_T", "gelu"),
                                                  ("scalar", None), (None, "gelu")])
def test_epilogue_persistent_kernel(algo, shape, bias_kind, activation, stream, rng, monkeypatch):
    """The persistent wide Hopper kernel's epilogue, the checks above: out a block whose rows are
    off 16 bytes, so its threads store (16 bytes where they can, element by element at the edges);
    its TMA stores: test_persistent_tma_store."""
    from test_gemm import force_tile

    force_tile(monkeypatch, 256, True)
    test_epilogue_matches_numpy(algo, shape, bias_kind, activation, stream, rng)


@pytest.mark.parametrize("algo", SM90)
@pytest.mark.parametrize("M,N,K", [(1000, 1300, 300), (257, 520, 64), (1, 4100, 100)])
@pytest.mark.parametrize("bias_kind,activation", [(None, None), ("col", "gelu"), ("row", "relu")])
def test_persistent_tma_store(algo, M, N, K, bias_kind, activation, stream, rng, monkeypatch):
    """out a block of a NaN-poisoned array whose rows are 16-byte aligned and a multiple of 16
    bytes apart: the persistent kernel stores through out's tensor map (TMA), which must clip the
    N and M edges (the poison right of and below the block stays), on 7 CTAs (many tiles each)."""
    from test_gemm import force_tile

    force_tile(monkeypatch, 256, 7)
    dt = _dtype(algo)
    pitch = -(-N // 8) * 8 + 8  # 16-byte rows for 2- and 4-byte types, columns past N to poison
    ah = rng.uniform(-1, 1, (M, K)).astype(dt)
    bh = rng.uniform(-1, 1, (K, N)).astype(dt)
    ch = rng.uniform(-1, 1, (M, N)).astype(dt)
    big = np.full((M + 2, pitch), np.nan, dt)
    big[:M, :N] = ch
    bigd = ck.to_device(big, stream=stream)
    out = bigd[:M, :N]
    assert out.ptr % 16 == 0 and (out.strides[0] % 16 == 0)
    bias, ref_bias = (None, 0.0) if bias_kind is None else _bias(bias_kind, M, N, dt, stream, rng)
    _, rec = matmul(ck.to_device(ah, stream=stream), ck.to_device(bh, stream=stream), out, alpha=0.75, beta=0.5,
                    bias=bias, activation=activation, algo=algo, stream=stream, timed=True)
    assert "256p" in rec.name, rec.name
    got = bigd.to_numpy(stream=stream)
    ref = ACT[activation](0.75 * (ah.astype(np.float64) @ bh.astype(np.float64)) + 0.5 * ch.astype(np.float64)
                          + ref_bias)
    assert not np.isnan(got[:M, :N]).any(), "outputs left unwritten (NaN poison)"
    assert rel_fro(got[:M, :N], ref) < TOL.get(algo, 1e-5)
    assert np.isnan(got[:M, N:].astype(np.float64)).all() and np.isnan(got[M:].astype(np.float64)).all(), \
        "wrote outside the out block"


@pytest.mark.parametrize("algo", ["simt", "simt256", "tf32", "bf16", "cublas"] + SM90)
def test_epilogue_with_transposed_operands(algo, stream, rng):
    dt = _dtype(algo)
    M, N, K = 130, 67, 99
    ah = rng.uniform(-1, 1, (K, M)).astype(dt)
    bh = rng.uniform(-1, 1, (N, K)).astype(dt)
    bias_h = rng.uniform(-1, 1, N).astype(dt)
    a, b = ck.to_device(ah, stream=stream).T, ck.to_device(bh, stream=stream).T
    out = matmul(a, b, bias=ck.to_device(bias_h, stream=stream), activation="gelu", algo=algo, stream=stream)
    ref = _gelu(ah.T.astype(np.float64) @ bh.T.astype(np.float64) + bias_h.astype(np.float64))
    assert rel_fro(out.to_numpy(stream=stream), ref) < TOL.get(algo, 1e-5)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_epilogue_equals_torch_addmm_then_activation(activation, dtype, stream, rng):
    """The documented equivalence: matmul(a, b, bias=c, activation=act) computes what
    torch.addmm(c, a, b) followed by relu / gelu(approximate="tanh") computes, on torch tensors
    passed straight in (in FP32 math the two differ only by rounding)."""
    torch = pytest.importorskip("torch")
    if dtype == "bfloat16" and bfloat16 is None:
        pytest.skip("bfloat16 needs ml_dtypes")
    tdt = getattr(torch, dtype)
    M, N, K = 257, 193, 129
    a = torch.from_numpy(rng.uniform(-1, 1, (M, K)).astype(np.float32)).to("cuda", tdt)
    b = torch.from_numpy(rng.uniform(-1, 1, (K, N)).astype(np.float32)).to("cuda", tdt)
    c = torch.from_numpy(rng.uniform(-1, 1, N).astype(np.float32)).to("cuda", tdt)
    out = torch.empty((M, N), device="cuda", dtype=tdt)
    torch.cuda.synchronize()
    algo = "bf16_sm90" if dtype == "bfloat16" and ck.get_device(0).compute_capability == (9, 0) else "auto"
    assert matmul(a, b, out, bias=c, activation=activation, algo=algo, stream=stream) is out
    stream.sync()
    with torch.no_grad():
        t = torch.addmm(c.float(), a.float(), b.float())
        want = torch.relu(t) if activation == "relu" else torch.nn.functional.gelu(t, approximate="tanh")
        other = torch.nn.functional.gelu(t)  # the erf form, which the kit does not compute
    got = out.float()
    err = float((got - want).norm() / want.norm())
    assert err < (1e-5 if dtype == "float32" else 1e-2), err
    if activation == "gelu" and dtype == "float32":
        assert err < 0.1 * float((got - other).norm() / other.norm()), "closer to the erf form than to tanh"


@pytest.mark.parametrize("algo", [*SIMT, "bf16_sm90", "tf32_sm90"])
def test_plain_call_after_epilogue_uses_no_stale_epilogue(algo, stream, rng):
    """A plain call right after an epilogue call of the same shapes (the cached-plan path) stores
    the plain product: no bias or activation left over in a plan."""
    dt = _dtype(algo)
    if algo in SM90 and ck.get_device(0).compute_capability != (9, 0):
        pytest.skip("sm_90a code")
    M, N, K = 256, 256, 64
    ah = rng.uniform(-1, 1, (M, K)).astype(dt)
    bh = rng.uniform(-1, 1, (K, N)).astype(dt)
    a, b = ck.to_device(ah, stream=stream), ck.to_device(bh, stream=stream)
    out = ck.empty((M, N), dt, stream=stream)
    bias = ck.to_device(np.full(N, 100.0, dt), stream=stream)
    ref = ah.astype(np.float64) @ bh.astype(np.float64)
    for _ in range(2):  # the second plain call goes through a cached plan
        matmul(a, b, out, bias=bias, activation="relu", algo=algo, stream=stream)
        assert rel_fro(out.to_numpy(stream=stream), np.maximum(ref + 100.0, 0)) < TOL[algo]
        matmul(a, b, out, algo=algo, stream=stream)
        assert rel_fro(out.to_numpy(stream=stream), ref) < TOL[algo]
