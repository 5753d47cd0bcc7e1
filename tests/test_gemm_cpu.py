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


# --- no private cuda.core imports; the public tensor-map route -------------------------------

def _private_cuda_core_imports(path):
    """(line, what) for every import of a private cuda.core module in one source file: ``import
    cuda.core._x``, ``from cuda.core._x import ...``, ``from cuda.core import _x`` (and the same
    under cuda.core.experimental), or a string naming one (importlib.import_module)."""
    import ast

    def underscored(name: str) -> bool:  # _x is private; __version__ and the like are not
        return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))

    def private(mod: str) -> bool:
        parts = mod.split(".")
        return parts[:2] == ["cuda", "core"] and any(underscored(p) for p in parts[2:])

    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if private(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if private(node.module):
                found.append((node.lineno, node.module))
            elif node.module.split(".")[:2] == ["cuda", "core"]:
                found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names if underscored(a.name)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and private(node.value):
            found.append((node.lineno, node.value))
    return found


def test_no_private_cuda_core_imports():
    """A cuda.core patch release may move or rename its private modules: the kit imports only
    cuda.core's public names (cudart_kit.ops.gemm and _gemm_sm90 included, every file checked)."""
    from pathlib import Path

    import cudart_kit

    root = Path(cudart_kit.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert root / "ops" / "gemm.py" in files and root / "ops" / "_gemm_sm90.py" in files
    bad = {str(f.relative_to(root)): hits for f in files if (hits := _private_cuda_core_imports(f))}
    assert not bad, f"private cuda.core imports: {bad}"


def test_private_import_scan_catches_each_form(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import cuda.core._tensor_map\nfrom cuda.core._memory import Buffer\n"
                   "from cuda.core import _utils, Device, __version__\nimport importlib\n"
                   "importlib.import_module('cuda.core._stream')\nfrom cuda.core import TensorMapDescriptorOptions\n"
                   "from cuda.core.utils import StridedMemoryView\n")
    assert [w for _, w in _private_cuda_core_imports(src)] == [
        "cuda.core._tensor_map", "cuda.core._memory", "cuda.core._utils", "cuda.core._stream"]


def test_gemm_modules_import_without_cuda_core_tensor_map():
    """Importing the matmul modules touches no cuda.core module at all (the tensor-map API is
    looked up when an sm90 kernel first runs), so even a cuda.core without it imports fine."""
    import subprocess
    import sys

    code = ("import sys\n"
            "sys.modules['cuda.core._tensor_map'] = None\n"  # any import of it raises ImportError
            "import cudart_kit, cudart_kit.ops.gemm, cudart_kit.ops._gemm_sm90\n"
            "bad = sorted(m for m, v in sys.modules.items() if m.startswith('cuda.core') and v is not None)\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("kind,dtype", [("f16", np.float16), ("tf32", np.float32)])
def test_tma_options_public_route(kind, dtype):
    """The sm90 tensor maps' options from cuda.core's public TensorMapDescriptorOptions: SW128,
    256-byte L2 promotion, the operand's numpy dtype; no driver needed to build them."""
    from cudart_kit.ops import _gemm_sm90 as g

    g._options.clear()
    opt = g.tma_options(kind, (128, 64))
    assert opt.box_dim == (128, 64)
    assert np.dtype(opt.data_type) == np.dtype(dtype)
    assert opt.swizzle.name == "SWIZZLE_128B" and int(opt.swizzle) == 3      # CU_TENSOR_MAP_SWIZZLE_128B
    assert opt.l2_promotion.name == "L2_256B" and int(opt.l2_promotion) == 3  # CU_TENSOR_MAP_L2_PROMOTION_L2_256B
    assert opt.interleave.name == "NONE" and opt.oob_fill.name == "NONE"
    assert g.tma_options(kind, (128, 64)) is opt  # cached


def test_tma_options_bf16():
    from cudart_kit.memory import bfloat16
    from cudart_kit.ops import _gemm_sm90 as g

    g._options.clear()
    if bfloat16 is None:
        with pytest.raises(Exception, match="ml_dtypes"):
            g.tma_options("bf16", (64, 64))
    else:
        assert np.dtype(g.tma_options("bf16", (64, 64)).data_type) == bfloat16


def test_tma_options_missing_api_is_a_kit_error(monkeypatch):
    """A cuda.core without the public tensor-map options: a CudaKitError naming the API when an
    sm90 kernel would run, not an ImportError at import."""
    import cuda.core

    from cudart_kit.errors import CudaKitError
    from cudart_kit.ops import _gemm_sm90 as g

    g._options.clear()
    monkeypatch.delattr(cuda.core, "TensorMapDescriptorOptions")
    with pytest.raises(CudaKitError, match="TensorMapDescriptorOptions"):
        g.tma_options("f16", (128, 64))
    g._options.clear()


def test_repitch_blocks_follow_the_sm_count():
    """The re-pitch grid scales with the device's SM count (32 blocks of 256 per SM at most), not
    a hard-coded 132."""
    from cudart_kit.ops._gemm_sm90 import repitch_blocks

    assert repitch_blocks(1, 132) == 1
    assert repitch_blocks(257, 132) == 2
    assert repitch_blocks(10**8, 132) == 32 * 132
    assert repitch_blocks(10**8, 114) == 32 * 114     # H100 PCIe
    assert repitch_blocks(10**8, 78) == 32 * 78


# --- closed streams and arrays are refused, naming them, before any driver call -------------

def _fake_stream(closed: bool):
    from types import SimpleNamespace

    from cudart_kit.stream import Stream

    s = Stream._wrap(SimpleNamespace(handle=0x5150), SimpleNamespace(ordinal=0), owned=False)
    if closed:
        s._core = None
    return s


def test_closed_stream_refused_even_with_a_cached_plan(monkeypatch):
    from cudart_kit.errors import ClosedError
    from cudart_kit.ops import gemm

    a, b, out = fake((4, 4), (16, 4)), fake((4, 4), (16, 4)), fake((4, 4), (16, 4))
    calls = []
    monkeypatch.setitem(gemm._fast, (a.sig, b.sig, out.sig, "tiled", False, False, False),
                        lambda *args: calls.append(args) or True)
    s = _fake_stream(closed=True)
    with pytest.raises(ClosedError, match=r"stream <cudart_kit\.Stream 0x5150 .*closed"):
        gemm.matmul(a, b, out, algo="tiled", stream=s)
    assert not calls  # the cached plan never ran


@pytest.mark.parametrize("which", ["a", "b", "out"])
def test_closed_operand_named(which, monkeypatch):
    """A closed array (ptr zeroed by close) is refused on the cached-plan path too, naming the
    argument; the plan never runs."""
    from cudart_kit.errors import ClosedError
    from cudart_kit.ops import gemm

    arrays = {w: fake((4, 4), (16, 4)) for w in ("a", "b", "out")}
    arrays[which] = Array._make(0, (4, 4), np.dtype(np.float32), (16, 4), "foreign", None, None)  # closed
    a, b, out = arrays["a"], arrays["b"], arrays["out"]
    calls = []
    monkeypatch.setitem(gemm._fast, (a.sig, b.sig, out.sig, "tiled", False, False, False),
                        lambda *args: calls.append(args) or True)
    with pytest.raises(ClosedError, match=rf"matmul: {which} is closed"):
        gemm.matmul(a, b, out, algo="tiled", stream=_fake_stream(closed=False))
    assert not calls
