"""matmul(algo="cublas") over cuBLASLt directly (ops/_cublaslt.py), on the GPU, against float64
numpy: awkward shapes, every stored layout (flags and transposed views), blocks as operands and
as out=, beta != 0 in place, NaN-poisoned outputs, two streams at once, graph capture and replay,
plans and workspaces cached (counted by the module's own counters), host time per cached call.

Tolerances (relative Frobenius error): float32 1e-5 — FP32 accumulation (CUBLAS_COMPUTE_32F); a
TF32 kernel would miss it by two orders of magnitude —, float16 / bfloat16 2e-2."""

from __future__ import annotations

import gc
import time
import weakref

import numpy as np
import pytest

import cudart_kit as ck
from cudart_kit.memory import bfloat16
from cudart_kit.ops import _cublaslt, gemm
from cudart_kit.ops.gemm import matmul

pytest.importorskip("nvmath", reason="nvmath-python (the cublas extra) is not installed")

SHAPES = [(1, 1, 1), (17, 33, 65), (256, 256, 256), (1000, 777, 129)]
DTYPES = [np.float32, np.float16, bfloat16]
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float16): 2e-2}
if bfloat16 is not None:
    TOL[bfloat16] = 2e-2


def rel_fro(got, ref):
    return float(np.linalg.norm(np.asarray(got, np.float64) - ref) / np.linalg.norm(ref))


def _dt(dt):
    if dt is None:
        pytest.skip("bfloat16 needs ml_dtypes")
    return np.dtype(dt)


def _case(rng, M, N, K, dt, ta, tb):
    ah = rng.uniform(-1, 1, (K, M) if ta else (M, K)).astype(dt)
    bh = rng.uniform(-1, 1, (N, K) if tb else (K, N)).astype(dt)
    A, B = ah.astype(np.float64), bh.astype(np.float64)
    return ah, bh, (A.T if ta else A) @ (B.T if tb else B)


@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: "bf16" if d is bfloat16 else np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)],
                         ids=["nn", "tn", "nt", "tt"])
def test_shapes_dtypes_and_transpose_flags(dt, shape, ta, tb, stream, rng):
    dt = _dt(dt)
    M, N, K = shape
    ah, bh, ref = _case(rng, M, N, K, dt, ta, tb)
    a, b = ck.to_device(ah, stream=stream), ck.to_device(bh, stream=stream)
    out = ck.to_device(np.full((M, N), np.nan, dt), stream=stream)  # beta 0: never read
    assert matmul(a, b, out, algo="cublas", transpose_a=ta, transpose_b=tb, stream=stream) is out
    got = out.to_numpy(stream=stream).astype(np.float64)
    assert not np.isnan(got).any(), "outputs left unwritten (NaN poison)"
    assert rel_fro(got, ref) < TOL[dt]


@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: "bf16" if d is bfloat16 else np.dtype(d).name)
def test_beta_in_place_and_transposed_views(dt, stream, rng):
    """out = alpha * op(a) @ op(b) + beta * out with out a block of a larger NaN-poisoned array
    (every byte around it unchanged); a and b transposed views of blocks (read as stored)."""
    dt = _dt(dt)
    M, N, K = 131, 269, 75
    ah = rng.uniform(-1, 1, (K + 3, M + 4)).astype(dt)
    bh = rng.uniform(-1, 1, (N + 2, K + 5)).astype(dt)
    A, B = ck.to_device(ah, stream=stream), ck.to_device(bh, stream=stream)
    a, b = A[1:1 + K, 3:3 + M].T, B[2:2 + N, 1:1 + K].T
    big = np.full((M + 5, N + 7), np.nan, dt)
    ch = rng.uniform(-1, 1, (M, N)).astype(dt)
    big[3:3 + M, 4:4 + N] = ch
    BIG = ck.to_device(big, stream=stream)
    out = BIG[3:3 + M, 4:4 + N]
    assert matmul(a, b, out, alpha=0.75, beta=-1.25, algo="cublas", stream=stream) is out
    got = BIG.to_numpy(stream=stream)
    ref = (0.75 * (ah[1:1 + K, 3:3 + M].T.astype(np.float64) @ bh[2:2 + N, 1:1 + K].T.astype(np.float64))
           - 1.25 * ch.astype(np.float64))
    assert rel_fro(got[3:3 + M, 4:4 + N], ref) < TOL[dt]
    rest = np.ones(got.shape, bool)
    rest[3:3 + M, 4:4 + N] = False
    bits = f"u{dt.itemsize}"  # compare bit patterns: NaN != NaN
    assert np.array_equal(got.view(bits)[rest], big.view(bits)[rest]), "wrote outside the out block"


def test_views_undone_by_flags_and_odd_pitches(stream, rng):
    """x.T with transpose_a (op(x.T) = x) and sub-matrices whose start and pitch are 4 bytes off
    every larger alignment: a plan per alignment, right results."""
    M, N, K = 67, 45, 37
    xh = rng.uniform(-1, 1, (M, K)).astype(np.float32)
    bh = rng.uniform(-1, 1, (K + 2, N + 4)).astype(np.float32)
    X, Bb = ck.to_device(xh, stream=stream), ck.to_device(bh, stream=stream)
    b = Bb[1:1 + K, 1:1 + N]
    assert b.ptr % 16 and b.strides[0] % 16
    out = matmul(X.T, b, algo="cublas", transpose_a=True, stream=stream)
    ref = xh.astype(np.float64) @ bh[1:1 + K, 1:1 + N].astype(np.float64)
    assert rel_fro(out.to_numpy(stream=stream), ref) < 1e-5


def test_second_call_of_a_cached_shape_makes_no_plan(stream, rng):
    """Kit-owned arrays: the first call plans (cublasLt heuristic), every later call of that
    geometry — new arrays, alpha, beta — reuses it, the later ones straight from matmul's
    cached-plan entry."""
    M, N, K = 256, 256, 256
    made = _cublaslt.stats["plans_made"]
    for i in range(4):
        ah, bh, ref = _case(rng, M, N, K, np.float32, False, False)
        ch = rng.uniform(-1, 1, (M, N)).astype(np.float32)
        a, b, c = (ck.to_device(x, stream=stream) for x in (ah, bh, ch))
        assert matmul(a, b, c, alpha=1.0 + i, beta=0.5 * i, algo="cublas", stream=stream) is c
        assert rel_fro(c.to_numpy(stream=stream), (1.0 + i) * ref + 0.5 * i * ch.astype(np.float64)) < 1e-5
        assert _cublaslt.stats["plans_made"] - made <= 1  # 0 when an earlier test planned this geometry
        if i == 0:
            made_after_first, count = _cublaslt.stats["plans_made"], _cublaslt.plan_count()
    assert _cublaslt.stats["plans_made"] == made_after_first and _cublaslt.plan_count() == count
    assert (a.sig, b.sig, c.sig, "cublas", False, False, False) in gemm._fast


def test_two_streams_concurrently(device, rng):
    """Interleaved calls on two streams, each writing its own outputs: every result right; when
    the algorithm needs a workspace, the streams have different ones."""
    M, N, K = 64, 64, 8192  # a long K: cuBLAS often splits it (a workspace)
    s1, s2 = ck.Stream.create(device), ck.Stream.create(device)
    try:
        ah, bh, ref = _case(rng, M, N, K, np.float32, False, False)
        a, b = ck.to_device(ah, stream=s1), ck.to_device(bh, stream=s1)
        s1.sync()
        outs = {s: [ck.to_device(np.full((M, N), np.nan, np.float32), stream=s) for _ in range(8)] for s in (s1, s2)}
        for s in (s1, s2):
            s.sync()
        for i in range(8):
            for s in (s1, s2):
                matmul(a, b, outs[s][i], alpha=1.0 + i, algo="cublas", stream=s)
        for s in (s1, s2):
            for i, o in enumerate(outs[s]):
                assert rel_fro(o.to_numpy(stream=s), (1.0 + i) * ref) < 1e-5
        plan = _cublaslt.plan_for(device, np.dtype(np.float32), M, N, K, 0, 0, K, N, N, a.ptr, b.ptr, outs[s1][0].ptr)
        if plan.ws_bytes:
            w1, w2 = _cublaslt._ws[id(s1)].arr, _cublaslt._ws[id(s2)].arr
            assert w1.ptr != w2.ptr and w1.nbytes >= plan.ws_bytes and w2.nbytes >= plan.ws_bytes
    finally:
        for s in (s1, s2):
            s.sync()
            s.close()


def test_workspace_goes_with_its_stream(device, rng):
    """The per-stream workspace does not keep the stream alive, and is freed once it is gone."""
    M, N, K = 64, 64, 8192
    ah, bh, _ = _case(rng, M, N, K, np.float32, False, False)
    s = ck.Stream.create(device)
    a, b = ck.to_device(ah, stream=s), ck.to_device(bh, stream=s)
    out = ck.empty((M, N), np.float32, stream=s)
    matmul(a, b, out, algo="cublas", stream=s)
    s.sync()
    entry = _cublaslt._ws.get(id(s))
    ref = weakref.ref(s)
    del a, b, out
    s.close()
    del s
    gc.collect()
    assert ref() is None, "the workspace cache keeps the stream alive"
    if entry is not None:
        assert entry.arr.ptr == 0, "the workspace outlived its stream"


@pytest.mark.parametrize("dt", [np.float32, bfloat16], ids=["f32", "bf16"])
def test_graph_capture_and_replay(dt, stream, rng):
    """Two calls captured (the checked path, then the cached plan), replayed 50 times with fresh
    inputs copied in and the first output poisoned; alpha / beta as captured; the graph holds its
    workspace (the capture object dropped, eager calls on the stream in between)."""
    dt = _dt(dt)
    M, N, K = 67, 45, 1031
    tol = TOL[dt]
    a, b = ck.empty((M, K), dt, stream=stream), ck.empty((K, N), dt, stream=stream)
    out1, out2 = ck.empty((M, N), dt, stream=stream), ck.empty((M, N), dt, stream=stream)
    ah, bh, _ = _case(rng, M, N, K, dt, False, False)
    ck.copy(a, ah, stream=stream)
    ck.copy(b, bh, stream=stream)
    matmul(a, b, out1, algo="cublas", stream=stream)  # eager first: the handle exists
    gemm._clear_plans()
    with ck.graph.capture(stream) as cap:
        matmul(a, b, out1, alpha=1.25, algo="cublas", stream=cap.stream)
        matmul(a, b, out2, alpha=-0.5, beta=0.75, algo="cublas", stream=cap.stream)
    g = cap.graph
    assert _cublaslt.plan_count() == 1
    del cap
    gc.collect()
    other = ck.empty((N, M), dt, stream=stream)  # op(b.T) @ op(a.T) = (a @ b).T
    nan = np.full((M, N), np.nan, dt)
    try:
        for i in range(50):
            ah, bh, ref = _case(rng, M, N, K, dt, False, False)
            ch = rng.uniform(-1, 1, (M, N)).astype(dt)
            ck.copy(a, ah, stream=stream)
            ck.copy(b, bh, stream=stream)
            ck.copy(out1, nan, stream=stream)
            ck.copy(out2, ch, stream=stream)
            g.replay(stream)
            matmul(b.T, a.T, other, algo="cublas", stream=stream)  # eager, on the stream's own workspace
            got1, got2 = out1.to_numpy(stream=stream), out2.to_numpy(stream=stream)
            assert rel_fro(other.to_numpy(stream=stream), ref.T) < tol, f"replay {i}: the eager call"
            assert not np.isnan(got1.astype(np.float64)).any(), f"replay {i}: NaN poison left"
            assert rel_fro(got1, 1.25 * ref) < tol, f"replay {i}"
            assert rel_fro(got2, -0.5 * ref + 0.75 * ch.astype(np.float64)) < tol, f"replay {i}"
    finally:
        g.close()
        gemm._clear_plans()


def test_tf32_when_asked(stream, rng):
    ah, bh, ref = _case(rng, 512, 512, 512, np.float32, False, False)
    a, b = ck.to_device(ah, stream=stream), ck.to_device(bh, stream=stream)
    out = matmul(a, b, algo="cublas", allow_tf32=True, stream=stream)
    assert rel_fro(out.to_numpy(stream=stream), ref) < 5e-3


@pytest.mark.parametrize("dt", [np.float32, bfloat16], ids=["f32", "bf16"])
def test_host_time_of_a_cached_call(dt, stream, rng):
    """A smoke bound on the direct path's host cost (the figure is tools/bench_gemm.py's): 200
    cached 256^3 calls queued back to back (fewer than the launch queue holds, so the host never
    waits for the GPU) take well under the ~300 µs per call of the nvmath Matmul path."""
    dt = _dt(dt)
    a, b, c = (ck.to_device(rng.uniform(-1, 1, (256, 256)).astype(dt), stream=stream) for _ in range(3))
    for _ in range(20):
        matmul(a, b, c, algo="cublas", stream=stream)
    stream.sync()
    made = _cublaslt.stats["plans_made"]
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(200):
            matmul(a, b, c, algo="cublas", stream=stream)
        best = min(best, (time.perf_counter() - t0) / 200 * 1e6)
        stream.sync()
    print(f"host time per cached cublas call, 256^3 {dt}: {best:.1f} us")
    assert _cublaslt.stats["plans_made"] == made
    assert best < 50.0
