"""Matmul argument handling that needs no GPU: layouts, algorithm choice."""

import numpy as np
import pytest

from cudart_kit.errors import DTypeError, ShapeError
from cudart_kit.memory import Array
from cudart_kit.ops.gemm import choose_algo, layout_of, simt_tile


def fake(shape, strides, dtype=np.float32):
    return Array._make(0x1000, shape, np.dtype(dtype), strides, "foreign", None, None)


def test_layouts():
    assert layout_of(fake((3, 5), (20, 4)), "a") == (0, 5)          # row-major
    assert layout_of(fake((3, 5), (32, 4)), "a") == (0, 8)          # sub-matrix, ld 8
    assert layout_of(fake((3, 5), (4, 12)), "a") == (1, 3)          # column-major view
    assert layout_of(fake((1, 5), (4, 4)), "a") == (0, 5)
    with pytest.raises(ShapeError, match="neither row- nor column-major"):
        layout_of(fake((3, 5), (40, 8)), "a")
    with pytest.raises(ShapeError, match="2-D"):
        layout_of(fake((3,), (4,)), "a")


def test_choose_algo():
    f32 = np.dtype(np.float32)
    assert choose_algo(f32, 0, 0, False) == "simt"
    assert choose_algo(f32, 1, 0, False) == "simt"  # simt256 reads transposed operands
    assert choose_algo(f32, 0, 0, True) == "tf32"
    assert choose_algo(np.dtype(np.float16), 0, 0, False) == "fp16"
    with pytest.raises(DTypeError, match="float64"):
        choose_algo(np.dtype(np.float64), 0, 0, False)


def test_simt_tile_rule():
    """simt256 once its 128x256 tiles cover half the SMs, else simt128 (132 SMs: H100 / H200)."""
    assert simt_tile(4096, 4096, 132) == "simt256"          # 512 tiles
    assert simt_tile(2048, 2048, 132) == "simt256"          # 128 tiles: 2 x 128 >= 132
    assert simt_tile(1024, 2048, 132) == "simt128"          # 64 tiles: 2 x 64 < 132
    assert simt_tile(1152, 2048, 132) == "simt256"          # 9 x 8 = 72 tiles
    assert simt_tile(1000, 1000, 132) == "simt128"          # 8 x 4 = 32 tiles
    assert simt_tile(1, 1, 132) == "simt128"
    assert simt_tile(1, 1, 1) == "simt256"                  # one SM: any grid covers it
    assert simt_tile(8192, 257, 132) == "simt256"           # 64 x 2 = 128 tiles
    assert simt_tile(1, 1, 132, transposed=True) == "simt256"  # only simt256 reads transposed inputs


def test_choose_algo_hopper():
    f32, f16 = np.dtype(np.float32), np.dtype(np.float16)
    assert choose_algo(f16, 0, 0, False, sm90=True) == "fp16_sm90"
    assert choose_algo(f32, 0, 1, True, sm90=True) == "tf32_sm90"
    assert choose_algo(f32, 0, 0, False, sm90=True) == "simt"  # plain FP32 never goes to tensor cores
    from cudart_kit.memory import bfloat16
    if bfloat16 is not None:
        assert choose_algo(np.dtype(bfloat16), 1, 1, False, sm90=True) == "bf16_sm90"
        assert choose_algo(np.dtype(bfloat16), 1, 1, False) == "bf16"


def test_sm90_device_rule_and_tiles():
    from types import SimpleNamespace

    from cudart_kit.ops import _gemm_sm90 as g

    h100 = SimpleNamespace(ordinal=0, name="H100", compute_capability=(9, 0))
    b200 = SimpleNamespace(ordinal=1, name="B200", compute_capability=(10, 0))
    assert g.unsupported(h100) is None
    assert "compute capability 9.0" in g.unsupported(b200) and "B200" in g.unsupported(b200)
    assert g.pick_bn(8192, 8192, 132) == 256
    assert g.pick_bn(1024, 1024, 132) == 128          # 32 wide tiles would leave 100 SMs idle
    assert g.shared_bytes(256) <= 227 * 1024          # fits the H100's opt-in shared memory
    assert g._tma_ld(3, 1, 2) == 8 and g._tma_ld(3, 5, 2) == 3


def test_wgmma_header_is_generated():
    import subprocess
    import sys
    from pathlib import Path

    tool = Path(__file__).resolve().parent.parent / "tools" / "gen_wgmma.py"
    r = subprocess.run([sys.executable, str(tool), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_tool_scripts_compile(tmp_path):
    """The device-side scripts in tools/ run only on the GPU machine: catch syntax errors here."""
    import py_compile
    from pathlib import Path

    tools = sorted((Path(__file__).resolve().parent.parent / "tools").glob("*.py"))
    assert tools
    for path in tools:
        py_compile.compile(str(path), doraise=True, cfile=str(tmp_path / (path.name + "c")))
