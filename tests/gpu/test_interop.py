"""Zero-copy interop with PyTorch, CuPy, JAX and Numba; stream ordering across libraries."""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest

import cudart_kit as ck
from cudart_kit import _dlpack, ops

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX must not grab the GPU


def test_torch_roundtrip_same_pointer(stream, rng):
    torch = pytest.importorskip("torch")
    h = rng.standard_normal((37, 53)).astype(np.float32)
    a = ck.to_device(h, stream=stream)
    t = torch.from_dlpack(a)  # the kit's stream is ordered before torch's current stream
    assert t.data_ptr() == a.ptr and tuple(t.shape) == (37, 53) and t.is_cuda
    np.testing.assert_array_equal(t.cpu().numpy(), h)
    back = ck.asarray(t)
    assert back.ptr == a.ptr and back.shape == (37, 53) and back.dtype == np.float32
    # lifetime: the consumer keeps the memory alive after the kit drops its array
    del a, back
    gc.collect()
    torch.cuda.synchronize()
    np.testing.assert_array_equal(t.cpu().numpy(), h)
    del t
    gc.collect()
    assert _dlpack.live_exports() == 0


def test_torch_bf16_via_dlpack(stream, rng):
    torch = pytest.importorskip("torch")
    t = torch.randn(1001, device="cuda").to(torch.bfloat16)
    k = ck.asarray(t)  # no CAI typestr for bf16: comes through DLPack
    assert k.ptr == t.data_ptr() and k.dtype.name == "bfloat16"
    out = ops.add(k, k, stream=stream)
    got = torch.from_dlpack(out).float().cpu().numpy()
    np.testing.assert_allclose(got, (t.float() * 2).cpu().numpy(), rtol=8e-3)


def test_cupy_roundtrip_same_pointer(stream, rng):
    cp = pytest.importorskip("cupy")
    h = rng.standard_normal(1000).astype(np.float64)
    a = ck.to_device(h, stream=stream)
    stream.sync()
    c = cp.asarray(a)  # CUDA Array Interface
    assert c.data.ptr == a.ptr
    c2 = cp.from_dlpack(a)
    assert c2.data.ptr == a.ptr
    np.testing.assert_array_equal(cp.asnumpy(c2), h)
    k = ck.asarray(c)
    assert k.ptr == a.ptr


def test_stream_order_torch_kit_torch(stream, rng):
    """A torch op, then a kit op on torch's stream, then torch reads the result: no syncs between."""
    torch = pytest.importorskip("torch")
    n = 1 << 22
    x = torch.from_numpy(rng.standard_normal(n).astype(np.float32)).cuda()
    ts = torch.cuda.Stream()
    with torch.cuda.stream(ts):
        y = x * 3.0 + 1.0                       # torch work on ts
        out = torch.empty_like(y)
        ops.scale(2.0, y, out, stream=ts)       # kit work on the same stream
        z = out.sum()                           # torch reads in stream order
    ts.synchronize()
    ref = (2.0 * (x.double() * 3.0 + 1.0)).sum().item()
    assert abs(z.item() - ref) <= 1e-4 * abs(ref) + 1e-2


def test_producer_stream_is_waited_on(device, rng):
    """Kit work on a second stream must see data a first stream is still producing."""
    import threading

    torch = pytest.importorskip("torch")
    s1, s2 = ck.Stream.create(device), ck.Stream.create(device)
    h = rng.standard_normal(1 << 20).astype(np.float32)
    a = ck.empty(h.size, np.float32, stream=s1)
    gate = threading.Event()
    s1.add_callback(lambda: gate.wait(30))
    ck.copy(a, h, stream=s1)                    # pending behind the gate
    t = torch.from_dlpack(a)                    # torch's stream now waits on s1
    done = t * 1.0                              # queued, must not run before the copy
    gate.set()
    torch.cuda.synchronize()
    np.testing.assert_array_equal(done.cpu().numpy(), h)
    s1.sync()
    s1.close()
    s2.close()


def test_pinned_and_managed_export(stream, rng):
    h = rng.standard_normal(100).astype(np.float32)
    p = ck.empty(100, np.float32, stream=stream, kind="pinned")
    p.numpy()[:] = h
    assert p.__dlpack_device__() == (_dlpack.kDLCUDAHost, 0)
    # CAI describes device memory only: pinned arrays do not have it, so probes fall back to DLPack
    assert not hasattr(p, "__cuda_array_interface__")
    with pytest.raises(AttributeError, match="pinned host array does not export __cuda_array_interface__"):
        p.__cuda_array_interface__
    m = ck.empty(100, np.float32, stream=stream, kind="managed")
    assert m.__cuda_array_interface__["data"] == (m.ptr, False)
    ck.copy(m, p, stream=stream)
    stream.sync()
    np.testing.assert_array_equal(p.numpy(), h)
    np.testing.assert_array_equal(m.numpy(), h)
    torch = pytest.importorskip("torch")
    tm = torch.from_dlpack(m)
    assert tm.data_ptr() == m.ptr
    np.testing.assert_array_equal(tm.cpu().numpy(), h)


def test_numba_and_jax(stream, rng):
    h = rng.standard_normal(257).astype(np.float32)
    a = ck.to_device(h, stream=stream)
    stream.sync()
    try:
        from numba import cuda as ncuda
    except Exception:
        ncuda = None
    if ncuda is not None:
        na = ncuda.as_cuda_array(a)
        assert na.__cuda_array_interface__["data"][0] == a.ptr
        np.testing.assert_array_equal(na.copy_to_host(), h)
    try:
        import jax
        import jax.numpy as jnp
    except Exception:
        jax = None
    if jax is not None:
        j = jnp.asarray(np.arange(10, dtype=np.float32)) + 1
        j.block_until_ready()
        if any(d.platform == "gpu" for d in j.devices()):
            k = ck.asarray(j)
            out = ops.scale(2.0, k, stream=stream)
            np.testing.assert_array_equal(out.to_numpy(stream=stream), 2 * (np.arange(10, dtype=np.float32) + 1))
    if ncuda is None and jax is None:
        pytest.skip("neither numba-cuda nor jax importable")
