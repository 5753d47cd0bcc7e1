"""Raw PyTorch tensors passed straight to the ops take a cached launch plan: it must never launch
with stale facts. Each test runs an op once (the plan is made), changes one thing a plan depends
on (pointer, shape, strides, dtype, the tensor object, the stream), runs it again and checks the
result against numpy in float64 on fresh random data."""

from __future__ import annotations

import numpy as np
import pytest

import cudart_kit as ck
from cudart_kit import ops

torch = pytest.importorskip("torch")


def _t(rng, n, dtype=np.float32):
    return torch.from_numpy(rng.standard_normal(n).astype(dtype)).cuda()


def _check(out, x, y, stream, rtol=1e-6):
    stream.sync()
    want = x.double().cpu().numpy() + y.double().cpu().numpy()
    np.testing.assert_allclose(out.double().cpu().numpy(), want, rtol=rtol, atol=1e-6)


def _poisoned(like):
    return torch.full_like(like, float("nan"))


def test_plan_reused_across_calls_is_correct(stream, rng):
    x, y = _t(rng, 1003), _t(rng, 1003)
    out = _poisoned(x)
    for _ in range(3):
        assert ops.add(x, y, out, stream=stream) is out
    _check(out, x, y, stream)
    # new values in the same tensors: the plan carries pointers, not values
    x.copy_(_t(rng, 1003))
    torch.cuda.synchronize()
    ops.add(x, y, out, stream=stream)
    _check(out, x, y, stream)


def test_out_repointed_with_set_(stream, rng):
    x, y = _t(rng, 4097), _t(rng, 4097)
    out = _poisoned(x)
    ops.add(x, y, out, stream=stream)
    stream.sync()
    first = out.clone()
    other = _poisoned(x)
    out.set_(other)  # same Python object, new storage
    ops.add(x, y, out, stream=stream)
    _check(other, x, y, stream)
    _check(first, x, y, stream)


def test_input_transposed_in_place(stream, rng):
    """Same pointer, same (square) shape, new strides: the plan must be refused."""
    x = torch.from_numpy(rng.standard_normal((67, 67)).astype(np.float32)).cuda()
    y = torch.from_numpy(rng.standard_normal((67, 67)).astype(np.float32)).cuda()
    out = torch.full((67, 67), float("nan"), device="cuda")
    ops.add(x, y, out, stream=stream)
    _check(out, x, y, stream)
    x.t_()  # strides (67, 1) -> (1, 67), pointer and shape unchanged
    ops.add(x, y, out, stream=stream)
    _check(out, x, y, stream)


def test_resized_in_place(stream, rng):
    x, y = _t(rng, 2000), _t(rng, 2000)
    out = _poisoned(x)
    ops.add(x, y, out, stream=stream)
    for t in (x, y, out):
        t.resize_(1500)  # same pointer, fewer elements
    out.fill_(float("nan"))
    ops.add(x, y, out, stream=stream)
    _check(out, x, y, stream)


def test_new_dtype_through_data(stream, rng):
    x, y = _t(rng, 999), _t(rng, 999)
    out = _poisoned(x)
    ops.add(x, y, out, stream=stream)
    x.data, y.data = x.data.double(), y.data.double()
    out.data = torch.full((999,), float("nan"), dtype=torch.float64, device="cuda")
    ops.add(x, y, out, stream=stream)
    assert out.dtype == torch.float64
    _check(out, x, y, stream, rtol=1e-12)


def test_same_bytes_reinterpreted_through_data(stream, rng):
    """Same pointer, shape and strides, another dtype of the same width: refused by the plan (and
    then by the op: int32 is not an add dtype), never run as float32."""
    x, y = _t(rng, 999), _t(rng, 999)
    out = _poisoned(x)
    ops.add(x, y, out, stream=stream)
    ops.add(x, y, out, stream=stream)
    out.data = out.data.view(torch.int32)
    with pytest.raises(ck.DTypeError):
        ops.add(x, y, out, stream=stream)
    out.data = out.data.view(torch.float32)  # back: the op runs (a fresh plan), correct
    out.fill_(float("nan"))
    ops.add(x, y, out, stream=stream)
    _check(out, x, y, stream)


def test_tensors_replaced_by_new_objects(stream, rng):
    """Dead tensors whose ids are reused must not revive a plan."""
    for _ in range(20):
        x, y = _t(rng, 513), _t(rng, 513)
        out = _poisoned(x)
        ops.add(x, y, out, stream=stream)
        _check(out, x, y, stream)
        del x, y, out


def test_other_stream_and_closed_stream(device, rng):
    x, y = _t(rng, 777), _t(rng, 777)
    out = _poisoned(x)
    s1 = ck.Stream.create(device)
    ops.add(x, y, out, stream=s1)
    s1.sync()
    s1.close()
    with pytest.raises(ck.ClosedError):
        ops.add(x, y, out, stream=s1)
    out.fill_(float("nan"))
    with ck.Stream.create(device) as s2:
        ops.add(x, y, out, stream=s2)
        _check(out, x, y, s2)


def test_torch_stream_object(rng):
    x, y = _t(rng, 1029), _t(rng, 1029)
    out = _poisoned(x)
    ts = torch.cuda.Stream()
    torch.cuda.synchronize()
    for _ in range(2):
        ops.add(x, y, out, stream=ts)
    ts.synchronize()
    want = x.double().cpu().numpy() + y.double().cpu().numpy()
    np.testing.assert_allclose(out.double().cpu().numpy(), want, rtol=1e-6, atol=1e-6)


def test_plan_does_not_keep_tensors_alive(stream, rng):
    import gc
    import weakref

    x, y = _t(rng, 300), _t(rng, 300)
    out = _poisoned(x)
    ops.add(x, y, out, stream=stream)
    stream.sync()
    refs = [weakref.ref(t) for t in (x, y, out)]
    del x, y, out
    gc.collect()
    assert all(r() is None for r in refs)


def test_torch_stream_plans_follow_the_stream_object(device, rng):
    """Plans over a PyTorch stream object are keyed by that object: a second stream object, a
    tensor changed in place and the stream object dropped (not kept alive by the plan) each get
    a correct result."""
    import gc
    import weakref

    x, y = _t(rng, 2051), _t(rng, 2051)
    out = _poisoned(x)
    ts1, ts2 = torch.cuda.Stream(), torch.cuda.Stream()
    torch.cuda.synchronize()
    for _ in range(3):  # the first call plans, the next two replay
        ops.add(x, y, out, stream=ts1)
    ts1.synchronize()
    want = x.double().cpu().numpy() + y.double().cpu().numpy()
    np.testing.assert_allclose(out.double().cpu().numpy(), want, rtol=1e-6, atol=1e-6)
    out.fill_(float("nan"))
    x.set_(_t(rng, 2051))  # new storage, same object
    torch.cuda.synchronize()
    ops.add(x, y, out, stream=ts2)
    ts2.synchronize()
    out.fill_(float("nan"))
    torch.cuda.synchronize()
    ops.add(x, y, out, stream=ts1)  # ts1's plan must see x's new pointer
    ts1.synchronize()
    want = x.double().cpu().numpy() + y.double().cpu().numpy()
    np.testing.assert_allclose(out.double().cpu().numpy(), want, rtol=1e-6, atol=1e-6)
    ref = weakref.ref(ts1)
    del ts1
    gc.collect()
    assert ref() is None, "a plan must not keep the stream object alive"
