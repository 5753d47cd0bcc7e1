"""Stream order behind a blocking host callback: nothing queued after it may run, and the
stream may not report done, until the callback returns. Every op, small and large sizes.

The output is read while the stream is held, through a copy on a *second* stream: if the op
ran out of order (or on another stream) the poisoned output would already be overwritten."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import cudart_kit as ck
from cudart_kit import ops

SIZES = [1000, 1 << 20]


@pytest.fixture(scope="module", autouse=True)
def preloaded(device):
    """Lazy loading makes a kernel's first launch wait for queued work (a hidden sync, seen on
    the H200 as a 20 s stall behind the blocked callback): load the kit's code first."""
    from cudart_kit.module import load_kit_module

    return sum(load_kit_module(m).preload(device) for m in ("vector", "gemm"))
HOLD_S = 20.0  # the callback's upper bound; the test releases it long before


def _raw_query(stream) -> str:
    from cuda.bindings import driver

    (res,) = driver.cuStreamQuery(driver.CUstream(stream.handle))
    return res.name


def _ops(n, rng, s):
    x = rng.uniform(-2, 2, n).astype(np.float32)
    y = rng.uniform(-2, 2, n).astype(np.float32)
    dx, dy = ck.to_device(x, stream=s), ck.to_device(y, stream=s)
    hy = ck.to_device(y, stream=s, kind="pinned")  # pageable copies may block the host thread
    s.sync()
    return x, y, dx, dy, {
        "fill": (lambda out: ops.fill(out, 3.0, stream=s), lambda: np.full(n, 3.0)),
        "add": (lambda out: ops.add(dx, dy, out, stream=s), lambda: x.astype(np.float64) + y),
        "sub": (lambda out: ops.sub(dx, dy, out, stream=s), lambda: x.astype(np.float64) - y),
        "mul": (lambda out: ops.mul(dx, dy, out, stream=s), lambda: x.astype(np.float64) * y),
        "axpy": (lambda out: ops.axpy(2.0, dx, dy, out, stream=s), lambda: 2.0 * x.astype(np.float64) + y),
        "scale": (lambda out: ops.scale(0.5, dx, out, stream=s), lambda: 0.5 * x.astype(np.float64)),
        "copy": (lambda out: ops.copy(dx, out, stream=s), lambda: x.astype(np.float64)),
        "memset": (lambda out: ck.memset(out, 0x3F, stream=s), lambda: np.full(n, np.frombuffer(b"\x3f" * 4, np.float32)[0], np.float64)),
        "ck.copy_d2d": (lambda out: ck.copy(out, dx, stream=s), lambda: x.astype(np.float64)),
        "ck.copy_h2d": (lambda out: ck.copy(out, hy, stream=s), lambda: y.astype(np.float64)),
    }


OPS = ["fill", "add", "sub", "mul", "axpy", "scale", "copy", "memset", "ck.copy_d2d", "ck.copy_h2d"]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("op", OPS)
def test_op_waits_for_blocking_callback(device, rng, op, n):
    s = ck.Stream.create(device)
    side = ck.Stream.create(device)
    try:
        x, y, dx, dy, table = _ops(n, rng, s)
        run, ref = table[op]
        out = ck.to_device(np.full(n, np.nan, np.float32), stream=s)
        s.sync()
        gate, entered = threading.Event(), threading.Event()
        errors = s.add_callback(lambda: (entered.set(), gate.wait(HOLD_S)))
        t0 = time.perf_counter()
        run(out)
        queued_s = time.perf_counter() - t0
        try:
            assert queued_s < 2.0, f"{op}({n}) held the host {queued_s:.1f} s behind the callback (a hidden sync)"
            assert entered.wait(10), "the host callback never started"
            assert s.done() is False, f"{op}({n}) queued behind a blocked callback, yet the stream reports done"
            assert _raw_query(s) == "CUDA_ERROR_NOT_READY"
            early = ck.empty(n, np.float32, stream=side)
            ck.copy(early, out, stream=side)
            snap = early.to_numpy(stream=side)
            assert np.isnan(snap).all(), f"{op}({n}) wrote its output before the callback returned"
        finally:
            gate.set()
        s.sync()
        assert errors == []
        got = out.to_numpy(stream=s).astype(np.float64)
        np.testing.assert_allclose(got, ref(), rtol=2e-7, atol=0)
        assert s.done() is True and _raw_query(s) == "CUDA_SUCCESS"
    finally:
        s.sync()
        side.sync()
        s.close()
        side.close()


@pytest.mark.parametrize("n", SIZES)
def test_dot_and_matmul_wait_for_blocking_callback(device, rng, n):
    s = ck.Stream.create(device)
    try:
        x = rng.uniform(-1, 1, n).astype(np.float32)
        dx = ck.to_device(x, stream=s)
        m = 37
        a = rng.uniform(-1, 1, (m, m)).astype(np.float32)
        da = ck.to_device(a, stream=s)
        s.sync()
        gate, entered = threading.Event(), threading.Event()
        s.add_callback(lambda: (entered.set(), gate.wait(HOLD_S)))
        d = ops.dot(dx, dx, stream=s)
        c = ops.matmul(da, da, stream=s)
        try:
            assert entered.wait(10)
            assert s.done() is False and _raw_query(s) == "CUDA_ERROR_NOT_READY"
        finally:
            gate.set()
        got = float(d.to_numpy(stream=s))
        assert abs(got - float(x.astype(np.float64) @ x)) <= 1e-5 * max(1.0, abs(got))
        ref = a.astype(np.float64) @ a
        np.testing.assert_allclose(c.to_numpy(stream=s), ref, rtol=1e-4, atol=1e-4)
    finally:
        s.sync()
        s.close()
