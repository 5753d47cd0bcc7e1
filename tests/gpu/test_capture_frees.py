"""Arrays freed while a stream their free is ordered on is being captured into a graph.

A kit array is freed on its allocation stream, after an event of every other stream that used it.
Dropped while one of those streams is captured, that free (or the event ordering it) would be
recorded into someone else's graph — and the driver refuses to free non-graph memory there — or
would pull another stream into the capture. Found on the H200 (2026-12-04): a Capture object
kept from an earlier capture released its arrays when the next ``with ck.graph.capture(s) as cap``
rebound ``cap``, inside the new capture; the kit's matmul side stream joined that capture and the
next workspace allocation failed. The kit now defers such frees until the capture ends."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import cudart_kit as ck
from cudart_kit import ops
from cudart_kit.ops.gemm import matmul


def _capturing(s) -> bool:
    from cuda.bindings import driver

    err, status = driver.cuStreamIsCapturing(driver.CUstream(s.handle))
    assert err == driver.CUresult.CUDA_SUCCESS, err
    return status != driver.CUstreamCaptureStatus.CU_STREAM_CAPTURE_STATUS_NONE


def _device_arrays() -> int:
    return ck.census()["memory"]["device"]["arrays"]


def test_arrays_dropped_inside_a_capture_are_freed_after_it(device, stream, rng):
    other = ck.Stream.create(device)
    n = 1001
    xh, yh = rng.uniform(-1, 1, n).astype(np.float32), rng.uniform(-1, 1, n).astype(np.float32)
    x, y = ck.to_device(xh, stream=stream), ck.to_device(yh, stream=stream)
    out = ck.to_device(np.full(n, np.nan, np.float32), stream=stream)
    # victims: one freed on the capturing stream itself, one allocated on `other` and used on the
    # capturing stream (its free waits for an event of it), one managed (freed after syncs)
    v1 = ck.to_device(rng.uniform(-1, 1, n).astype(np.float32), stream=stream)
    v2 = ck.empty((n,), np.float32, stream=other)
    other.sync()
    ops.add(x, y, v2, stream=stream)
    v3 = ck.empty((n,), np.float32, stream=stream, kind="managed")
    ops.add(x, y, v3, stream=stream)
    stream.sync()
    live = _device_arrays()
    with ck.graph.capture(stream) as cap:
        del v1, v2, v3
        gc.collect()
        assert not _capturing(other), "a free pulled another stream into the capture"
        assert _device_arrays() == live, "freed inside the capture (or miscounted)"
        ops.add(x, y, out, stream=cap.stream)
    assert _device_arrays() == live - 2, "the deferred frees ran when the capture ended"
    assert not _capturing(stream) and not _capturing(other)
    cap.graph.replay(stream)
    np.testing.assert_array_equal(out.to_numpy(stream=stream), xh + yh)
    cap.graph.close()
    other.sync()
    other.close()


def test_capture_object_kept_across_captures(device, stream, rng):
    """The pattern that found it: one name rebound by consecutive captures whose graphs hold
    matmul workspaces (re-pitched TF32 operands), each graph closed before the next capture."""
    if device.compute_capability != (9, 0):
        pytest.skip("the sm90 workspaces need compute capability 9.0")
    M, N, K = 67, 131, 45  # rows of 45 / 131 floats: not 16-byte multiples, so both operands are re-pitched
    cap = None
    for ta, tb in ((False, False), (False, True), (False, False)):
        ah = rng.uniform(-1, 1, (K, M) if ta else (M, K)).astype(np.float32)
        bh = rng.uniform(-1, 1, (N, K) if tb else (K, N)).astype(np.float32)
        ch = rng.uniform(-1, 1, (M, N)).astype(np.float32)
        a, b = ck.to_device(ah, stream=stream), ck.to_device(bh, stream=stream)
        c = ck.to_device(ch, stream=stream)
        with ck.graph.capture(stream) as cap:  # rebinding `cap` drops the previous Capture in here
            matmul(a, b, c, alpha=1.5, beta=0.5, algo="tf32_sm90", transpose_a=ta, transpose_b=tb, stream=cap.stream)
        cap.graph.replay(stream)
        A = (ah.T if ta else ah).astype(np.float64)
        B = (bh.T if tb else bh).astype(np.float64)
        ref = 1.5 * (A @ B) + 0.5 * ch.astype(np.float64)
        got = c.to_numpy(stream=stream).astype(np.float64)
        assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 5e-3
        cap.graph.close()


def test_capture_holds_raw_torch_tensors(device, stream, rng):
    """The graph keeps every array its work touches alive (docs/embedding.md), raw PyTorch tensors
    passed to the ops included: dropped after the capture, they live until the graph is closed,
    and replays read them, not freed memory."""
    import weakref

    torch = pytest.importorskip("torch")
    n = 4099
    xh, yh = rng.uniform(-1, 1, n).astype(np.float32), rng.uniform(-1, 1, n).astype(np.float32)
    x, y = torch.from_numpy(xh).cuda(), torch.from_numpy(yh).cuda()
    out, out2, out3 = (torch.full((n,), float("nan"), device="cuda") for _ in range(3))
    torch.cuda.synchronize()
    with ck.graph.capture(stream) as cap:
        ops.add(x, y, out, stream=cap.stream)      # the binary ops' raw-tensor path
        ops.scale(2.0, x, out2, stream=cap.stream)  # the other ops' operand path
        ck.copy(out3, y, stream=cap.stream)         # copies
    refs = [weakref.ref(t) for t in (x, y, out, out2, out3)]
    del x, y, out, out2, out3
    gc.collect()
    assert all(r() is not None for r in refs), "a tensor the graph uses was collected"
    cap.graph.replay(stream)
    stream.sync()
    got = [r().cpu().numpy() for r in refs[2:]]
    np.testing.assert_array_equal(got[0], xh + yh)
    np.testing.assert_array_equal(got[1], np.float32(2.0) * xh)
    np.testing.assert_array_equal(got[2], yh)
    cap.graph.close()
    del got
    gc.collect()
    assert all(r() is None for r in refs), "the closed graph still holds the tensors"
