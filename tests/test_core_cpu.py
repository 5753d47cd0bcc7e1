"""CPU tests of the runtime layer: import hygiene, the no-driver path, error mapping, argument
packing and launch-geometry arithmetic (small fakes stand in for kernels and streams)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import cudart_kit as ck
from cudart_kit import errors
from cudart_kit.launcher import BenchResult, _convert, _dim3, blocks_for, pack_args
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
    from cudart_kit.stream import _foreign_handle

    class Proto:
        def __cuda_stream__(self):
            return (0, 1234)

    class TorchLike:
        cuda_stream = 99

    class CupyLike:
        ptr = 77

    assert _foreign_handle(Proto()) == 1234
    assert _foreign_handle(TorchLike()) == 99
    assert _foreign_handle(CupyLike()) == 77
    assert _foreign_handle(5) == 5
    with pytest.raises(ck.StreamError):
        _foreign_handle(True)


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
