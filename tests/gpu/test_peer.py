"""GPU tests of peers: Device.can_access_peer / enable_peer_access on the device itself,
copy_peer (between two arrays of one device it is cudart_kit.copy: checked against numpy on
fresh random data at awkward sizes, outputs poisoned first) and its refusals on real arrays, the
device-to-device matrices on this machine (one GPU: a waived 1x1 matrix), and, where a second
GPU is visible, peer access, copies between GPUs and their ordering, and the 2x2 matrix. Every
test that needs a second GPU is skipped with the reason "needs 2 GPUs" on a one-GPU machine.

No speed is asserted: figures only have to be real, positive numbers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cudart_kit as ck
from cudart_kit import bandwidth as bw
from cudart_kit.bandwidth import matrix as mx
from cudart_kit.memory import transfer
from cudart_kit.memory.peer import copy_peer

REPO = Path(__file__).resolve().parents[2]
SIZES = [1, 31, 257, 1000003]
POISON = {np.dtype(np.float32): np.float32(np.nan), np.dtype(np.float64): np.float64(np.nan),
          np.dtype(np.int32): np.int32(-0x5A5A5A5A), np.dtype(np.uint8): np.uint8(0xA5)}


def _two_gpus():
    if ck.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    return ck.get_device(0), ck.get_device(1)


def _random(rng, shape, dtype):
    if np.dtype(dtype).kind == "f":
        return rng.uniform(-3, 3, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def _poisoned(shape, dtype, s):
    """An array on ``s``'s device filled with the poison of its dtype (an unwritten element shows)."""
    out = ck.to_device(np.full(shape, POISON[np.dtype(dtype)], dtype), stream=s)
    s.sync()
    return out


def _same(got, want):
    np.testing.assert_array_equal(got, want)  # copies are exact; NaN poison left behind fails here


# --- the device itself ----------------------------------------------------------------------------

def test_a_device_reaches_its_own_memory(device):
    assert device.can_access_peer(device) and device.can_access_peer(device.ordinal)
    assert device.peer_access_enabled(device)
    device.enable_peer_access(device)  # no-op, idempotent
    device.enable_peer_access(device.ordinal)
    device.disable_peer_access(device)  # no-op
    assert device.peer_access_enabled(device)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.uint8])
def test_copy_peer_on_one_device_is_the_normal_copy(n, dtype, stream, rng):
    h = _random(rng, (n,), dtype)
    src = ck.to_device(h, stream=stream)
    dst = _poisoned((n,), dtype, stream)
    rec = copy_peer(dst, src, stream=stream, timed=True)
    assert rec.meta["direction"] == "D2D" and rec.meta["bytes"] == h.nbytes
    _same(dst.to_numpy(stream=stream), h)
    assert rec.elapsed_ms() >= 0


@pytest.mark.parametrize("view", ["rows", "columns", "stepped", "transposed"])
def test_copy_peer_of_views_on_one_device(view, stream, rng):
    h = _random(rng, (257, 97), np.float32)
    take = {"rows": lambda a: a[3:250], "columns": lambda a: a[:, 5:90], "stepped": lambda a: a[::3, 1:],
            "transposed": lambda a: a.T}[view]
    src = ck.to_device(h, stream=stream)
    want = take(h)
    dst = _poisoned(want.shape, np.float32, stream)
    copy_peer(dst, take(src), stream=stream)
    _same(dst.to_numpy(stream=stream), want)


def test_copy_peer_refusals_on_real_arrays(stream, rng):
    a = ck.to_device(_random(rng, (64, 33), np.float32), stream=stream)
    b = ck.empty((64, 33), np.float32, stream=stream)
    with pytest.raises(ck.ShapeError, match="copy"):
        copy_peer(b, a[:, :32], stream=stream)
    with pytest.raises(ck.DTypeError, match="copies never convert"):
        copy_peer(ck.empty((64, 33), np.float64, stream=stream), a, stream=stream)
    with pytest.raises(ck.DeviceMismatchError, match=r"numpy array .*cudart_kit.copy"):
        copy_peer(np.empty((64, 33), np.float32), a, stream=stream)
    pinned = ck.empty((64, 33), np.float32, stream=stream, kind="pinned")
    with pytest.raises(ck.DeviceMismatchError, match="pinned memory.*cudart_kit.copy"):
        copy_peer(pinned, a, stream=stream)
    c = ck.empty((64, 33), np.float32, stream=stream)
    c.close()
    with pytest.raises(ck.ClosedError, match="copy_peer: src is closed"):
        copy_peer(b, c, stream=stream)
    with pytest.raises(ck.ClosedError, match="copy_peer: dst is closed"):
        copy_peer(c, a, stream=stream)
    stream.sync()
    pinned.close()


# --- the matrices on this machine ------------------------------------------------------------------

def test_matrix_of_one_gpu_is_waived(device):
    doc = bw.run(bw.Options(testcases=mx.TESTCASE_NAMES, directions=(), peer_devices=[device.ordinal]))
    assert doc["results"] == [] and [d["index"] for d in doc["devices"]] == [device.ordinal]
    assert [t["name"] for t in doc["testcases"]] == list(mx.TESTCASE_NAMES)
    for t in doc["testcases"]:
        assert t["status"] == "waived" and t["gbps"] == [[None]] and "2+ GPUs" in t["note"]
    json.loads(json.dumps(doc, allow_nan=False))


def run_cli(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("CUDART_KIT_TRACEBACK", None)
    return subprocess.run([sys.executable, "-m", "cudart_kit.cli", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=600)


def test_matrix_command_on_every_visible_gpu():
    n = ck.device_count()
    out = run_cli("bandwidth", "--matrix", "--size", "8M", "--repeat", "3", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert doc["schema"] == bw.SCHEMA and doc["results"] == [] and len(doc["devices"]) == n
    for t in doc["testcases"]:
        assert t["devices"] == list(range(n)) and len(t["gbps"]) == n and all(len(r) == n for r in t["gbps"])
        assert all(t["gbps"][i][i] is None for i in range(n))
        for cell in t["cells"]:
            assert math.isfinite(cell["gbps"]) and cell["gbps"] > 0 and cell["row"] != cell["column"]
        if n == 1:
            assert t["status"] == "waived" and "2+ GPUs" in t["note"]
    text = run_cli("bandwidth", "--testcase", "device_to_device_memcpy_read_ce", "--size", "8M", "--repeat", "3")
    assert text.returncode == 0, text.stderr
    assert "SUM device_to_device_memcpy_read_ce" in text.stdout and "N/A" in text.stdout
    if n == 1:
        assert "waived: peer tests need 2+ GPUs" in text.stdout


# --- two GPUs ----------------------------------------------------------------------------------------

def test_peer_access_between_two_gpus():
    a, b = _two_gpus()
    if not a.can_access_peer(b):
        with pytest.raises(ck.DeviceCapabilityError, match="cuDeviceCanAccessPeer"):
            a.enable_peer_access(b)
        pytest.skip("these two GPUs have no peer path")
    a.enable_peer_access(b)
    a.enable_peer_access(b)  # idempotent
    assert a.peer_access_enabled(b)
    b.enable_peer_access(a)
    assert b.peer_access_enabled(a)
    # the grant reaches the pool kit arrays come from
    assert a.ordinal in {d if isinstance(d, int) else d.device_id for d in b.core.memory_resource.peer_accessible_by}


@pytest.mark.parametrize("enabled", [False, True], ids=["staged", "direct"])
@pytest.mark.parametrize("issuer", ["dst", "src"], ids=["read", "write"])
@pytest.mark.parametrize("n", SIZES)
def test_copy_between_two_gpus(n, issuer, enabled, rng):
    a, b = _two_gpus()
    capable = a.can_access_peer(b) and b.can_access_peer(a)
    if enabled and not capable:
        pytest.skip("these two GPUs have no peer path")
    for x, y in ((a, b), (b, a)):
        if enabled:
            x.enable_peer_access(y)
        elif capable:
            x.disable_peer_access(y)  # through host memory: the copy needs no peer access
            assert not x.peer_access_enabled(y)
    sa, sb = ck.Stream.create(a), ck.Stream.create(b)
    h = _random(rng, (n,), np.float32)
    src = ck.to_device(h, stream=sb)
    dst = _poisoned((n,), np.float32, sa)
    s = sa if issuer == "dst" else sb
    copy_peer(dst, src, stream=s)  # no sync before: copy_peer orders the copy after the other GPU's stream
    sa.wait(s)  # read dst back on its own GPU
    _same(dst.to_numpy(stream=sa), h)


@pytest.mark.parametrize("view", ["rows", "columns", "one_row"])
def test_pitched_copy_between_two_gpus(view, rng):
    a, b = _two_gpus()
    sa, sb = ck.Stream.create(a), ck.Stream.create(b)
    take = {"rows": lambda x: x[3:250], "columns": lambda x: x[:, 5:90], "one_row": lambda x: x[7:8, 5:90]}[view]
    h = _random(rng, (257, 97), np.float64)
    src = ck.to_device(h, stream=sb)
    base = ck.to_device(np.full((257, 97), np.nan), stream=sa)
    copy_peer(take(base), take(src), stream=sa)
    got = base.to_numpy(stream=sa)
    want = np.full((257, 97), np.nan)
    take(want)[...] = take(h)
    _same(got, want)


def test_strided_copy_between_two_gpus_names_the_layouts():
    a, b = _two_gpus()
    sa, sb = ck.Stream.create(a), ck.Stream.create(b)
    x, y = ck.empty((64, 64), np.float32, stream=sa), ck.empty((64, 64), np.float32, stream=sb)
    with pytest.raises(ck.ShapeError, match="rows at a pitch"):
        copy_peer(x[:, ::2], y[:, ::2], stream=sa)
    if ck.device_count() >= 3:
        with pytest.raises(ck.DeviceMismatchError, match="use a stream of dst's device"):
            copy_peer(x, y, stream=ck.Stream.create(ck.get_device(2)))


def test_copy_orders_after_work_on_the_other_gpu(rng):
    """A long kernel writes the source on GPU 1; the copy is queued on GPU 0 right after, with no
    host synchronization: it must see the kernel's result (copy_peer waits on GPU 1's stream)."""
    from cudart_kit import ops

    a, b = _two_gpus()
    sa, sb = ck.Stream.create(a), ck.Stream.create(b)
    n = 1 << 26  # 256 MiB of float32
    src = ck.zeros(n, np.float32, stream=sb)
    dst = _poisoned((n,), np.float32, sa)
    sb.sync()
    for _ in range(20):  # ~2 ms of work on GPU 1 before the value the copy must see
        ops.fill(src, 1.0, stream=sb)
    ops.fill(src, 7.0, stream=sb)
    copy_peer(dst, src, stream=sa)
    got = dst.to_numpy(stream=sa)
    assert np.all(got == 7.0)


def test_cudart_kit_copy_routes_between_gpus(rng):
    a, b = _two_gpus()
    if not hasattr(transfer, "copy_peer"):
        pytest.skip("cudart_kit.copy does not dispatch to copy_peer yet (memory/transfer.py)")
    sa, sb = ck.Stream.create(a), ck.Stream.create(b)
    h = _random(rng, (1000003,), np.float32)
    src = ck.to_device(h, stream=sb)
    dst = _poisoned(h.shape, np.float32, sa)
    rec = ck.copy(dst, src, stream=sa)
    assert rec.meta.get("src_device") == b.ordinal
    _same(dst.to_numpy(stream=sa), h)


def test_matrix_of_two_gpus():
    a, b = _two_gpus()
    doc = bw.run(bw.Options(testcases=mx.TESTCASE_NAMES, directions=(), peer_devices=[a.ordinal, b.ordinal],
                            sizes=[8 << 20], repeat=3, warmup=0))
    peer = a.can_access_peer(b) and b.can_access_peer(a)
    for t in doc["testcases"]:
        assert t["devices"] == [a.ordinal, b.ordinal] and t["gbps"][0][0] is None and t["gbps"][1][1] is None
        if peer:
            assert t["status"] == "passed" and t["gbps"][0][1] > 0 and t["gbps"][1][0] > 0
            assert t["sum_gbps"] == pytest.approx(t["gbps"][0][1] + t["gbps"][1][0])
        else:
            assert t["status"] == "waived" and "no pair" in t["note"]
