"""CPU tests of the runtime layer: import hygiene, the no-driver path, error mapping, argument
packing and launch-geometry arithmetic (small fakes stand in for kernels and streams)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import cudart_kit as ck
from cudart_kit import errors
from cudart_kit._launch import _dim3
from cudart_kit.launcher import BenchResult, _convert, blocks_for, pack_args
from cudart_kit.module import detect_kind


def _no_gpu() -> bool:
    try:
        return ck.device_count() == 0
    except ck.CudaKitError:
        return True


no_gpu = pytest.mark.skipif(not _no_gpu(), reason="this test checks the behaviour without a GPU")


def test_import_touches_no_driver():
    code = (
        "import cudart_kit, cudart_kit.ops, cudart_kit.memory, cudart_kit.launcher, cudart_kit.graph;"
        "import cudart_kit._driver as d; assert d._driver is None and d._init_error is None;"
        "assert callable(cudart_kit.launch), 'the launch function must not be shadowed by a module';"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_public_names_resolve():
    for name in ck.__all__:
        assert getattr(ck, name) is not None
    with pytest.raises(AttributeError):
        ck.no_such_thing


@no_gpu
def test_no_driver_is_one_clear_error():
    with pytest.raises((ck.NoDriverError, ck.NoDeviceError)) as info:
        ck.get_device(0)
    msg = str(info.value)
    assert "driver" in msg.lower() or "device" in msg.lower()
    # and it is the same clear error for anything that needs the GPU
    with pytest.raises((ck.NoDriverError, ck.NoDeviceError)):
        ck.Stream.create(0)
    with pytest.raises((ck.NoDriverError, ck.NoDeviceError)):
        # a well-formed PTX header: a malformed image is refused before the driver (InvalidImageError)
        ck.Module.load(b"//\n.version 8.0\n.target sm_80\n.address_size 64\n")


def test_driver_error_mapping():
    oom = errors.driver_error(2, "cuMemAllocAsync", "allocating 8 bytes")
    assert isinstance(oom, ck.CudaOutOfMemoryError) and isinstance(oom, MemoryError)
    assert oom.result == "CUDA_ERROR_OUT_OF_MEMORY" and oom.api == "cuMemAllocAsync"
    assert "cuMemAllocAsync failed with CUDA_ERROR_OUT_OF_MEMORY (2) while allocating 8 bytes" in str(oom)
    inv = errors.driver_error(1, "cuLaunchKernel")
    assert type(inv) is ck.CudaDriverError and inv.result == "CUDA_ERROR_INVALID_VALUE"
    assert "launch dimensions" in str(inv)


def test_translate_cuda_core_messages():
    class CUDAError(Exception):
        pass

    e = errors.translate(CUDAError("CUDA_ERROR_OUT_OF_MEMORY: out of memory"), "Device.allocate")
    assert isinstance(e, ck.CudaOutOfMemoryError) and e.code == 2
    e = errors.translate(CUDAError("CUDA_ERROR_INVALID_HANDLE: bad"), "cuStreamSynchronize")
    assert isinstance(e, ck.CudaDriverError) and e.result == "CUDA_ERROR_INVALID_HANDLE"
    other = ValueError("unrelated")
    assert errors.translate(other, "x") is other


def test_error_classes_are_also_builtin_kinds():
    assert issubclass(ck.ShapeError, ValueError) and issubclass(ck.DTypeError, TypeError)
    assert issubclass(ck.LaunchConfigError, ValueError) and issubclass(ck.ArgumentError, TypeError)
    e = ck.KernelNotFoundError("addd", "vector", ["add_f32", "sub_f32"])
    assert "addd" in str(e) and "add_f32, sub_f32" in str(e) and isinstance(e, KeyError)


def test_blocks_for_and_dims():
    assert blocks_for(1, 256) == 1
    assert blocks_for(256, 256) == 1
    assert blocks_for(257, 256) == 2
    assert blocks_for(0, 256) == 1
    assert blocks_for((1 << 28) // 4, 256) == 262144
    with pytest.raises(ck.LaunchConfigError, match="per_block"):
        blocks_for(10, 0)
    with pytest.raises(ck.LaunchConfigError, match=r"blocks_for: n must be >= 0 .*got -5"):
        blocks_for(-5, 256)  # used to return 1 silently
    assert _dim3(5, "grid") == (5, 1, 1)
    assert _dim3((2, 3), "grid") == (2, 3, 1)
    with pytest.raises(ck.LaunchConfigError, match="dimensions"):
        _dim3((1, 2, 3, 4), "block")
    with pytest.raises(ck.LaunchConfigError, match=">= 1"):
        _dim3((0, 1), "block")
    assert _dim3([np.int64(3), 2], "grid") == (3, 2, 1)
    # never a silent truncation or a string read as digits: ArgumentError (a TypeError) naming it
    for bad, where in (((2.5,), r"grid\[0\] must be an integer, got 2.5"), ("4", "grid must be an integer or a tuple"),
                       (2.5, "got 2.5 \\(float\\)"), (True, "got True \\(bool\\)"), ((1, "2"), r"grid\[1\]")):
        with pytest.raises(ck.ArgumentError, match=where):
            _dim3(bad, "grid")


class _FakeKernel:
    name = "fake"

    def __init__(self, sizes):
        self.param_sizes = tuple(sizes)


class _FakeStream:
    device = None


def test_pack_args_widths():
    k = _FakeKernel([4, 4, 8, 8, 2, 1, 4])
    packed = pack_args(k, (3, 2.5, 7, 1.25, 1.0, True, np.float32(1)), _FakeStream())
    assert [type(v) for v in packed] == [np.int32, np.float32, np.int64, np.float64, np.float16, np.bool_, np.float32]
    assert packed[0] == 3 and packed[1] == np.float32(2.5)
    # unsigned when above the signed range but within the width
    assert type(_convert(3_000_000_000, 4, 0, "k", None)) is np.uint32


def test_pack_args_refusals():
    s = _FakeStream()
    with pytest.raises(ck.ArgumentError, match="takes 2 arguments"):
        pack_args(_FakeKernel([4, 4]), (1,), s)
    with pytest.raises(ck.ArgumentError, match="does not fit in 4 bytes"):
        _convert(1 << 40, 4, 0, "k", s)
    with pytest.raises(ck.ArgumentError, match="float64"):
        _convert(np.float64(1), 4, 0, "k", s)
    with pytest.raises(ck.ArgumentError, match="overflows float32"):
        _convert(1e300, 4, 0, "k", s)
    with pytest.raises(ck.ArgumentError, match="bool"):
        _convert(True, 4, 0, "k", s)
    with pytest.raises(ck.ArgumentError, match="cannot pass str"):
        _convert("x", 8, 0, "k", s)
    with pytest.raises(ck.DeviceMismatchError, match="host memory"):
        _convert(np.zeros(3), 8, 0, "k", s)


def test_detect_kind(tmp_path):
    assert detect_kind(data=b"\x7fELF\x02\x01") == "cubin"
    assert detect_kind(data=(0xBA55ED50).to_bytes(4, "little") + b"\0" * 8) == "fatbin"
    assert detect_kind(data=b"//\n// Generated by NVIDIA NVVM Compiler\n.version 8.8\n") == "ptx"
    p = tmp_path / "k.cubin"
    p.write_bytes(b"whatever")
    assert detect_kind(path=p) == "cubin"
    with pytest.raises(ValueError, match="kind="):
        detect_kind(data=b"\x00\x01\x02garbage")


def test_module_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        ck.Module.load(tmp_path / "nope.cubin")


def test_bench_result_stats():
    r = BenchResult("x", [1.0, 2.0, 3.0, 4.0, 100.0])
    assert r.median_ms == 3.0 and r.min_ms == 1.0 and r.max_ms == 100.0
    assert r.quantile_ms(0.5) == 3.0
    assert r.gbps(3_000_000) == pytest.approx(1.0)
    assert r.tflops(3e9) == pytest.approx(1.0)
    assert r.as_dict()["n"] == 5


def test_pool_threshold_parsing():
    from cudart_kit.device import _parse_threshold

    total = 80 << 30
    assert _parse_threshold(None, total) == (1 << 64) - 1
    assert _parse_threshold("max", total) == (1 << 64) - 1
    assert _parse_threshold("512M", total) == 512 << 20
    assert _parse_threshold("2G", total) == 2 << 30
    assert _parse_threshold("25%", total) == 20 << 30
    assert _parse_threshold("1000", total) == 1000
    with pytest.raises(ValueError, match="CUDART_KIT_POOL_RELEASE_THRESHOLD"):
        _parse_threshold("lots", total)


def test_shape_and_dtype_normalisation():
    from cudart_kit.memory.array import normalize_dtype as _normalize_dtype
    from cudart_kit.memory.layout import c_strides as _c_strides, normalize_shape as _normalize_shape

    assert _normalize_shape(5) == (5,)
    assert _normalize_shape([2, 3]) == (2, 3)
    with pytest.raises(ck.ShapeError, match="negative"):
        _normalize_shape((2, -1))
    assert _c_strides((2, 3, 4), 4) == (48, 16, 4)
    assert _normalize_dtype("float32") == np.float32
    with pytest.raises(ck.DTypeError):
        _normalize_dtype("not-a-dtype")


def test_stream_required_message():
    with pytest.raises(ck.StreamError, match="stream= is required"):
        ck.as_stream(None)
    with pytest.raises(ck.StreamError, match="cannot use str"):
        ck.Stream.adopt("nope")


def test_stream_protocol_parsing():
    from cudart_kit.stream import foreign_handle

    class Proto:
        def __cuda_stream__(self):
            return (0, 1234)

    class TorchLike:
        cuda_stream = 99

    class CupyLike:
        ptr = 77

    assert foreign_handle(Proto()) == 1234
    assert foreign_handle(TorchLike()) == 99
    assert foreign_handle(CupyLike()) == 77
    assert foreign_handle(5) == 5
    with pytest.raises(ck.StreamError):
        foreign_handle(True)


def test_kernel_params_pack_each_value_at_its_width():
    """The prepared launch's void*[]: every slot holds its value's bytes at the parameter width."""
    import ctypes

    from cudart_kit import _driver

    values = (0x1234_5678_9ABC, np.float32(1.5), np.int32(-7), np.uint8(200), -3, np.float64(2.25))
    sizes = (8, 4, 4, 1, 8, 8)
    keep, addr = _driver.kernel_params(values, sizes)
    ptrs = (ctypes.c_void_p * len(values)).from_address(addr)
    got = [ctypes.string_at(ptrs[i], sz) for i, sz in enumerate(sizes)]
    assert got[0] == (0x1234_5678_9ABC).to_bytes(8, "little")
    assert np.frombuffer(got[1], np.float32)[0] == 1.5
    assert np.frombuffer(got[2], np.int32)[0] == -7
    assert got[3] == bytes([200])
    assert int.from_bytes(got[4], "little", signed=True) == -3
    assert np.frombuffer(got[5], np.float64)[0] == 2.25
    with pytest.raises(ValueError, match="4 bytes"):
        _driver.kernel_params((np.float64(1.0),), (4,))
    assert keep is not None


def test_launch_plan_rebinds_pointer_slots_only():
    from cudart_kit._launch import LaunchPlan

    plan = object.__new__(LaunchPlan)
    plan.args, plan.slots = (1, np.float32(2.0), 3, 4), (0, 2)
    assert plan.bind((10, 30)) == (10, np.float32(2.0), 30, 4)
    assert plan.args == (1, np.float32(2.0), 3, 4)  # the packed tuple itself is never changed


class _PlanDevice:
    ordinal = 96  # never a real device: the limit cache entry is dropped after the test

    def attribute(self, name):
        return {"max_block_dim_x": 1024, "max_block_dim_y": 1024, "max_block_dim_z": 64,
                "max_grid_dim_x": 2**31 - 1, "max_grid_dim_y": 65535, "max_grid_dim_z": 65535,
                "max_threads_per_block": 1024, "max_shared_memory_per_block_optin": 232448}[name]


class _PlanKernel:
    """A kernel taking (CUtensorMap, int, float, T*): the sm90 matmul's kinds of parameter."""

    name = "fake_tma_kernel"
    param_sizes = (128, 4, 4, 8)

    def __init__(self):
        self.shared = []

    def max_threads_per_block(self, device):
        return 384

    def ensure_dynamic_shared(self, device, nbytes):
        self.shared.append(nbytes)


def test_launch_plan_carries_any_slot_value_to_the_launch(monkeypatch):
    """A plan is checked and configured once; each launch hands do_launch the packed tuple with
    the slot values bound as they are: a tensor-map descriptor object (passed by value: cuda.core
    packs it), a numpy scalar, a pointer. Unbound positions keep their packed values."""
    from cudart_kit import _launch
    from cudart_kit._launch import LaunchPlan

    monkeypatch.setattr(_launch, "_limits_cache", {})
    monkeypatch.setattr(_launch, "config", lambda g, b, smem: ("cfg", g, b, smem))
    sent = []
    monkeypatch.setattr(_launch, "do_launch", lambda s, cfg, kernel, args: sent.append((s, cfg, kernel, args)))
    kernel, dev = _PlanKernel(), _PlanDevice()

    class TensorMap:  # stands in for cuda.core's TensorMapDescriptor
        pass

    packed = (None, np.int32(7), np.float32(1.0), 0)
    plan = LaunchPlan(kernel, dev, 5, 384, packed, slots=(0, 2, 3), shared_mem_bytes=200 * 1024)
    assert (plan.grid, plan.block, plan.cfg) == ((5, 1, 1), (384, 1, 1), ("cfg", (5, 1, 1), (384, 1, 1), 204800))
    assert kernel.shared == [204800]  # the dynamic shared-memory opt-in, once, at plan time
    t1, t2 = TensorMap(), TensorMap()
    assert plan.launch("s1", (t1, np.float32(0.5), 0xA000)) is None
    assert plan.launch("s2", (t2, np.float32(-2.0), 0xB000)) is None
    (s1, cfg1, k1, a1), (s2, cfg2, k2, a2) = sent
    assert (s1, s2) == ("s1", "s2") and cfg1 is cfg2 is plan.cfg and k1 is k2 is kernel
    assert a1[0] is t1 and a2[0] is t2  # the descriptor object itself, by value to cuda.core
    assert [type(x) for x in a1] == [TensorMap, np.int32, np.float32, int]
    assert a1[1:] == (7, 0.5, 0xA000) and a2[1:] == (7, -2.0, 0xB000)
    assert plan.args == packed  # the packed tuple is never changed
    assert kernel.shared == [204800]


def test_launch_plan_checks_geometry_and_arity_once(monkeypatch):
    from cudart_kit import _launch
    from cudart_kit._launch import LaunchPlan

    monkeypatch.setattr(_launch, "_limits_cache", {})
    monkeypatch.setattr(_launch, "config", lambda g, b, smem: ("cfg", g, b, smem))
    kernel, dev = _PlanKernel(), _PlanDevice()
    with pytest.raises(ck.LaunchConfigError, match="fake_tma_kernel's limit of 384 threads"):
        LaunchPlan(kernel, dev, 1, 512, (None, 1, 1.0, 0))
    with pytest.raises(ck.LaunchConfigError, match="grid.y=65536 exceeds the device limit 65535"):
        LaunchPlan(kernel, dev, (1, 65536), 32, (None, 1, 1.0, 0))
    with pytest.raises(ck.LaunchConfigError, match="dynamic shared memory"):
        LaunchPlan(kernel, dev, 1, 32, (None, 1, 1.0, 0), shared_mem_bytes=232449)
    with pytest.raises(ck.ArgumentError, match="takes 4 arguments, got 3"):
        LaunchPlan(kernel, dev, 1, 32, (None, 1, 1.0))
    assert kernel.shared == []  # nothing configured for a refused plan


def test_launch_plan_issues_packed_arguments_directly(monkeypatch):
    """A plan of ints and numpy scalars launched without rebinding goes to cuLaunchKernel with the
    driver's parameter array packed once (the bytes of each value at its width); rebound plans,
    plans holding other objects and default-stream handles take cuda.core's launch."""
    import ctypes

    from cudart_kit import _driver, _launch
    from cudart_kit._launch import LaunchPlan

    monkeypatch.setattr(_launch, "_limits_cache", {})
    monkeypatch.setattr(_launch, "config", lambda g, b, smem: ("cfg", g, b, smem))
    core_sent, direct = [], []
    monkeypatch.setattr(_launch, "do_launch", lambda s, cfg, kernel, args: core_sent.append(args))
    monkeypatch.setattr(_driver, "function_handle", lambda h: ("CUfunction", h))
    monkeypatch.setattr(_driver, "stream_handle_object", lambda h: ("CUstream", h))

    def cu_launch(func, gx, gy, gz, bx, by, bz, smem, stream, addr, extra):
        slots = ctypes.cast(addr, ctypes.POINTER(ctypes.c_void_p))
        direct.append((func, (gx, gy, gz), (bx, by, bz), smem, stream, [ctypes.string_at(slots[i], sz)
                                                                       for i, sz in enumerate((8, 4, 4, 8))]))
        assert extra == 0
        return (0,)

    monkeypatch.setattr(_launch, "_cu_launch", cu_launch)

    class Core:
        handle = 0x1234

    kernel, dev = _PlanKernel(), _PlanDevice()
    kernel.param_sizes = (8, 4, 4, 8)
    kernel.core = Core()

    class S:
        def __init__(self, handle):
            self._handle, self._core = handle, object()

    plan = LaunchPlan(kernel, dev, 3, 128, (0xAB00, np.int32(-7), np.float32(0.5), 99))
    s = S(0x5000)
    plan.launch(s)
    plan.launch(s)
    assert not core_sent and len(direct) == 2
    func, grid, block, smem, cu, raw = direct[0]
    assert func == ("CUfunction", 0x1234) and cu == ("CUstream", 0x5000) and (grid, block, smem) == ((3, 1, 1), (128, 1, 1), 0)
    assert raw == [(0xAB00).to_bytes(8, "little"), np.int32(-7).tobytes(), np.float32(0.5).tobytes(), (99).to_bytes(8, "little")]
    plan.launch(S(1))  # the legacy default stream: cuda.core's launch (it switches contexts)
    closed = S(0x6000)
    closed._core = None
    plan.launch(closed)  # a closed stream goes to do_launch, which refuses it
    assert len(core_sent) == 2 and len(direct) == 2
    s._core = None  # closed after direct launches: its cached tuple is not used again
    plan.launch(s)
    assert len(core_sent) == 3 and len(direct) == 2
    s._core = object()
    # rebinding, or an argument the packer does not know (a tensor map): cuda.core's launch
    rebind = LaunchPlan(kernel, dev, 3, 128, (0, np.int32(1), np.float32(1.0), 5), slots=(0,))
    rebind.launch(s, (0xC000,))
    assert core_sent[-1][0] == 0xC000
    other = LaunchPlan(kernel, dev, 3, 128, (object(), np.int32(1), np.float32(1.0), 5))
    other.launch(s)
    assert len(core_sent) == 5 and len(direct) == 2


def test_direct_launch_failure_names_the_result_and_kernel(monkeypatch):
    """A failed direct cuLaunchKernel raises the kit's driver error with the CUresult, the API and
    the kernel, not a bare tuple or an unchecked result."""
    from cudart_kit import _driver, _launch
    from cudart_kit._launch import LaunchPlan

    monkeypatch.setattr(_launch, "_limits_cache", {})
    monkeypatch.setattr(_launch, "config", lambda g, b, smem: ("cfg", g, b, smem))
    monkeypatch.setattr(_driver, "function_handle", lambda h: ("CUfunction", h))
    monkeypatch.setattr(_driver, "stream_handle_object", lambda h: ("CUstream", h))
    monkeypatch.setattr(_launch, "_cu_launch", lambda *a: (1,))  # CUDA_ERROR_INVALID_VALUE

    class Core:
        handle = 0x1234

    class S:
        _handle, _core = 0x5000, object()

    kernel, dev = _PlanKernel(), _PlanDevice()
    kernel.param_sizes = (8, 4, 4, 8)
    kernel.core = Core()
    plan = LaunchPlan(kernel, dev, 3, 128, (0xAB00, np.int32(-7), np.float32(0.5), 99))
    with pytest.raises(ck.CudaDriverError, match="cuLaunchKernel") as info:
        plan.launch(S())
    assert info.value.code == 1 and kernel.name in str(info.value)
