"""Runtime layer on a real GPU: devices, contexts, streams, events, memory, modules, launches."""

from __future__ import annotations

import gc
import shutil
import subprocess
import threading
import weakref

import numpy as np
import pytest

import cudart_kit as ck
from cudart_kit import _driver as drv
from cudart_kit import ops


# ---- devices & contexts -------------------------------------------------------------------

def test_device_identity(device):
    assert ck.device_count() >= 1
    assert ck.devices()[0] is device
    assert device.name and device.name == device.core.name
    assert device.uuid and device.pci_bus_id.count(":") == 2
    major, minor = device.compute_capability
    assert major >= 7 and device.arch == f"{major}{minor}"
    attrs = device.attributes()
    assert len(attrs) > 100
    assert attrs["multiprocessor_count"] == device.core.properties.multiprocessor_count
    assert attrs["compute_capability_major"] == major
    assert attrs["max_threads_per_block"] == 1024
    mi = device.memory_info()
    assert 0 < mi.free_bytes <= mi.total_bytes


def test_out_of_range_device():
    with pytest.raises(ck.NoDeviceError, match="out of range"):
        ck.get_device(ck.device_count() + 3)


def test_activate_restores_foreign_context(device):
    d = drv.driver()
    primary = device.primary_context
    res, other = d.cuCtxCreate(None, 0, device.ordinal)
    assert res == 0, res
    try:
        # cuCtxCreate made `other` current; the kit must work and hand it back
        assert drv.ctx_get_current() == int(other)
        s = ck.Stream.create(device)
        x = ck.to_device(np.arange(10, dtype=np.float32), stream=s)
        ops.add(x, x, stream=s)
        s.sync()
        assert drv.ctx_get_current() == int(other)
        with device.activate():
            assert drv.ctx_get_current() == primary
        assert drv.ctx_get_current() == int(other)
        s.close()
    finally:
        drv.ctx_set_current(primary)
        d.cuCtxDestroy(other)


# ---- streams ------------------------------------------------------------------------------

def test_stream_priority(device):
    lowest, highest = device.stream_priority_range
    s = ck.Stream.create(device, priority=highest)
    assert s.priority == highest and s.is_nonblocking
    s.close()
    with pytest.raises(ValueError, match="outside the device's range"):
        ck.Stream.create(device, priority=highest - 5)


def test_stream_close_idempotent(device):
    s = ck.Stream.create(device)
    s.close()
    s.close()
    with pytest.raises(ck.ClosedError):
        s.sync()


def _blocker(stream):
    """Hold ``stream`` at a host callback until the returned event is set."""
    gate = threading.Event()
    stream.add_callback(lambda: gate.wait(30))
    return gate


def test_done_wait_callback(device, stream):
    gate = _blocker(stream)
    assert not stream.done()
    other = ck.Stream.create(device)
    other.wait(stream)  # other now waits behind the blocked stream
    assert not other.done()
    seen = []
    errs = stream.add_callback(lambda: seen.append("ran"))
    gate.set()
    other.sync()
    stream.sync()
    assert stream.done() and other.done()
    assert seen == ["ran"] and errs == []
    bad = stream.add_callback(lambda: 1 / 0)
    stream.sync()
    assert len(bad) == 1 and isinstance(bad[0], ZeroDivisionError)
    other.close()


def test_adopt_foreign_streams(device, rng):
    cp = pytest.importorskip("cupy")
    torch = pytest.importorskip("torch")
    xh = rng.standard_normal(1000).astype(np.float32)
    for foreign in (cp.cuda.Stream(non_blocking=True), torch.cuda.Stream()):
        s = ck.Stream.adopt(foreign)
        assert not s.owned and s.device == device
        x = ck.to_device(xh, stream=s)
        y = ops.scale(2.0, x, stream=s)
        np.testing.assert_array_equal(y.to_numpy(stream=s), 2 * xh)
        s.close()  # releases, never destroys the library's stream
        foreign.synchronize()
    raw = ck.Stream.adopt(torch.cuda.current_stream().cuda_stream)
    raw.sync()
    # and the other way round: CuPy runs on a kit stream through __cuda_stream__ / its handle
    ks = ck.Stream.create(device)
    ext = cp.cuda.ExternalStream(ks.handle)
    with ext:
        a = cp.arange(10)
    ks.sync()
    assert int(a.sum()) == 45
    ks.close()


def test_wrong_stream_object():
    with pytest.raises(ck.StreamError, match="cannot use"):
        ck.Stream.adopt("not a stream")


# ---- events -------------------------------------------------------------------------------

def test_timing_not_ready_then_ready(stream, rng):
    x = ck.to_device(rng.standard_normal(1 << 20).astype(np.float32), stream=stream)
    gate = _blocker(stream)
    _, rec = ops.add(x, x, stream=stream, timed=True)
    with pytest.raises(ck.NotReadyError, match="sync"):
        rec.elapsed_ms()
    assert not rec.done()
    gate.set()
    rec.sync()
    assert rec.elapsed_ms() > 0
    untimed = ck.launch(ck.load_kit_module("vector").kernel("scale_f32"), 1, 32, 1.0, x, x, 32, stream=stream)
    with pytest.raises(ck.UntimedError, match="timed=True"):
        untimed.elapsed_ms()


def test_event_record_wait(device, stream):
    e = stream.record(timing=True)
    e.sync()
    assert e.done()
    s2 = ck.Stream.create(device)
    s2.wait(e)
    s2.sync()
    s2.close()


# ---- memory -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["device", "pinned", "managed"])
@pytest.mark.parametrize("n", [1, 31, 257, 1000003])
def test_roundtrip_kinds(kind, n, stream, rng):
    h = rng.standard_normal(n)
    a = ck.empty(n, np.float64, stream=stream, kind=kind)
    assert a.kind == kind and a.shape == (n,) and a.nbytes == 8 * n
    a.copy_from(h, stream=stream)
    b = ck.empty(n, np.float64, stream=stream)
    ck.copy(b, a, stream=stream)  # device <- kind
    back = np.full(n, np.nan)
    ck.copy(back, b, stream=stream)
    stream.sync()
    np.testing.assert_array_equal(back, h)
    if kind != "device":
        np.testing.assert_array_equal(a.numpy(), h)  # zero-copy host view
    else:
        with pytest.raises(ck.DeviceMismatchError, match="not host-accessible"):
            a.numpy()


def test_pinned_vs_pageable(stream, rng):
    n = 1 << 22
    h = rng.standard_normal(n).astype(np.float32)
    pinned = ck.empty(n, np.float32, stream=stream, kind="pinned")
    pinned.numpy()[:] = h
    d = ck.empty(n, np.float32, stream=stream)
    r1 = ck.copy(d, pinned, stream=stream, timed=True)
    r2 = ck.copy(d, h, stream=stream, timed=True)
    out_pinned = ck.empty(n, np.float32, stream=stream, kind="pinned")
    ck.copy(out_pinned, d, stream=stream)
    stream.sync()
    assert r1.meta["direction"] == "H2D" and r2.meta["direction"] == "H2D"
    assert r1.elapsed_ms() > 0 and r2.elapsed_ms() > 0
    np.testing.assert_array_equal(out_pinned.numpy(), h)


def test_managed_prefetch_advise(device, stream, rng):
    n = 1 << 20
    h = rng.standard_normal(n).astype(np.float32)
    m = ck.empty(n, np.float32, stream=stream, kind="managed")
    m.numpy()[:] = h
    m.advise("preferred_location", device)
    m.advise("accessed_by", device)
    m.prefetch(device, stream=stream)
    ops.scale(3.0, m, m, stream=stream)
    m.prefetch("host", stream=stream)
    stream.sync()
    np.testing.assert_allclose(m.numpy(), np.float32(3.0) * h, rtol=1.2e-7)
    with pytest.raises(ck.DeviceMismatchError, match="managed"):
        ck.empty(4, np.float32, stream=stream).prefetch(device, stream=stream)


def test_lifetime_across_streams(device, rng):
    """Freed while another stream still has queued work on it: the memory must not be reused early."""
    s1, s2 = ck.Stream.create(device), ck.Stream.create(device)
    n = 1 << 22
    h = rng.standard_normal(n).astype(np.float32)
    src = ck.to_device(h, stream=s1)
    dst = ck.empty(n, np.float32, stream=s1)
    s1.sync()
    gate = _blocker(s2)
    ops.scale(2.0, src, dst, stream=s2)  # queued behind the gate
    ptr = src.ptr
    del src
    gc.collect()
    # s1 now allocates and poisons memory; without ordering it could reuse src's block
    junk = [ck.empty(n, np.float32, stream=s1) for _ in range(4)]
    for j in junk:
        ops.fill(j, np.nan, stream=s1)
    gate.set()
    s2.sync()
    s1.sync()
    np.testing.assert_array_equal(dst.to_numpy(stream=s2), 2 * h)
    assert ptr  # the test exercised a real allocation
    s1.close()
    s2.close()


def test_out_of_memory_then_usable(device, stream):
    total = device.memory_info().total_bytes
    # more than the device has: refused by the size check, before the pool is asked
    with pytest.raises(ck.CudaOutOfMemoryError) as info:
        ck.empty(total * 4, np.uint8, stream=stream)
    assert isinstance(info.value, MemoryError) and info.value.result == "CUDA_ERROR_OUT_OF_MEMORY"
    msg = str(info.value)
    assert f"requested {total * 4} bytes" in msg and f"on device {device.ordinal} which has" in msg, msg
    # less than the device has but more than is free (the context holds some): the driver's
    # out-of-memory, after the kit trimmed the pool and retried once
    with pytest.raises(ck.CudaOutOfMemoryError) as info:
        ck.empty(total - (1 << 20), np.uint8, stream=stream)
    msg = str(info.value)
    assert "cuMemAllocAsync failed with CUDA_ERROR_OUT_OF_MEMORY" in msg and "GiB free of" in msg, msg
    a = ck.to_device(np.arange(100, dtype=np.float32), stream=stream)
    np.testing.assert_array_equal(a.to_numpy(stream=stream), np.arange(100, dtype=np.float32))


def test_sizes_past_64_bits_are_shape_errors(stream):
    for shape, dtype in (((2**61,), np.float64), ((2**40, 2**40), np.float32), (2**64, np.uint8)):
        with pytest.raises(ck.ShapeError, match="no address space can hold it"):
            ck.empty(shape, dtype, stream=stream)
    a = ck.to_device(np.arange(10, dtype=np.float32), stream=stream)
    np.testing.assert_array_equal(a.to_numpy(stream=stream), np.arange(10, dtype=np.float32))


def test_bad_device_and_stream_arguments(device):
    for bad in ("gpu0", "x", 1.5, True):
        with pytest.raises(ck.ArgumentError, match="device must be a cudart_kit.Device, an ordinal"):
            ck.Stream.create(bad)
        with pytest.raises(ck.ArgumentError, match="device must be"):
            ck.get_device(bad)
    assert ck.get_device("0") is device and ck.get_device(np.int64(0)) is device
    with pytest.raises(ck.NoDeviceError, match="out of range"):
        ck.get_device(-1)
    s = ck.Stream.create(device)
    s.close()
    with pytest.raises(ck.ClosedError, match=r"^stream <cudart_kit\.Stream 0x[0-9a-f]+ owned device=0 closed> is closed"):
        ck.as_stream(s)


def test_census_counts(stream):
    before = ck.census()["memory"]["device"]["arrays"]
    a = ck.empty(1000, np.float32, stream=stream)
    assert ck.census()["memory"]["device"]["arrays"] == before + 1
    a.close()
    a.close()
    assert ck.census()["memory"]["device"]["arrays"] == before
    assert a.is_closed
    with pytest.raises(ck.ClosedError):
        a.numpy()


# ---- modules & launches -------------------------------------------------------------------

USER_SRC = r"""
extern "C" __global__ void store_args(int i, float f, double d, long long l, unsigned char b, double* out) {
  if (threadIdx.x == 0 && blockIdx.x == 0) { out[0] = i; out[1] = f; out[2] = d; out[3] = (double)l; out[4] = b; }
}
extern "C" __global__ void iota(float* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) out[i] = (float)i;
}
"""


@pytest.fixture(scope="module")
def user_artifacts(tmp_path_factory, device):
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    d = tmp_path_factory.mktemp("user")
    src = d / "user.cu"
    src.write_text(USER_SRC)
    arch = device.arch
    subprocess.run([nvcc, "-cubin", f"-arch=sm_{arch}", str(src), "-o", str(d / "user.cubin")], check=True)
    subprocess.run([nvcc, "-ptx", f"-arch=compute_{arch}", str(src), "-o", str(d / "user.ptx")], check=True)
    subprocess.run([nvcc, "--fatbin", f"-arch=sm_{arch}", str(src), "-o", str(d / "user.fatbin")], check=True)
    return d


@pytest.mark.parametrize("suffix", ["cubin", "ptx", "fatbin"])
@pytest.mark.parametrize("from_bytes", [False, True])
def test_user_module(suffix, from_bytes, user_artifacts, stream):
    path = user_artifacts / f"user.{suffix}"
    mod = ck.Module.load(path.read_bytes()) if from_bytes else ck.Module.load(path)
    assert mod.kind == suffix
    assert {"store_args", "iota"} <= set(mod.kernel_names())
    out = ck.to_device(np.full(5, np.nan), stream=stream)
    ck.launch(mod.kernel("store_args"), 1, 32, -7, 1.5, 2.25, 1 << 40, np.uint8(200), out, stream=stream)
    np.testing.assert_array_equal(out.to_numpy(stream=stream), [-7, 1.5, 2.25, float(1 << 40), 200])
    n = 1000
    iota = ck.to_device(np.full(n, np.nan, np.float32), stream=stream)
    ck.launch(mod["iota"], ck.blocks_for(n, 128), 128, iota, n, stream=stream)
    np.testing.assert_array_equal(iota.to_numpy(stream=stream), np.arange(n, dtype=np.float32))


def test_launch_errors_leave_everything_usable(user_artifacts, stream):
    mod = ck.Module.load(user_artifacts / "user.cubin")
    with pytest.raises(ck.KernelNotFoundError) as info:
        mod.kernel("iotta")
    assert "iota" in str(info.value) and "store_args" in str(info.value)
    k = mod.kernel("iota")
    out = ck.to_device(np.full(64, np.nan, np.float32), stream=stream)
    with pytest.raises(ck.ArgumentError, match="takes 2 arguments"):
        ck.launch(k, 1, 64, out, stream=stream)
    with pytest.raises(ck.ArgumentError, match="4-byte"):
        ck.launch(k, 1, 64, out, 1 << 40, stream=stream)
    with pytest.raises(ck.ArgumentError, match="pointer"):
        ck.launch(k, 1, 64, out, out, stream=stream)
    with pytest.raises(ck.ArgumentError, match="float64"):
        ck.launch(k, 1, 64, out, np.float64(3), stream=stream)
    with pytest.raises(ck.LaunchConfigError, match="1024"):
        ck.launch(k, 1, 2048, out, 64, stream=stream)
    with pytest.raises(ck.LaunchConfigError, match="grid"):
        ck.launch(k, (1, 1 << 20), 32, out, 64, stream=stream)
    with pytest.raises(ck.DeviceMismatchError, match="host memory"):
        ck.launch(k, 1, 64, np.zeros(64, np.float32), 64, stream=stream)
    ck.launch(k, 1, 64, out, 64, stream=stream)
    np.testing.assert_array_equal(out.to_numpy(stream=stream), np.arange(64, dtype=np.float32))


def test_prepared_launch(user_artifacts, device, stream):
    k = ck.Module.load(user_artifacts / "user.cubin").kernel("iota")
    out = ck.to_device(np.full(300, np.nan, np.float32), stream=stream)
    p = ck.prepare(k, 3, 128, out, 300, device=device)
    for _ in range(3):
        p.launch(stream)
    rec = p.launch(stream, timed=True)
    rec.sync()
    assert rec.elapsed_ms() >= 0
    np.testing.assert_array_equal(out.to_numpy(stream=stream), np.arange(300, dtype=np.float32))
    # the prepared launch holds its arrays, and refuses them once closed
    ref = weakref.ref(out)
    del out
    gc.collect()
    assert ref() is not None
    # a stream launched on before (the direct path caches its handle) and then closed is refused
    s2 = ck.Stream.create(device)
    p.launch(s2)
    p.launch(s2)
    s2.sync()
    s2.close()
    with pytest.raises(ck.ClosedError, match="is closed"):
        p.launch(s2)
    p.launch(stream)
    ref().close()
    with pytest.raises(ck.ClosedError, match=r"^prepared launch of iota: argument 0 is closed"):
        p.launch(stream)
    with pytest.raises(ck.ClosedError, match=r"^prepared launch of iota: argument 0 is closed"):
        p.launch(stream)  # still refused, still usable for its error


def test_prepared_launch_with_a_torch_tensor(user_artifacts, device, stream):
    torch = pytest.importorskip("torch")
    k = ck.Module.load(user_artifacts / "user.cubin").kernel("iota")
    t = torch.full((300,), float("nan"), device="cuda")
    torch.cuda.synchronize()
    p = ck.prepare(k, 3, 128, t, 300, device=device)
    p.launch(stream)
    p.launch(stream)
    stream.sync()
    np.testing.assert_array_equal(t.cpu().numpy(), np.arange(300, dtype=np.float32))


def test_benchmark_helper(stream, rng):
    x = ck.to_device(rng.standard_normal(1 << 20).astype(np.float32), stream=stream)
    res = ck.benchmark(lambda s: ops.add(x, x, x, stream=s), stream=stream, repeat=7, flush_l2=True, name="add")
    assert len(res.samples_ms) >= 7 and res.median_ms > 0 and res.min_ms <= res.median_ms <= res.max_ms
    assert res.gbps(3 * x.nbytes) > 0


def test_kit_kernels_fresh_artifact(device):
    from cudart_kit import build

    st = build.status("vector")
    assert st.state == "fresh", st.reason
    mod = ck.load_kit_module("vector")
    assert "add_f32" in mod.kernel_names()
    attrs = mod.kernel("add_f32").attributes(device)
    assert attrs["local_size_bytes"] == 0 and attrs["num_regs"] > 0
