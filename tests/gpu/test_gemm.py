"""Matmul kernels against float64 numpy on fresh random inputs, poisoned outputs, odd shapes."""

from __future__ import annotations

import numpy as np
import pytest

import cudart_kit as ck
from cudart_kit.memory import bfloat16
from cudart_kit.ops._gemm_geometry import SIMT256, layout_name
from cudart_kit.ops.gemm import SIMT, matmul, simt_tile

ODD = [(1, 1, 1), (1, 4096, 1), (127, 129, 131), (1000, 1, 1000), (4097, 4095, 33)]
TOL = {"naive": 1e-5, "tiled": 1e-5, **{k: 1e-5 for k in SIMT}, "tf32": 5e-3, "bf16": 2e-2, "fp16": 2e-2,
       "tf32_sm90": 5e-3, "bf16_sm90": 2e-2, "fp16_sm90": 2e-2}
DT = {"naive": np.float32, "tiled": np.float32, **{k: np.float32 for k in SIMT}, "tf32": np.float32,
      "bf16": bfloat16, "fp16": np.float16, "tf32_sm90": np.float32, "bf16_sm90": bfloat16, "fp16_sm90": np.float16}
SM90 = ["tf32_sm90", "bf16_sm90", "fp16_sm90"]
PORTABLE = ["naive", "tiled", *SIMT, "tf32", "bf16", "fp16"]


@pytest.fixture(autouse=True)
def _hopper_only(request, device):
    algo = getattr(request.node, "callspec", None) and request.node.callspec.params.get("algo")
    if algo in SM90 and device.compute_capability != (9, 0):
        pytest.skip(f"{algo} is sm_90a code; this device is {device.compute_capability}")


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


@pytest.mark.parametrize("algo", PORTABLE + SM90)
@pytest.mark.parametrize("shape", ODD, ids=lambda s: "x".join(map(str, s)))
def test_odd_shapes(algo, shape, stream, rng):
    assert run(algo, *shape, stream, rng) < TOL[algo]


@pytest.mark.parametrize("algo", ["tiled", *SIMT, "tf32", "bf16"] + SM90)
def test_k_4096_alpha_beta(algo, stream, rng):
    assert run(algo, 256, 384, 4096, stream, rng, alpha=0.75, beta=-1.5) < TOL[algo]


@pytest.mark.parametrize("algo", ["naive", "tiled", "simt", "simt256", "tf32", "bf16", "fp16"] + SM90)
@pytest.mark.parametrize("ta,tb", [(True, False), (False, True), (True, True)])
def test_transposed(algo, ta, tb, stream, rng):
    assert run(algo, 130, 67, 99, stream, rng, alpha=2.0, ta=ta, tb=tb) < TOL[algo]


@pytest.mark.parametrize("algo", SIMT)
def test_simt_unaligned_pitch(algo, stream, rng):
    """Pitches that are not multiples of 4 floats take the scalar-copy path (vec_ok = 0)."""
    cp = pytest.importorskip("cupy")
    ah = rng.uniform(-1, 1, (150, 99)).astype(np.float32)
    bh = rng.uniform(-1, 1, (99, 141)).astype(np.float32)
    a, b = cp.asarray(ah)[1:, 2:], cp.asarray(bh)[2:, 1:]
    out = matmul(a, b, algo=algo, stream=stream)
    assert rel_fro(out.to_numpy(stream=stream), ah[1:, 2:].astype(np.float64) @ bh[2:, 1:]) < 1e-5


@pytest.mark.parametrize("shape", [(1000, 1000, 40), (2048, 2048, 40), (130, 33000, 17)], ids=lambda s: "x".join(map(str, s)))
def test_simt_picks_tile_by_shape(shape, stream, rng, device):
    """algo="simt" (what auto runs for float32) launches the kernel simt_tile names for this GPU,
    and the result is right whichever it is."""
    M, N, K = shape
    ah = rng.uniform(-1, 1, (M, K)).astype(np.float32)
    bh = rng.uniform(-1, 1, (K, N)).astype(np.float32)
    out, rec = matmul(ck.to_device(ah, stream=stream), ck.to_device(bh, stream=stream), algo="simt", stream=stream,
                      timed=True)
    assert rec.name.startswith(f"gemm_{simt_tile(M, N, device.multiprocessor_count)}_"), rec.name
    assert rel_fro(out.to_numpy(stream=stream), ah.astype(np.float64) @ bh) < 1e-5


@pytest.mark.parametrize("algo", SIMT)
@pytest.mark.parametrize("col0", [1, 4], ids=["c-unaligned", "c-aligned"])
def test_simt_out_view(algo, col0, stream, rng):
    """out= a view into a wider matrix: 16-byte stores of C only where its start and pitch allow
    (col0 = 1 shifts the start by 4 bytes); the columns around the view stay untouched."""
    cp = pytest.importorskip("cupy")
    M, N, K = 133, 71, 45  # pitch 84 floats (16-byte multiple); N not a multiple of 4
    ah = rng.uniform(-1, 1, (M, K)).astype(np.float32)
    bh = rng.uniform(-1, 1, (K, N)).astype(np.float32)
    big = rng.uniform(-1, 1, (M, 84)).astype(np.float32)
    cbig = cp.asarray(big)
    view = cbig[:, col0:col0 + N]
    matmul(ck.to_device(ah, stream=stream), ck.to_device(bh, stream=stream), view, alpha=0.5, beta=2.0,
           algo=algo, stream=stream)
    stream.sync()
    got = cp.asnumpy(cbig).astype(np.float64)
    ref = 0.5 * (ah.astype(np.float64) @ bh) + 2.0 * big[:, col0:col0 + N]
    assert rel_fro(got[:, col0:col0 + N], ref) < 1e-5
    np.testing.assert_array_equal(got[:, :col0], big[:, :col0])
    np.testing.assert_array_equal(got[:, col0 + N:], big[:, col0 + N:])


@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("aligned", [True, False], ids=["pitch16", "odd-pitch"])
def test_simt256_layouts(ta, tb, aligned, stream, rng):
    """simt256 in each stored layout (A stored K x M arrives through 16-byte copies, B stored N x K
    through transposing 4-byte ones): ragged M and N over several tiles, a K residue tile plus full
    tiles around the 3-stage ring, alpha and beta. Odd pitches send every operand through 4-byte
    copies."""
    cp = pytest.importorskip("cupy")
    M, N, K = 260, 301, 523

    def operand(rows, cols):
        width = -(-cols // 4) * 4 + (0 if aligned else 1)
        h = rng.uniform(-1, 1, (rows, width)).astype(np.float32)
        return h[:, :cols], cp.asarray(h)[:, :cols]
    ah, a = operand(K, M) if ta else operand(M, K)
    bh, b = operand(N, K) if tb else operand(K, N)
    ch = rng.uniform(-1, 1, (M, N)).astype(np.float32)
    out = ck.to_device(ch, stream=stream)
    _, rec = matmul(a, b, out, alpha=0.75, beta=-1.25, algo="simt256", transpose_a=ta, transpose_b=tb,
                    stream=stream, timed=True)
    assert rec.name == SIMT256.kernel(layout_name(ta, tb)) == f"gemm_simt256_{layout_name(ta, tb)}_f32", rec.name
    A = ah.T.astype(np.float64) if ta else ah.astype(np.float64)
    B = bh.T.astype(np.float64) if tb else bh.astype(np.float64)
    assert rel_fro(out.to_numpy(stream=stream), 0.75 * (A @ B) - 1.25 * ch) < 1e-5


def test_simt128_refuses_transposed(stream, rng):
    a = ck.to_device(rng.uniform(-1, 1, (8, 5)).astype(np.float32), stream=stream)
    with pytest.raises(ck.ShapeError, match="reads layout nn only .* got nt"):
        matmul(a, a, algo="simt128", transpose_b=True, stream=stream)
    with pytest.raises(ck.ShapeError, match="reads layout nn only .* got tn"):
        matmul(a.T, a.T, algo="simt128", transpose_b=True, stream=stream)  # a column-major view is "t" too
    assert rel_fro(matmul(a, a, algo="simt", transpose_b=True, stream=stream).to_numpy(stream=stream),
                   a.to_numpy(stream=stream).astype(np.float64) @ a.to_numpy(stream=stream).T) < 1e-5


@pytest.mark.parametrize("algo", ["tf32", "bf16", "fp16"])
@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
def test_wmma_cp_layouts(algo, ta, tb, stream, rng):
    """The cp.async-pipelined WMMA kernels (16-byte-aligned operands), every stored layout,
    ragged M and N, K not a multiple of the 32-deep tile, alpha and beta."""
    assert run(algo, 200, 136, 520, stream, rng, alpha=0.5, beta=-2.0, ta=ta, tb=tb) < TOL[algo]


@pytest.mark.parametrize("algo,dt", [("tf32", np.float32), ("fp16", np.float16)])
def test_wmma_cp_partial_chunks(algo, dt, stream, rng):
    """Aligned pitches but K and N not multiples of a 16-byte chunk: the edge chunks are partly
    outside the matrix and must be zero-filled, not read."""
    cp = pytest.importorskip("cupy")
    M, N, K = 200, 131, 523
    ah = rng.uniform(-1, 1, (M, 528)).astype(dt)
    bh = rng.uniform(-1, 1, (K, 144)).astype(dt)
    a, b = cp.asarray(ah)[:, :K], cp.asarray(bh)[:, :N]
    out = ck.to_device(np.full((M, N), np.nan, dt), stream=stream)
    _, rec = matmul(a, b, out, algo=algo, stream=stream, timed=True)
    assert "_cp_" in rec.name, rec.name
    ref = ah[:, :K].astype(np.float64) @ bh[:, :N].astype(np.float64)
    assert rel_fro(out.to_numpy(stream=stream), ref) < TOL[algo]


# the Hopper kernels' schedules: (tile width, persistent); tests force each in turn
SM90_TILES = [(128, False), (256, False), (256, True)]
SM90_TILE_IDS = ["128", "256", "256persistent"]  # -k persistent selects the persistent kernels' tests


def force_tile(monkeypatch, bn, persist):
    from cudart_kit.ops import _gemm_sm90

    monkeypatch.setattr(_gemm_sm90, "FORCE_BN", bn)
    monkeypatch.setattr(_gemm_sm90, "FORCE_PERSIST", persist)


@pytest.mark.parametrize("algo", SM90)
@pytest.mark.parametrize("bn,persist", SM90_TILES, ids=SM90_TILE_IDS)
@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
def test_sm90_tiles_and_layouts(algo, bn, persist, ta, tb, stream, rng, monkeypatch):
    """Both tile widths and the persistent kernel, every operand layout (each a different kernel or
    staging path), several CTAs and many k-tiles around the 4-stage ring, ragged edges in M, N and K."""
    force_tile(monkeypatch, bn, persist)
    assert run(algo, 333, 700, 1031, stream, rng, alpha=-0.5, beta=0.25, ta=ta, tb=tb) < TOL[algo]


@pytest.mark.parametrize("algo", SM90)
def test_sm90_persistent_is_deterministic(algo, stream, rng, monkeypatch):
    """Each tile's K reduction runs in one CTA in a fixed order, so the persistent kernel's out is
    bitwise the same on any grid (all SMs, 3 CTAs), run after run, and the same as the
    one-tile-per-CTA kernel's (same main loop, same epilogue arithmetic)."""
    if DT[algo] is None:
        pytest.skip("bfloat16 needs ml_dtypes")
    dt = DT[algo]
    a = ck.to_device(rng.uniform(-1, 1, (700, 900)).astype(dt), stream=stream)
    b = ck.to_device(rng.uniform(-1, 1, (900, 1100)).astype(dt), stream=stream)
    c = rng.uniform(-1, 1, (700, 1100)).astype(dt)
    outs = []
    for persist in (False, True, True, 3):
        force_tile(monkeypatch, 256, persist)
        out = ck.to_device(c, stream=stream)
        matmul(a, b, out, alpha=1.5, beta=-0.75, algo=algo, stream=stream)
        outs.append(out.to_numpy(stream=stream))
    for got in outs[1:]:
        assert np.array_equal(got.view(np.uint8), outs[0].view(np.uint8))


@pytest.mark.parametrize("algo", SM90)
@pytest.mark.parametrize("ta,tb", [(False, False), (True, True)])
def test_sm90_persistent_many_tiles_per_cta(algo, ta, tb, stream, rng, monkeypatch):
    """The persistent kernel with several tiles per CTA (2100 x 2901: 17 x 12 wide tiles on at most
    132 CTAs), ragged last tiles, rows off 16 bytes (the threads store out, element by element at
    the N edge), a K that wraps the ring an odd number of times per tile (the barrier phases carry
    over from tile to tile), beta on; the same on 5 CTAs (about 40 tiles each) and on one; then a
    contiguous out with 16-byte rows (TMA stores), and the record names the kernel."""
    for ctas in (True, 5, 1):
        force_tile(monkeypatch, 256, ctas)
        h = run(algo, 2100, 2901, 328, stream, rng, alpha=0.75, beta=-0.5, ta=ta, tb=tb)
        assert h < TOL[algo], ctas
    force_tile(monkeypatch, 256, True)
    a = ck.to_device(rng.uniform(-1, 1, (300, 70)).astype(DT[algo]), stream=stream)
    b = ck.to_device(rng.uniform(-1, 1, (70, 5000)).astype(DT[algo]), stream=stream)
    out = ck.empty((300, 5000), DT[algo], stream=stream)
    _, rec = matmul(a, b, out, algo=algo, stream=stream, timed=True)
    assert "256p" in rec.name and rec.meta["persistent"] is True, (rec.name, rec.meta)
    ref = a.to_numpy(stream=stream).astype(np.float64) @ b.to_numpy(stream=stream).astype(np.float64)
    assert rel_fro(out.to_numpy(stream=stream), ref) < TOL[algo]


@pytest.mark.parametrize("algo", SM90)
def test_sm90_many_tiles(algo, stream, rng, monkeypatch):
    """More tiles than SMs (16 x 15 tiles of 128 x 128), and the single-row / single-column edge."""
    from cudart_kit.ops import _gemm_sm90

    monkeypatch.setattr(_gemm_sm90, "FORCE_BN", 128)
    assert run(algo, 2000, 1900, 200, stream, rng, alpha=1.25, beta=-1.0) < TOL[algo]
    assert run(algo, 1, 4096, 1, stream, rng) < TOL[algo]


@pytest.mark.parametrize("algo,dt", [("tf32_sm90", np.float32), ("fp16_sm90", np.float16)])
def test_sm90_misaligned_views(algo, dt, stream, rng):
    """Sub-matrix views whose start and pitch break TMA's 16-byte rule are re-pitched first."""
    cp = pytest.importorskip("cupy")
    ah = rng.uniform(-1, 1, (301, 203)).astype(dt)
    bh = rng.uniform(-1, 1, (203, 155)).astype(dt)
    ca, cb = cp.asarray(ah), cp.asarray(bh)
    a, b = ca[3:290, 1:200], cb[1:200, 5:150]  # odd element offsets, pitches 203 and 155
    out = ck.to_device(np.full((287, 145), np.nan, dt), stream=stream)
    matmul(a, b, out, algo=algo, stream=stream)
    ref = ah[3:290, 1:200].astype(np.float64) @ bh[1:200, 5:150].astype(np.float64)
    assert rel_fro(out.to_numpy(stream=stream), ref) < TOL[algo]
    t = matmul(a.T, b[:, :100].T, algo=algo, transpose_a=True, transpose_b=True, stream=stream)
    ref_t = ah[3:290, 1:200].astype(np.float64) @ bh[1:200, 5:105].astype(np.float64)
    assert rel_fro(t.to_numpy(stream=stream), ref_t) < TOL[algo]


def test_sm90_auto_choice_and_timing(device, stream, rng):
    """auto runs the Hopper kernels on compute capability 9.0 (and the portable ones elsewhere);
    timed=True returns the launch's record."""
    ah = rng.uniform(-1, 1, (257, 300)).astype(np.float16)
    bh = rng.uniform(-1, 1, (300, 129)).astype(np.float16)
    a, b = ck.to_device(ah, stream=stream), ck.to_device(bh, stream=stream)
    out, rec = matmul(a, b, stream=stream, timed=True)
    want = "gemm_sm90_f16" if device.compute_capability == (9, 0) else "gemm_fp16"
    assert rec.name.startswith(want), rec.name
    assert rec.sync().elapsed_ms() > 0
    assert rel_fro(out.to_numpy(stream=stream), ah.astype(np.float64) @ bh) < 2e-2


def test_sm90_refused_elsewhere(device, stream):
    if device.compute_capability == (9, 0):
        pytest.skip("this device runs the sm_90a kernels")
    a = ck.to_device(np.ones((8, 8), np.float16), stream=stream)
    with pytest.raises(ck.DeviceCapabilityError, match="compute capability 9.0"):
        matmul(a, a, algo="fp16_sm90", stream=stream)


@pytest.mark.parametrize("algo", ["auto", "tiled", "simt", "simt128", "simt256", "tf32", "fp16", "tf32_sm90", "fp16_sm90",
                                  "bf16_sm90"])
def test_cached_plan_swaps_arrays(algo, device, stream, rng):
    """The second and later calls with arrays of the same signatures take the cached plan: new
    pointers, alpha and beta must reach the kernel (fresh data each call, outputs poisoned)."""
    from cudart_kit.ops import gemm

    if algo.endswith("_sm90") and device.compute_capability != (9, 0):
        pytest.skip("sm_90a kernel")
    dt = {"bf16_sm90": bfloat16, "fp16": np.float16, "fp16_sm90": np.float16}.get(algo, np.float32)
    if dt is None:
        pytest.skip("bfloat16 needs ml_dtypes")
    tol = TOL.get(algo, 1e-5)
    M, N, K = 136, 200, 96
    for i in range(3):
        ah = rng.uniform(-1, 1, (M, K)).astype(dt)
        bh = rng.uniform(-1, 1, (K, N)).astype(dt)
        ch = rng.uniform(-1, 1, (M, N)).astype(dt)
        a, b = ck.to_device(ah, stream=stream), ck.to_device(bh, stream=stream)
        out = ck.to_device(ch if i == 2 else np.full((M, N), np.nan, dt), stream=stream)
        alpha, beta = 0.5 + i, (-1.5 if i == 2 else 0.0)
        assert matmul(a, b, out, alpha=alpha, beta=beta, algo=algo, stream=stream) is out
        ref = alpha * (ah.astype(np.float64) @ bh.astype(np.float64)) + beta * ch.astype(np.float64)
        assert rel_fro(out.to_numpy(stream=stream), ref) < tol, f"call {i}"
        assert (a.sig, b.sig, out.sig, algo, False, False, False) in gemm._fast
    a.close()
    with pytest.raises(ck.ClosedError):
        matmul(a, b, out, algo=algo, stream=stream)  # a closed array never reaches the cached launch


@pytest.mark.parametrize("algo", ["tiled", "simt", "bf16", "tf32_sm90", "bf16_sm90"])
@pytest.mark.parametrize("ta,tb", [(False, True), (True, False), (True, True)])
def test_cached_plan_with_transposes(algo, ta, tb, stream, rng):
    """Plans are kept per transpose flags too: repeated transposed calls stay correct."""
    for i in range(3):
        assert run(algo, 96, 136, 200, stream, rng, alpha=1.0 + i, beta=0.5 if i == 2 else 0.0, ta=ta, tb=tb) < TOL[algo]


def test_auto_and_views(stream, rng):
    ah = rng.uniform(-1, 1, (300, 200)).astype(np.float32)
    bh = rng.uniform(-1, 1, (200, 100)).astype(np.float32)
    a, b = ck.to_device(ah, stream=stream), ck.to_device(bh, stream=stream)
    c = matmul(a, b, stream=stream)                       # auto: simt, new output
    assert rel_fro(c.to_numpy(stream=stream), ah.astype(np.float64) @ bh) < 1e-5
    cp = pytest.importorskip("cupy")
    ca = cp.asarray(a)
    t = matmul(ca.T, ca, stream=stream)                   # a column-major view: read transposed (simt256)
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


def test_cublas_plan_reused_in_place(stream, rng):
    """Same geometry, new data and alpha: one cached plan, results written into out (NaN-poisoned
    first, beta = 0: never read), inputs still freed normally afterwards."""
    pytest.importorskip("nvmath", reason="nvmath-python (the cublas extra) is not installed")
    from cudart_kit.ops import _cublaslt

    M, N, K = 200, 136, 72
    before = _cublaslt.stats["plans_made"]
    for i in range(3):
        ah = rng.uniform(-1, 1, (M, K)).astype(np.float32)
        bh = rng.uniform(-1, 1, (K, N)).astype(np.float32)
        a, b = ck.to_device(ah, stream=stream), ck.to_device(bh, stream=stream)
        out = ck.to_device(np.full((M, N), np.nan, np.float32), stream=stream)
        res, rec = matmul(a, b, out, alpha=1.0 + i, algo="cublas", stream=stream, timed=True)
        assert res is out
        assert rel_fro(out.to_numpy(stream=stream), (1.0 + i) * (ah.astype(np.float64) @ bh)) < 1e-5
        assert rec.sync().elapsed_ms() > 0
    assert _cublaslt.stats["plans_made"] <= before + 1


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


# ---- graph capture: every algorithm and stored layout, captured once, replayed 100 times -----
#
# Each graph holds two calls with arrays of one signature: the first (plan caches cleared) takes
# the checked path, the second the cached plan it left (kit kernels' plan, the sm90 fast plan,
# or the cuBLAS plan made inside the capture). Their workspaces (tf32_sm90's B^T, re-pitched
# copies, cuBLAS's) belong to the graph. Before each replay fresh inputs are copied into the
# captured buffers on the stream and the first output is poisoned with NaN; the second output
# is read (beta) and rewritten.

GRAPH_ALGOS = PORTABLE + SM90 + ["cublas"]
GRAPH_LAYOUTS = {"nn": (False, False), "tn": (True, False), "nt": (False, True), "tt": (True, True),
                 "pitch": (False, False)}  # pitch: sub-matrix views, start and row pitch not 16-byte aligned
GRAPH_DT = {**DT, "cublas": np.float32}
GRAPH_TOL = {**TOL, "cublas": 1e-5}
REPLAYS = 100


def _pitched(base, rows: int, cols: int, col0: int):
    """rows x cols of the kit array ``base`` from column ``col0``: a view (no cached plan takes
    one); it keeps ``base`` alive."""
    view = base[:rows, col0:col0 + cols]
    assert view.base is base and view.strides == (base.shape[1] * base.itemsize, base.itemsize)
    return view


def _graph_case(algo, layout, M, N, K, stream, rng):
    from cudart_kit.ops import gemm

    if algo == "cublas":
        pytest.importorskip("nvmath", reason="nvmath-python (the cublas extra) is not installed")
    dt = GRAPH_DT[algo]
    if dt is None:
        pytest.skip("bfloat16 needs ml_dtypes")
    ta, tb = GRAPH_LAYOUTS[layout]
    if algo == "simt128" and (ta or tb):
        pytest.skip("simt128 reads row-major operands only (refused with ShapeError, tested above)")
    pitched = layout == "pitch"

    def operand(rows, cols):
        """(buffer new data is copied into, operand passed to matmul, host block of the operand)"""
        if not pitched:
            arr = ck.empty((rows, cols), dt, stream=stream)
            return arr, arr, lambda h: h
        width = cols + 2 + (cols % 2 == 0)  # odd: rows 2k or 4k bytes apart, never 16-byte aligned
        base = ck.empty((rows, width), dt, stream=stream)
        view = _pitched(base, rows, cols, 1)  # starts one element past a 256-byte boundary
        assert view.ptr % 16 and (view.strides[0] % 16)
        return base, view, lambda h: h[:, 1:1 + cols]

    a_buf, a, a_of = operand(*((K, M) if ta else (M, K)))
    b_buf, b, b_of = operand(*((N, K) if tb else (K, N)))
    out1, out2 = ck.empty((M, N), dt, stream=stream), ck.empty((M, N), dt, stream=stream)
    kw = dict(algo=algo, transpose_a=ta, transpose_b=tb)

    def fill_inputs():
        ah = rng.uniform(-1, 1, a_buf.shape).astype(dt)
        bh = rng.uniform(-1, 1, b_buf.shape).astype(dt)
        ck.copy(a_buf, ah, stream=stream)
        ck.copy(b_buf, bh, stream=stream)
        A, B = a_of(ah).astype(np.float64), b_of(bh).astype(np.float64)
        return (A.T if ta else A) @ (B.T if tb else B)

    tol = GRAPH_TOL[algo]
    # eager first: loads the kernels, and the result must already be right
    ref = fill_inputs()
    matmul(a, b, out1, stream=stream, **kw)
    assert rel_fro(out1.to_numpy(stream=stream), ref) < tol, "eager call"
    gemm._clear_plans()  # the capture's first call takes the checked path, the second its plan

    alpha1, alpha2, beta2 = 1.25, -0.5, 0.75
    with ck.graph.capture(stream) as cap:
        assert matmul(a, b, out1, alpha=alpha1, stream=cap.stream, **kw) is out1
        assert matmul(a, b, out2, alpha=alpha2, beta=beta2, stream=cap.stream, **kw) is out2
    g = cap.graph
    planned = (a.sig, b.sig, out1.sig, algo, False, ta, tb) in gemm._fast  # made by the first call
    if algo == "cublas":
        from cudart_kit.ops import _cublaslt

        assert _cublaslt.plan_count() == 1  # planned inside the capture, reused by the second call
    elif not pitched and algo not in SM90:
        assert planned, "the second call inside the capture took the cached plan"
    nan = np.full((M, N), np.nan, dt)
    try:
        for i in range(REPLAYS):
            ref = fill_inputs()
            ch = rng.uniform(-1, 1, (M, N)).astype(dt)
            ck.copy(out1, nan, stream=stream)  # poison: every element must be written by the replay
            ck.copy(out2, ch, stream=stream)
            g.replay(stream)
            got1, got2 = out1.to_numpy(stream=stream), out2.to_numpy(stream=stream)
            assert not np.isnan(got1.astype(np.float64)).any(), f"replay {i}: outputs left unwritten (NaN poison)"
            assert rel_fro(got1, alpha1 * ref) < tol, f"replay {i}: first call"
            assert rel_fro(got2, alpha2 * ref + beta2 * ch.astype(np.float64)) < tol, f"replay {i}: second call"
    finally:
        g.close()
        gemm._clear_plans()
    return planned


@pytest.mark.parametrize("algo", GRAPH_ALGOS)
@pytest.mark.parametrize("layout", list(GRAPH_LAYOUTS))
def test_graph_capture_replays(algo, layout, stream, rng):
    """67x45x37: no dimension a multiple of any tile, no row a multiple of 16 bytes (so every
    *_sm90 operand is re-pitched, and tf32_sm90 transposes B or A where they are not K-major)."""
    _graph_case(algo, layout, 67, 45, 37, stream, rng)


@pytest.mark.parametrize("algo", SM90)
@pytest.mark.parametrize("layout", ["nn", "tn", "nt", "tt"])
def test_graph_capture_sm90_fast_plans(algo, layout, stream, rng):
    """136x200x96: TMA-aligned rows in every layout, so the *_sm90 cached (fast) plans are made
    and replayed inside the graph, tf32_sm90's with its B^T workspace (B stored K x N)."""
    planned = _graph_case(algo, layout, 136, 200, 96, stream, rng)
    ta = GRAPH_LAYOUTS[layout][0]
    assert planned == (not (algo == "tf32_sm90" and ta))  # a TF32 A stored K x M gets no fast plan


def test_graph_capture_needs_out(stream):
    a = ck.to_device(np.ones((8, 8), np.float32), stream=stream)
    with pytest.raises(ck.StreamError, match="out="):
        with ck.graph.capture(stream) as cap:
            matmul(a, a, algo="tiled", stream=cap.stream)
    out = matmul(a, a, algo="tiled", stream=stream)  # the stream is usable afterwards
    np.testing.assert_array_equal(out.to_numpy(stream=stream), np.full((8, 8), 8.0, np.float32))


CLOSED_ALGOS = ["tiled", "simt", "fp16", "tf32_sm90", "fp16_sm90", "cublas"]


def _planned(algo, device, stream):
    """Kit arrays, a, b, out, whose matmul has been run twice (its plan cached)."""
    if algo.endswith("_sm90") and device.compute_capability != (9, 0):
        pytest.skip("sm_90a kernel")
    if algo == "cublas":
        pytest.importorskip("nvmath", reason="nvmath-python (the cublas extra) is not installed")
    dt = np.float16 if "fp16" in algo else np.float32
    a, b = (ck.to_device(np.ones((64, 64), dt), stream=stream) for _ in range(2))
    out = ck.empty((64, 64), dt, stream=stream)
    for _ in range(2):
        matmul(a, b, out, algo=algo, stream=stream)
    np.testing.assert_array_equal(out.to_numpy(stream=stream), np.full((64, 64), 64.0, dt))
    return a, b, out


@pytest.mark.parametrize("algo", CLOSED_ALGOS)
def test_closed_stream_with_cached_plan(algo, device, stream):
    """A closed stream is refused with ClosedError naming it, even where a cached plan would
    launch directly; nothing is queued."""
    from cudart_kit.ops import gemm

    a, b, out = _planned(algo, device, stream)
    if algo != "cublas":
        assert (a.sig, b.sig, out.sig, algo, False, False, False) in gemm._fast
    s2 = ck.Stream.create(device)
    matmul(a, b, out, algo=algo, stream=s2)
    s2.sync()
    s2.close()
    with pytest.raises(ck.ClosedError, match="closed") as err:
        matmul(a, b, out, algo=algo, stream=s2)
    assert repr(s2) in str(err.value)
    assert matmul(a, b, out, algo=algo, stream=stream) is out  # the arrays and the plan still serve open streams


@pytest.mark.parametrize("algo", CLOSED_ALGOS)
@pytest.mark.parametrize("which", ["a", "b", "out"])
def test_closed_operand_with_cached_plan(algo, which, device, stream):
    a, b, out = _planned(algo, device, stream)
    {"a": a, "b": b, "out": out}[which].close()
    with pytest.raises(ck.ClosedError, match=rf"matmul: {which} is closed"):
        matmul(a, b, out, algo=algo, stream=stream)


# ---- views as operands and outputs (no copies): row / column blocks, transposes, out= blocks ----
#
# Every operand is a view of a larger device array made by the kit's basic indexing (``x[r0:r1,
# c0:c1]``, ``.T``), read in place through its strides: a row-major block passes its leading
# dimension, a transposed view is read as stored transposed. ``out`` is a row block (or block)
# of a larger array poisoned with NaN: the block must be written completely and every other byte
# of the big array left exactly as it was.

VIEW_ALGOS = PORTABLE + SM90 + ["cublas"]
VIEW_DT = {**DT, "cublas": np.float32}
VIEW_TOL = {**TOL, "cublas": 1e-5}
VM, VN, VK = 131, 269, 75  # no dimension a multiple of any tile; several tiles in M and N


def _ident(x):
    return x


def _view_case(case: str, M: int, N: int, K: int):
    """(a base shape, a view of it, b base shape, b view, transpose_a, transpose_b): the view
    functions apply to numpy arrays and kit Arrays alike."""
    return {
        "a_row_block": ((M + 7, K), lambda x: x[3:3 + M], (K, N), _ident, False, False),
        "a_block": ((M + 7, K + 9), lambda x: x[3:3 + M, 5:5 + K], (K, N), _ident, False, False),
        "b_col_block": ((M, K), _ident, (K, N + 5), lambda x: x[:, 2:2 + N], False, False),
        "b_row_block": ((M, K), _ident, (K + 4, N), lambda x: x[1:1 + K], False, False),
        "a_T": ((K, M), lambda x: x.T, (K, N), _ident, False, False),
        "b_T": ((M, K), _ident, (N, K), lambda x: x.T, False, False),
        "T_of_blocks": ((K + 3, M + 4), lambda x: x[1:1 + K, 3:3 + M].T,
                        (N + 2, K + 5), lambda x: x[2:2 + N, 1:1 + K].T, False, False),
        "T_and_flags": ((M, K), lambda x: x.T, (K, N), lambda x: x.T, True, True),  # op(x.T) = x
    }[case]


VIEW_CASES = ["a_row_block", "a_block", "b_col_block", "b_row_block", "a_T", "b_T", "T_of_blocks", "T_and_flags"]


def _raw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x).view(np.uint8)


def _views_run(algo, case, out_kind, stream, rng, M=VM, N=VN, K=VK):
    if algo == "cublas":
        pytest.importorskip("nvmath", reason="nvmath-python (the cublas extra) is not installed")
    dt = VIEW_DT[algo]
    if dt is None:
        pytest.skip("bfloat16 needs ml_dtypes")
    a_shape, fa, b_shape, fb, ta, tb = _view_case(case, M, N, K)
    if algo == "simt128" and case in ("a_T", "b_T", "T_of_blocks"):
        pytest.skip("simt128 reads layout nn only (refused with ShapeError, tested above)")
    ah = rng.uniform(-1, 1, a_shape).astype(dt)
    bh = rng.uniform(-1, 1, b_shape).astype(dt)
    A, B = ck.to_device(ah, stream=stream), ck.to_device(bh, stream=stream)
    a, b = fa(A), fb(B)
    assert a.base is A or a is A
    opa = fa(ah).T if ta else fa(ah)
    opb = fb(bh).T if tb else fb(bh)
    ref = opa.astype(np.float64) @ opb.astype(np.float64)
    alpha, beta = 0.75, (-1.25 if out_kind == "block_beta" else 0.0)
    if out_kind == "new":
        out = matmul(a, b, alpha=alpha, algo=algo, transpose_a=ta, transpose_b=tb, stream=stream)
        got = out.to_numpy(stream=stream)
        assert not np.isnan(got.astype(np.float64)).any()
        return rel_fro(got, alpha * ref)
    rows, cols, r0, c0 = (M + 6, N, 2, 0) if out_kind == "row_block" else (M + 5, N + 7, 3, 4)
    big_h = np.full((rows, cols), np.nan, dt)
    ch = rng.uniform(-1, 1, (M, N)).astype(dt)
    if beta:
        big_h[r0:r0 + M, c0:c0 + N] = ch
    BIG = ck.to_device(big_h, stream=stream)
    out = BIG[r0:r0 + M, c0:c0 + N]
    assert out.base is BIG
    res = matmul(a, b, out, alpha=alpha, beta=beta, algo=algo, transpose_a=ta, transpose_b=tb, stream=stream)
    assert res is out
    got = BIG.to_numpy(stream=stream)
    inside = got[r0:r0 + M, c0:c0 + N]
    assert not np.isnan(inside.astype(np.float64)).any(), "out block left partly unwritten (NaN poison)"
    rest = np.ones(got.shape, bool)
    rest[r0:r0 + M, c0:c0 + N] = False
    assert np.array_equal(_raw(got)[rest.repeat(got.itemsize, axis=1)], _raw(big_h)[rest.repeat(got.itemsize, axis=1)]), \
        "bytes of the big array outside the out block changed"
    return rel_fro(inside, alpha * ref + (beta * ch.astype(np.float64) if beta else 0.0))


@pytest.mark.parametrize("algo", VIEW_ALGOS)
@pytest.mark.parametrize("case", VIEW_CASES)
def test_view_operands_into_out_row_block(algo, case, stream, rng):
    """Row blocks, column blocks, transposes (and transposes of blocks) as a and b, written into
    a row block of a larger NaN-poisoned array."""
    assert _views_run(algo, case, "row_block", stream, rng) < VIEW_TOL[algo]


@pytest.mark.parametrize("algo", VIEW_ALGOS)
@pytest.mark.parametrize("case", ["a_block", "b_col_block", "T_of_blocks"])
def test_view_operands_into_out_block_with_beta(algo, case, stream, rng):
    """out a block (rows and columns) of a larger array, read through its leading dimension
    (beta != 0) and written back; everything around it untouched."""
    assert _views_run(algo, case, "block_beta", stream, rng) < VIEW_TOL[algo]


@pytest.mark.parametrize("algo", ["naive", "simt", "tf32", "bf16", "fp16"] + SM90 + ["cublas"])
@pytest.mark.parametrize("case", ["a_T", "T_of_blocks"])
def test_view_operands_new_out(algo, case, stream, rng):
    assert _views_run(algo, case, "new", stream, rng) < VIEW_TOL[algo]


@pytest.mark.parametrize("algo", ["tiled", "simt256", "tf32", "bf16", "fp16"])
@pytest.mark.parametrize("case", ["a_block", "T_of_blocks"])
def test_view_operands_larger(algo, case, stream, rng):
    """Blocks and transposed blocks at a bigger size: many tiles in M and N, many k-tiles."""
    assert _views_run(algo, case, "row_block", stream, rng, M=333, N=517, K=301) < TOL[algo]


@pytest.mark.parametrize("algo", SM90)
@pytest.mark.parametrize("bn,persist", SM90_TILES, ids=SM90_TILE_IDS)
@pytest.mark.parametrize("case", ["a_block", "T_of_blocks", "T_and_flags"])
def test_view_operands_sm90_both_tiles(algo, bn, persist, case, stream, rng, monkeypatch):
    """The Hopper kernels on views at both tile widths and persistent, several k-tiles around the ring."""
    force_tile(monkeypatch, bn, persist)
    assert _views_run(algo, case, "row_block", stream, rng, M=333, N=517, K=301) < TOL[algo]


@pytest.mark.parametrize("algo", ["tiled", "simt", "tf32", "fp16", "fp16_sm90", "tf32_sm90"])
def test_single_row_and_column_views(algo, stream, rng):
    """A row of a matrix, a column of one and a row of a transposed one: strides of extent-1
    dimensions are never used, whatever they are."""
    dt = DT[algo]
    K, N = 37, 45
    Xh = rng.uniform(-1, 1, (9, K + 3)).astype(dt)
    Yh = rng.uniform(-1, 1, (K, N + 6)).astype(dt)
    X, Y = ck.to_device(Xh, stream=stream), ck.to_device(Yh, stream=stream)
    row = X[4:5, 1:1 + K]                       # 1 x K, rows K + 3 apart
    col = Y[:, 6:7]                             # K x 1, a column of a wider matrix
    trow = X.T[2:3, :]                          # 1 x 9, a row of X.T: elements K + 3 apart
    assert trow.shape == (1, 9) and trow.strides[1] == (K + 3) * X.itemsize
    r1 = matmul(row, col, algo=algo, stream=stream).to_numpy(stream=stream)
    a1, b1 = Xh[4:5, 1:1 + K].astype(np.float64), Yh[:, 6:7].astype(np.float64)
    # one dot product can cancel to near zero: bound its error by |a| @ |b| (a relative error of
    # the result itself measured 1.9 % for tf32 on a 0.029 result), as for every element below
    assert (np.abs(r1 - a1 @ b1) <= TOL[algo] * (np.abs(a1) @ np.abs(b1))).all()
    r2 = matmul(row, Y[:, :N], algo=algo, stream=stream).to_numpy(stream=stream)
    assert rel_fro(r2, Xh[4:5, 1:1 + K].astype(np.float64) @ Yh[:, :N]) < TOL[algo]
    r3 = matmul(trow, X[:, :K], algo=algo, stream=stream).to_numpy(stream=stream)
    assert rel_fro(r3, Xh.T[2:3, :].astype(np.float64) @ Xh[:, :K]) < TOL[algo]


@pytest.mark.parametrize("lib", ["cupy", "torch"])
@pytest.mark.parametrize("algo", ["simt256", "tf32", "fp16", "fp16_sm90", "bf16_sm90", "cublas"])
def test_foreign_views_passed_raw(lib, algo, device, stream, rng):
    """CuPy / PyTorch views (a row block, a transposed column block, out a row block of a
    poisoned array) passed straight in: read through their own strides, the foreign out comes
    back as the caller's object, nothing around the block written."""
    mod = pytest.importorskip(lib)
    if algo.endswith("_sm90") and device.compute_capability != (9, 0):
        pytest.skip("sm_90a kernel")
    if algo == "cublas":
        pytest.importorskip("nvmath", reason="nvmath-python (the cublas extra) is not installed")
    dt = {"fp16": np.float16, "fp16_sm90": np.float16, "bf16_sm90": bfloat16}.get(algo, np.float32)
    if dt is None:
        pytest.skip("bfloat16 needs ml_dtypes")
    if lib == "cupy" and dt is bfloat16:
        pytest.skip("CuPy has no bfloat16")
    M, N, K = 67, 45, 37
    ah = rng.uniform(-1, 1, (M + 5, K)).astype(dt)
    bh = rng.uniform(-1, 1, (N + 4, K + 3)).astype(dt)
    big_h = np.full((M + 3, N), np.nan, dt)
    A, B, BIG = (ck.to_device(h, stream=stream) for h in (ah, bh, big_h))
    stream.sync()  # the foreign library reads them on its own stream below (views only: no kernels)
    wrap = (lambda x: mod.from_dlpack(x)) if lib == "torch" else (lambda x: mod.asarray(x))
    a = wrap(A)[2:2 + M]                 # row block
    b = wrap(B)[1:1 + N, 3:3 + K].T      # transposed block: K x N, column-major
    out = wrap(BIG)[1:1 + M]             # row block of the poisoned array
    res = matmul(a, b, out, algo=algo, stream=stream)
    assert res is out
    got = BIG.to_numpy(stream=stream)
    ref = ah[2:2 + M].astype(np.float64) @ bh[1:1 + N, 3:3 + K].T.astype(np.float64)
    tol = {"cublas": 1e-5 if dt == np.float32 else 2e-2}.get(algo, TOL.get(algo, 2e-2))
    assert rel_fro(got[1:1 + M], ref) < tol
    assert np.isnan(got[0].astype(np.float64)).all() and np.isnan(got[1 + M:].astype(np.float64)).all()


def test_view_layouts_refused_with_what_the_kernel_needs(device, stream, rng):
    """Layouts no kernel reads are ShapeErrors that name the operand, its strides and the
    kernel's need; nothing is queued (out keeps its poison)."""
    A = ck.to_device(rng.uniform(-1, 1, (40, 30)).astype(np.float32), stream=stream)
    B = ck.to_device(rng.uniform(-1, 1, (30, 20)).astype(np.float32), stream=stream)
    out = ck.to_device(np.full((40, 10), np.nan, np.float32), stream=stream)
    with pytest.raises(ck.ShapeError, match=r"^matmul: b has shape \(30, 10\) and strides \(80, 8\) bytes .*no "
                                            r"dimension has unit stride.*the simt kernel reads a row-major operand"):
        matmul(A, B[:, ::2], out, algo="simt", stream=stream)
    with pytest.raises(ck.ShapeError, match=r"^matmul: a has .*negative stride.*the tiled kernel reads"):
        matmul(A[::-1], B[:, :10], out, algo="tiled", stream=stream)
    C = ck.to_device(np.full((10, 40), np.nan, np.float32), stream=stream)
    with pytest.raises(ck.ShapeError, match=r"^matmul: out has shape \(40, 10\) .*column-major.*out\.T = op\(b\)\.T"):
        matmul(A, B[:, :10], C.T, algo="simt", stream=stream)
    with pytest.raises(ck.ShapeError, match=r"^matmul: out overlaps a"):
        matmul(A[:, :30], B[:, :10], A[:, 20:30], algo="simt", stream=stream)
    BB = ck.to_device(rng.uniform(-1, 1, (30, 40)).astype(np.float32), stream=stream)
    with pytest.raises(ck.ShapeError, match=r"^matmul: out overlaps b"):
        matmul(A[:30, :30], BB[:, :20], BB[:, 15:35], algo="simt", stream=stream)
    raw = ck.empty((40 * 30 * 4 + 4,), np.uint8, stream=stream)
    odd = raw[1:1 + 40 * 30 * 4].view(np.float32).reshape(40, 30)  # starts 1 byte off a float boundary
    with pytest.raises(ck.ShapeError, match=r"^matmul: a has shape \(40, 30\) and strides \(120, 4\) bytes \(4-byte "
                                            r"elements\) but starts at byte address 0x[0-9a-f]+, not a multiple of its "
                                            r"4-byte elements"):
        matmul(odd, B[:, :10], out, algo="simt", stream=stream)
    assert np.isnan(out.to_numpy(stream=stream)).all()
    # sibling column blocks of one matrix do not overlap: accepted
    Wh = np.full((30, 40), np.nan, np.float32)
    Wh[:, :20] = rng.uniform(-1, 1, (30, 20))
    W = ck.to_device(Wh, stream=stream)
    matmul(W[:, :20], B[:20, :20], W[:, 20:40], algo="simt", stream=stream)
    got = W.to_numpy(stream=stream)
    assert rel_fro(got[:, 20:], Wh[:, :20].astype(np.float64) @ B.to_numpy(stream=stream)[:20, :20]) < 1e-5
    np.testing.assert_array_equal(got[:, :20], Wh[:, :20])
