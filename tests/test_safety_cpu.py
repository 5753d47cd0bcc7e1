"""CPU tests of "nothing unsafe gets through": closed arrays, views of closed arrays and closed
streams refused on every path (fast paths included), size arithmetic past 64 bits, argument
parsing, foreign out= returned as itself, the census shape and the protocols per memory kind.

Small fakes stand in for a device, a cuda.core stream and a kernel; every refusal tested here
happens before the driver would be asked anything, which is the point: these checks must not
depend on a GPU.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import cudart_kit as ck
from cudart_kit import graph, memory, ops
from cudart_kit.memory import alloc, layout
from cudart_kit.memory import array as array_mod
from cudart_kit._launch import _limits_cache, blocks_for
from cudart_kit.memory import Array
from cudart_kit.stream import Stream

FAKE_ORDINAL = 97  # never a real device: the launcher's limit cache entry cannot collide


# ---- fakes -------------------------------------------------------------------------------

class FakeDevice:
    ordinal = FAKE_ORDINAL

    def attribute(self, name):
        return {"max_block_dim_x": 1024, "max_block_dim_y": 1024, "max_block_dim_z": 64,
                "max_grid_dim_x": 2**31 - 1, "max_grid_dim_y": 65535, "max_grid_dim_z": 65535,
                "max_threads_per_block": 1024, "max_shared_memory_per_block_optin": 232448,
                "multiprocessor_count": 132}[name]

    def __repr__(self):
        return f"<FakeDevice {self.ordinal}>"


class FakeCore:
    """Stands in for a cuda.core Stream / Graph: launching on it fails loudly."""

    def __init__(self, handle=0x5EED):
        self.handle = handle

    def close(self):
        pass

    def launch(self, *_a):
        raise AssertionError("a refused call reached the launch")


class FakeKernel:
    name = "fake_kernel"
    param_sizes = (8, 4)

    def max_threads_per_block(self, device):
        return 1024

    def ensure_dynamic_shared(self, device, nbytes):
        pass


DEV = FakeDevice()


def make_stream(handle=0x5EED) -> Stream:
    return Stream._wrap(FakeCore(handle), DEV, owned=False)


def closed_stream() -> Stream:
    s = make_stream(0xC105ED)
    s.close()
    return s


def fake_array(n=4096, dtype=np.float32, kind="device", ptr=0x7F0000000000, finalizer=None) -> Array:
    dt = np.dtype(dtype)
    a = Array._make(ptr, (n,), dt, (dt.itemsize,), kind, DEV, None)
    if finalizer is not None:
        a._finalizer = weakref.finalize(a, finalizer)
    return a


def closed_array(n=4096):
    a = fake_array(n)
    a.close()
    return a


def view_of_closed(n=4096):
    a = fake_array(n)
    v = a.reshape(64, n // 64)
    a.close()
    return v


class FakeCAI:
    """A foreign device array (what a CuPy array or CUDA tensor looks like to the kit)."""

    def __init__(self, shape, ptr=0, typestr="<f4", strides=None):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (ptr, False),
                                         "strides": strides, "version": 3}


@pytest.fixture(autouse=True)
def _no_leftover_limits():
    yield
    _limits_cache.pop(FAKE_ORDINAL, None)


# ---- closed arrays and views of them ------------------------------------------------------

def test_close_zeroes_every_view():
    a = fake_array()
    v, w, u = a.reshape(64, 64), a.reshape(4096), a.reshape(8, -1, 8)
    assert (v.shape, w.shape, u.shape) == ((64, 64), (4096,), (8, 64, 8))
    assert v.ptr == a.ptr and not v.is_closed
    a.close()
    assert a.ptr == 0 and v.ptr == 0 and w.ptr == 0 and u.ptr == 0
    assert a.is_closed and v.is_closed and w.is_closed and u.is_closed
    a.close()  # idempotent


def test_closing_a_view_closes_its_array():
    a = fake_array()
    v = a.reshape(64, 64)
    other = a.reshape(4096)
    v.close()
    assert a.is_closed and a.ptr == 0 and other.ptr == 0


def test_check_open_names_the_argument():
    assert memory.check_open(fake_array(), "matmul: a") is not None
    with pytest.raises(ck.ClosedError, match=r"^matmul: a is closed \("):
        memory.check_open(closed_array(), "matmul: a")
    with pytest.raises(ck.ClosedError, match=r"^matmul: b is a view of a closed array \("):
        memory.check_open(view_of_closed(), "matmul: b")
    empty0 = fake_array(0, ptr=0)  # a zero-size array has no memory to lose: never "closed"
    empty0.close()
    assert memory.check_open(empty0) is empty0


def test_reshape_of_a_closed_array_and_bad_reshapes():
    with pytest.raises(ck.ClosedError, match="reshape: array is closed"):
        closed_array().reshape(64, 64)
    a = fake_array(24)
    assert a.reshape(-1, 4).shape == (6, 4) and a.reshape((2, -1, 3)).shape == (2, 4, 3)
    with pytest.raises(ck.ShapeError, match="only one dimension may be -1"):
        a.reshape(-1, -1)
    with pytest.raises(ck.ShapeError, match="cannot reshape array of size 24"):
        a.reshape(5, -1)
    with pytest.raises(ck.ShapeError, match="cannot reshape array of size 24"):
        a.reshape(0, -1)
    with pytest.raises(ck.ShapeError, match=r"reshape shape \(-2, 12\): dimension 0 is negative \(-2\)"):
        a.reshape(-2, 12)
    with pytest.raises(ck.ShapeError, match="not an integer"):
        a.reshape(2.0, 12)


# every vector op with (what is closed, the argument the message must name)
def _vector_calls(x, y, out):
    return {
        "add": lambda s: ops.add(x, y, out, stream=s),
        "sub": lambda s: ops.sub(x, y, out, stream=s),
        "mul": lambda s: ops.mul(x, y, out, stream=s),
        "axpy": lambda s: ops.axpy(2.0, x, y, out, stream=s),
        "scale": lambda s: ops.scale(2.0, x, out, stream=s),
        "copy": lambda s: ops.copy(x, out, stream=s),
        "dot": lambda s: ops.dot(x, y, stream=s),
    }


VECTOR_OPS = ["add", "sub", "mul", "axpy", "scale", "copy", "dot"]


@pytest.mark.parametrize("maker,phrase", [(closed_array, "is closed"), (view_of_closed, "is a view of a closed array")],
                         ids=["closed", "view-of-closed"])
@pytest.mark.parametrize("op", VECTOR_OPS)
def test_vector_ops_refuse_closed_x(op, maker, phrase):
    s = make_stream()
    bad = maker()
    good_y, good_out = fake_array(4096), fake_array(4096)
    if bad.ndim == 2:
        good_y, good_out = good_y.reshape(64, 64), good_out.reshape(64, 64)
    with pytest.raises(ck.ClosedError, match=rf"^{op}: x {phrase}"):
        _vector_calls(bad, good_y, good_out)[op](s)


@pytest.mark.parametrize("op", ["add", "axpy", "scale", "copy"])
def test_vector_ops_refuse_closed_out(op):
    s = make_stream()
    x, y = fake_array(), fake_array()
    with pytest.raises(ck.ClosedError, match=rf"^{op}: out is a view of a closed array"):
        _vector_calls(x.reshape(64, 64), y.reshape(64, 64), view_of_closed())[op](s)


def test_fill_refuses_closed_and_views():
    s = make_stream()
    with pytest.raises(ck.ClosedError, match="^fill: out is closed"):
        ops.fill(closed_array(), 1.0, stream=s)
    with pytest.raises(ck.ClosedError, match="^fill: out is a view of a closed array"):
        ops.fill(view_of_closed(), 1.0, stream=s)
    with pytest.raises(ck.ClosedError, match="^fill: array is a view of a closed array"):
        view_of_closed().fill(1.0, stream=s)


@pytest.mark.parametrize("op", VECTOR_OPS + ["fill"])
def test_vector_ops_refuse_a_closed_stream(op):
    s = closed_stream()
    x, y, out = fake_array(), fake_array(), fake_array()  # open kit arrays: the fast-path case
    call = (lambda st: ops.fill(out, 1.0, stream=st)) if op == "fill" else _vector_calls(x, y, out)[op]
    with pytest.raises(ck.ClosedError, match=r"^stream <cudart_kit.Stream 0xc105ed borrowed device=97 closed> is closed"):
        call(s)


def test_copy_memset_to_numpy_refuse_closed():
    s = make_stream()
    host = np.zeros(4096, np.float32)
    with pytest.raises(ck.ClosedError, match="^copy: dst is a view of a closed array"):
        ck.copy(view_of_closed(), host, stream=s)
    with pytest.raises(ck.ClosedError, match="^copy: src is closed"):
        ck.copy(host, closed_array(), stream=s)
    with pytest.raises(ck.ClosedError, match="^memset: arr is a view of a closed array"):
        ck.memset(view_of_closed(), 0, stream=s)
    with pytest.raises(ck.ClosedError, match="^to_numpy: array is a view of a closed array"):
        view_of_closed().to_numpy(stream=s)
    with pytest.raises(ck.ClosedError, match="^copy_from: array is closed"):
        closed_array().copy_from(host, stream=s)
    with pytest.raises(ck.ClosedError, match="^copy_to: array is closed"):
        closed_array().copy_to(host, stream=s)
    with pytest.raises(ck.ClosedError, match="^asarray: obj is a view of a closed array"):
        ck.asarray(view_of_closed())
    with pytest.raises(ck.ClosedError, match="is closed"):
        ck.copy(fake_array(), host, stream=closed_stream())
    with pytest.raises(ck.ClosedError, match="is closed"):
        fake_array().to_numpy(stream=closed_stream())
    with pytest.raises(ck.ClosedError, match="is closed"):
        ck.asarray(fake_array(), stream=closed_stream())


def test_launch_refuses_closed_arrays_and_streams():
    k = FakeKernel()
    s = make_stream()
    with pytest.raises(ck.ClosedError, match=r"^argument 0 of fake_kernel \(a 8-byte parameter\) is a view of a closed array"):
        ck.launch(k, 1, 32, view_of_closed(), 32, stream=s)
    with pytest.raises(ck.ClosedError, match=r"^argument 0 of fake_kernel \(a 8-byte parameter\) is closed"):
        ck.launch(k, 1, 32, closed_array(), 32, stream=s)
    with pytest.raises(ck.ClosedError, match="stream <cudart_kit.Stream 0xc105ed .* is closed"):
        ck.launch(k, 1, 32, fake_array(), 32, stream=closed_stream())


def test_prepared_launch_holds_and_checks_its_arrays():
    k = FakeKernel()
    a = fake_array()
    v = a.reshape(64, 64)
    p = ck.prepare(k, 1, 32, v, 32, device=DEV)
    ref = weakref.ref(v)
    del v
    gc.collect()
    assert ref() is not None, "the prepared launch must hold the arrays it packed"
    with pytest.raises(ck.ClosedError, match="stream <cudart_kit.Stream 0xc105ed .* is closed"):
        p.launch(closed_stream())
    a.close()
    with pytest.raises(ck.ClosedError, match=r"^prepared launch of fake_kernel: argument 0 is a view of a closed array"):
        p.launch(make_stream())
    with pytest.raises(ck.ClosedError, match="is a view of a closed array"):
        ck.prepare(k, 1, 32, ref(), 32, device=DEV)


def test_graph_replay_refuses_closed_stream_and_arrays():
    a = fake_array()
    g = graph.Graph(FakeCore(), DEV, [a], 1)
    try:
        with pytest.raises(ck.ClosedError, match="stream <cudart_kit.Stream 0xc105ed .* is closed"):
            g.replay(closed_stream())
        with pytest.raises(ck.ClosedError, match="stream <cudart_kit.Stream 0xc105ed .* is closed"):
            g.upload(closed_stream())
        a.close()
        with pytest.raises(ck.ClosedError, match="^graph replay: an array the graph uses is closed"):
            g.replay(make_stream())
    finally:
        g.close()
    with pytest.raises(ck.ClosedError, match="graph is closed"):
        g.replay(make_stream())
    with pytest.raises(ck.ClosedError, match="stream <cudart_kit.Stream 0xc105ed .* is closed"):
        graph.capture(closed_stream())
    with pytest.raises(ValueError, match="mode must be"):
        graph.capture(make_stream(), mode="local")


def test_stream_closed_errors_name_the_stream():
    s = closed_stream()
    want = r"^stream <cudart_kit.Stream 0xc105ed borrowed device=97 closed> is closed"
    for fn in (lambda: ck.as_stream(s), lambda: s.handle, lambda: s.core, lambda: s.sync(),
               lambda: fake_array().record_stream(s), lambda: make_stream().wait(s)):
        with pytest.raises(ck.ClosedError, match=want):
            fn()
    assert repr(make_stream(0xAB)) == "<cudart_kit.Stream 0xab borrowed device=97>"


# ---- sizes past 64 bits -----------------------------------------------------------------

@pytest.mark.parametrize("shape,dtype,fragment", [
    ((2**61,), np.float64, "18446744073709551616 bytes"),       # 2**64 bytes
    ((2**40, 2**40), np.float32, "4835703278458516698824704 bytes"),
    (2**64, np.uint8, "18446744073709551616 bytes"),
    ((2**63,), np.uint8, "9223372036854775808 bytes"),         # the first size refused
    ((2**62, 4, 0), np.float32, "0 bytes"),                      # element count fine, 0 bytes: allowed
], ids=["2^61-f64", "2^40x2^40", "2^64-bytes", "2^63-bytes", "zero-size"])
def test_sizes_no_address_space_holds(shape, dtype, fragment):
    if fragment == "0 bytes":
        assert layout.checked_nbytes(layout.normalize_shape(shape), np.dtype(dtype)) == 0
        return
    with pytest.raises(ck.ShapeError, match=f"= {fragment}.*no address space can hold it"):
        ck.empty(shape, dtype, stream=None)  # refused before the stream is even looked at


def test_largest_size_passes_the_shape_check():
    assert layout.checked_nbytes((2**63 - 1,), np.dtype(np.uint8)) == 2**63 - 1


def test_device_cannot_hold_is_a_memory_error(monkeypatch):
    monkeypatch.setitem(alloc._total_bytes, FAKE_ORDINAL, 141 * 2**30)
    s = make_stream()
    with pytest.raises(ck.CudaOutOfMemoryError) as info:
        ck.empty((2**62,), np.uint8, stream=s)  # no driver call: refused by the size check
    e = info.value
    assert isinstance(e, MemoryError) and e.result == "CUDA_ERROR_OUT_OF_MEMORY"
    assert "requested 4611686018427387904 bytes (4294967296.00 GiB) on device 97 which has 141.00 GiB" in str(e)
    # exactly the device's size is not refused by the check (the pool decides)
    alloc._check_fits_device(141 * 2**30, 0, 141 * 2**30)
    with pytest.raises(ck.CudaOutOfMemoryError, match="requested 2 bytes .* on device 3 which has 0.00 GiB"):
        alloc._check_fits_device(2, 3, 1)


@pytest.mark.parametrize("shape,fragment", [
    ((2, -1), r"^empty: shape \(2, -1\): dimension 1 is negative \(-1\)"),
    ((2.5,), r"^empty: shape \(2.5,\): dimension 0 is 2.5 \(float\), not an integer"),
    ((np.float64(3),), "not an integer"),
    (("3",), r"is '3' \(str\), not an integer"),
    ((True, 2), r"is True \(bool\), not an integer"),
    ("abc", "^empty: shape must be an int or a sequence of ints, got 'abc'"),
    (None, "^empty: shape must be an int or a sequence of ints"),
    (2.0, "^empty: shape must be an int or a sequence of ints"),
], ids=["negative", "float", "np-float", "str-dim", "bool-dim", "str", "none", "float-scalar"])
def test_bad_shapes(shape, fragment):
    with pytest.raises(ck.ShapeError, match=fragment):
        ck.empty(shape, np.float32, stream=None)


def test_numpy_integer_dims_are_accepted():
    assert layout.normalize_shape((np.int64(3), np.uint8(2), 4)) == (3, 2, 4)
    assert layout.normalize_shape(np.int32(5)) == (5,)
    assert layout.normalize_shape(np.array([2, 3])) == (2, 3)
    assert layout.normalize_shape(()) == ()


def test_bad_dtype_and_kind_before_the_stream():
    with pytest.raises(ck.DTypeError, match="^empty: dtype object holds Python objects"):
        ck.empty(4, object, stream=None)
    with pytest.raises(ck.DTypeError, match="^empty: dtype .* has no size"):
        ck.empty(4, "V0", stream=None)
    with pytest.raises(ck.DTypeError, match="^empty: dtype 'not-a-dtype' is not a dtype"):
        ck.empty(4, "not-a-dtype", stream=None)
    with pytest.raises(ValueError, match="^empty: kind must be one of"):
        ck.empty(4, np.float32, stream=None, kind="host")


# ---- argument parsing -------------------------------------------------------------------

def test_blocks_for_refuses_bad_arguments():
    assert blocks_for(np.int64(257), np.int32(256)) == 2
    with pytest.raises(ck.LaunchConfigError, match=r"^blocks_for: n must be >= 0 .*got -5"):
        blocks_for(-5, 256)
    with pytest.raises(ck.LaunchConfigError, match=r"^blocks_for: per_block must be >= 1, got 0"):
        blocks_for(10, 0)
    with pytest.raises(ck.LaunchConfigError, match=r"^blocks_for: per_block must be >= 1, got -256"):
        blocks_for(10, -256)
    with pytest.raises(ck.ArgumentError, match=r"^blocks_for: n must be an integer, got 2.5"):
        blocks_for(2.5, 256)
    with pytest.raises(ck.ArgumentError, match=r"^blocks_for: per_block must be an integer"):
        blocks_for(10, "256")
    with pytest.raises(ck.ArgumentError, match=r"^blocks_for: n must be an integer, got True"):
        blocks_for(True, 256)


@pytest.mark.parametrize("bad", ["x", "gpu0", 1.5, True, [0], object()], ids=["x", "gpu0", "float", "bool", "list", "object"])
def test_get_device_refuses_non_ordinals(bad):
    with pytest.raises(ck.ArgumentError, match="device must be a cudart_kit.Device, an ordinal"):
        ck.get_device(bad)
    with pytest.raises(ck.ArgumentError, match="device must be"):
        ck.Stream.create(bad)


def test_get_device_negative_ordinal_needs_no_driver():
    with pytest.raises(ck.NoDeviceError, match="device index -1 out of range"):
        ck.get_device(-1)


def test_stream_priority_type():
    with pytest.raises(ck.ArgumentError, match="priority must be an int, got 'high'"):
        ck.Stream.create(0, priority="high")
    with pytest.raises(ck.ArgumentError, match="priority must be an int"):
        ck.Stream.create(0, priority=1.5)


def test_asarray_refusals():
    with pytest.raises(ck.DeviceMismatchError, match="host memory"):
        ck.asarray(np.zeros(3))
    with pytest.raises(ck.ArgumentError, match="^asarray: obj is a str, not a device array"):
        ck.asarray("nope")
    with pytest.raises(ck.ShapeError, match=r"^asarray: obj: shape \(4611686018427387904,\) of float32 .*no address space can hold it"):
        ck.asarray(FakeCAI((2**62,), ptr=0x1000))
    with pytest.raises(ck.ShapeError, match="^asarray: obj: FakeCAI exports a null data pointer for 64 bytes"):
        ck.asarray(FakeCAI((16,), ptr=0))
    with pytest.raises(ck.ShapeError, match=r"^asarray: obj's CAI shape \(-4,\): dimension 0 is negative"):
        ck.asarray(FakeCAI((-4,), ptr=0x1000))
    with pytest.raises(ck.DTypeError, match="^matmul: a has an unsupported CAI typestr '<x4'"):
        ck.asarray(FakeCAI((4,), ptr=0x1000, typestr="<x4"), name="matmul: a")
    with pytest.raises(ck.ClosedError, match="^matmul: b is a view of a closed array"):
        ck.asarray(view_of_closed(), name="matmul: b")


def test_to_device_refuses_device_memory():
    with pytest.raises(ck.DeviceMismatchError, match="to_device: host is a cudart_kit.Array"):
        ck.to_device(fake_array(), stream=None)
    with pytest.raises(ck.DeviceMismatchError, match="to_device: host is a FakeCAI in device memory"):
        ck.to_device(FakeCAI((4,), ptr=0x1000), stream=None)
    with pytest.raises(ck.StreamError, match="stream= is required"):
        ck.to_device([1.0, 2.0], stream=None)  # host data passes the check, then needs a stream
    with pytest.raises(ck.ShapeError, match=r"^to_device: host \(list\) is not a regular array"):
        ck.to_device([[1.0, 2.0], [3.0]], stream=None)
    with pytest.raises(ck.DTypeError, match=r"^to_device: host \(list\) cannot be converted .*Python objects"):
        ck.to_device([object()], stream=None)


def test_memset_value_checks():
    with pytest.raises(ck.ArgumentError, match="byte_value must be an int"):
        ck.memset(fake_array(), 1.5, stream=None)
    with pytest.raises(ValueError, match="outside 0..255"):
        ck.memset(fake_array(), 256, stream=None)


# ---- foreign out= comes back as itself ---------------------------------------------------

@pytest.mark.parametrize("op", ["add", "sub", "mul", "axpy", "scale", "copy", "fill"])
def test_foreign_out_is_returned_as_itself(op):
    # zero-size foreign arrays: every check runs, nothing is launched (no GPU needed)
    s = make_stream()
    x, y, out = FakeCAI((0,)), FakeCAI((0,)), FakeCAI((0,))
    calls = {
        "add": lambda: ops.add(x, y, out, stream=s),
        "sub": lambda: ops.sub(x, y, out, stream=s),
        "mul": lambda: ops.mul(x, y, out, stream=s),
        "axpy": lambda: ops.axpy(1.5, x, y, out, stream=s),
        "scale": lambda: ops.scale(1.5, x, out, stream=s),
        "copy": lambda: ops.copy(x, out, stream=s),
        "fill": lambda: ops.fill(out, 1.0, stream=s),
    }
    assert calls[op]() is out


def test_axpy_default_out_is_y_itself():
    s = make_stream()
    x, y = FakeCAI((0,)), FakeCAI((0,))
    assert ops.axpy(2.0, x, y, stream=s) is y


def test_op_error_messages_name_the_argument():
    s = make_stream()
    with pytest.raises(ck.DTypeError, match=r"^add: x is int32; add supports float32"):
        ops.add(FakeCAI((0,), typestr="<i4"), FakeCAI((0,), typestr="<i4"), stream=s)
    with pytest.raises(ck.DTypeError, match=r"^add: x is float32 but y is float64"):
        ops.add(FakeCAI((0,)), FakeCAI((0,), typestr="<f8"), stream=s)
    with pytest.raises(ck.ShapeError, match=r"^add: x has shape \(0,\) but y has shape \(0, 0\)"):
        ops.add(FakeCAI((0,)), FakeCAI((0, 0)), stream=s)
    with pytest.raises(ck.DTypeError, match=r"^copy: dst is float32 but src is float64"):
        ck.copy(FakeCAI((0,)), FakeCAI((0,), typestr="<f8"), stream=s)


# ---- protocols per memory kind, DLPack-deferred close, census -----------------------------

def test_cai_per_kind():
    dev = fake_array(kind="device")
    cai = dev.__cuda_array_interface__
    assert cai["data"] == (dev.ptr, False) and cai["shape"] == (4096,) and cai["stream"] is None
    assert hasattr(fake_array(kind="managed"), "__cuda_array_interface__")
    pinned = fake_array(kind="pinned")
    assert not hasattr(pinned, "__cuda_array_interface__")
    with pytest.raises(AttributeError, match="pinned host array does not export __cuda_array_interface__.*__dlpack__"):
        pinned.__cuda_array_interface__
    with pytest.raises(ck.ClosedError, match="__cuda_array_interface__: array is a view of a closed array"):
        hasattr(view_of_closed(), "__cuda_array_interface__")
    with pytest.raises(ck.ClosedError, match="__dlpack__: array is closed"):
        closed_array().__dlpack__()


def test_close_waits_for_dlpack_consumers():
    freed = []
    a = fake_array(finalizer=lambda: freed.append(1))
    token = array_mod.export_token(a)      # what __dlpack__ puts in the capsule's owner tuple
    v = a.reshape(64, 64)
    a.close()
    assert a.is_closed and v.ptr == 0    # the kit refuses it at once...
    assert freed == []                   # ...but the consumer still holds the memory
    del token
    gc.collect()
    assert freed == [1] and a._exports == 0
    b = fake_array(finalizer=lambda: freed.append(2))
    t2 = array_mod.export_token(b)
    del t2                               # released before close: close frees at once
    gc.collect()
    b.close()
    assert freed == [1, 2]


def test_census_is_one_counter_with_the_documented_shape():
    snap = ck.census()
    assert set(snap) == {"streams", "events", "modules", "graphs", "dlpack_exports", "memory"}
    for k in ("streams", "events", "modules", "graphs"):
        assert set(snap[k]) == {"live", "high"}
    assert set(snap["dlpack_exports"]) == {"live"}
    assert set(snap["memory"]) == {"device", "pinned", "managed"}
    for v in snap["memory"].values():
        assert set(v) == {"arrays", "bytes", "high_bytes"}
    assert memory.census() == snap["memory"]
    before = ck.census()["memory"]["pinned"]
    alloc._count("pinned", 1000, +1)
    mid = ck.census()["memory"]["pinned"]
    alloc._count("pinned", 1000, -1)
    assert mid["arrays"] == before["arrays"] + 1 and mid["bytes"] == before["bytes"] + 1000
    assert mid["high_bytes"] >= before["bytes"] + 1000
    assert ck.census()["memory"]["pinned"]["arrays"] == before["arrays"]
