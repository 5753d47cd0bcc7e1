"""CUDA graphs of kit work, threads launching on their own streams, and the leak census."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

import cudart_kit as ck
from cudart_kit import ops


def test_graph_replay_n_times(device, stream, rng):
    n = 100_003
    xh = rng.standard_normal(n).astype(np.float32)
    x = ck.to_device(xh, stream=stream)
    acc = ck.zeros(n, np.float32, stream=stream)
    r = ck.empty((), np.float32, stream=stream)
    with ck.graph.capture(stream) as cap:
        ops.axpy(1.0, x, acc, stream=cap.stream)        # acc += x
        ops.dot(acc, x, r, stream=cap.stream)           # workspace alloc/free become graph nodes
    g = cap.graph
    reps = 25
    for _ in range(reps):
        g.replay(stream)
    got_acc = acc.to_numpy(stream=stream)
    ref = np.zeros(n, np.float32)
    for _ in range(reps):
        ref = ref + xh                                  # same float32 rounding sequence
    np.testing.assert_array_equal(got_acc, ref)
    got_r = float(r.to_numpy(stream=stream))
    want = float(np.dot(ref.astype(np.float64), xh.astype(np.float64)))
    assert abs(got_r - want) <= 1e-6 * abs(want)
    g.close()


def test_graph_replay_while_the_pool_caches_most_memory(device, stream, rng):
    """A graph's allocation nodes draw on the graph pool: replay must succeed even when the kit's
    device pool keeps most of the device cached from arrays already freed (it is trimmed and the
    launch retried)."""
    n = 65_537
    xh = rng.standard_normal(n).astype(np.float32)
    x = ck.to_device(xh, stream=stream)
    r = ck.empty((), np.float32, stream=stream)
    with ck.graph.capture(stream) as cap:
        ops.dot(x, x, r, stream=cap.stream)  # its workspace is a graph allocation node
    g = cap.graph
    free = device.memory_info().free_bytes
    big = ck.empty(int(free * 0.97) // 4, np.float32, stream=stream)
    ck.memset(big, 1, stream=stream)
    big.close()  # freed in stream order: the pool may keep the pages cached
    ck.memset(r, 0xFF, stream=stream)
    g.replay(stream)
    got = float(r.to_numpy(stream=stream))
    want = float(np.dot(xh.astype(np.float64), xh.astype(np.float64)))
    assert abs(got - want) <= 1e-5 * abs(want)
    g.close()


def test_graph_keeps_arrays_alive(stream, rng):
    h = rng.standard_normal(4096).astype(np.float32)
    out = ck.empty(4096, np.float32, stream=stream)
    x = ck.to_device(h, stream=stream)
    with ck.graph.capture(stream) as cap:
        ops.scale(3.0, x, out, stream=cap.stream)
    del x
    gc.collect()
    cap.graph.replay(stream)
    np.testing.assert_array_equal(out.to_numpy(stream=stream), np.float32(3.0) * h)


def test_no_allocation_inside_capture(stream):
    x = ck.empty(16, np.float32, stream=stream)
    with pytest.raises(ck.StreamError, match="captured into a graph"):
        with ck.graph.capture(stream) as cap:
            ops.add(x, x, stream=cap.stream)            # would allocate its output
    # the stream is usable afterwards
    ops.fill(x, 1.0, stream=stream)
    np.testing.assert_array_equal(x.to_numpy(stream=stream), np.ones(16, np.float32))


def test_threads_on_own_streams(device, rng):
    """Eight threads, each with its own stream and data, launching at once."""
    n_threads, n = 8, 200_003
    inputs = [rng.standard_normal(n).astype(np.float32) for _ in range(n_threads)]
    results: dict[int, np.ndarray] = {}
    errors: list = []
    start = threading.Barrier(n_threads)

    def work(i):
        try:
            start.wait()
            s = ck.Stream.create(device)
            x = ck.to_device(inputs[i], stream=s)
            y = ck.empty_like(x, stream=s)
            for k in range(20):
                ops.scale(float(i + 1), x, y, stream=s)
                ops.add(y, x, y, stream=s)
            results[i] = y.to_numpy(stream=s)
            s.close()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(n_threads):
        ref = (np.float32(i + 1) * inputs[i]) + inputs[i]
        np.testing.assert_array_equal(results[i], ref)


def test_threads_share_one_graph_free_context(device):
    """A thread that never touched CUDA can use the kit: activate() sets its context up."""
    out = {}

    def work():
        s = ck.Stream.create(device)
        a = ck.to_device(np.arange(5, dtype=np.float64), stream=s)
        out["v"] = ops.dot(a, a, stream=s).to_numpy(stream=s)
        s.close()

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert float(out["v"]) == 30.0


def test_census_returns_to_baseline(stream):
    gc.collect()
    before = ck.census()["memory"]
    arrays = [ck.empty(1 << 16, np.float32, stream=stream, kind=k) for k in ("device", "pinned", "managed")]
    mid = ck.census()["memory"]
    for k in ("device", "pinned", "managed"):
        assert mid[k]["arrays"] == before[k]["arrays"] + 1
        assert mid[k]["bytes"] == before[k]["bytes"] + (1 << 18)
    del arrays
    gc.collect()
    stream.sync()
    after = ck.census()["memory"]
    for k in ("device", "pinned", "managed"):
        assert after[k]["arrays"] == before[k]["arrays"]


def test_leak_guard_catches_and_passes(device):
    from cudart_kit.accounting import LeakError, assert_no_leaks

    kept = []
    with pytest.raises(LeakError, match="streams: .* -> .*events"):
        with assert_no_leaks():
            s = ck.Stream.create(device)
            kept.append((s, s.record(timing=True)))
    for s, e in kept:
        e.close()
        s.close()
    with assert_no_leaks():  # clean use: everything closed or collected
        s = ck.Stream.create(device)
        x = ck.to_device(np.arange(10, dtype=np.float32), stream=s)
        with ck.graph.capture(s) as cap:
            ops.scale(2.0, x, x, stream=cap.stream)
        cap.graph.replay(s)
        s.sync()
        cap.graph.close()
        del x, cap
        s.close()
    snap = ck.census(pools=True)
    assert snap["streams"]["high"] >= 1 and device.ordinal in snap["pools"]
    assert snap["pools"][device.ordinal]["reserved_mem_high"] > 0
