"""Matmul argument handling that needs no GPU: layouts, the geometry table against the kernel
sources, algorithm choice."""

import ast
import re
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from cudart_kit.errors import DTypeError, ShapeError
from cudart_kit.memory import Array
from cudart_kit.ops import _gemm_geometry as geo
from cudart_kit.ops.gemm import choose_algo, layout_of, simt_tile

KERNELS = Path(__file__).resolve().parent.parent / "kernels"


def fake(shape, strides, dtype=np.float32, ptr=0x1000, device=None):
    return Array._make(ptr, shape, np.dtype(dtype), strides, "foreign", device, None)


# --- the layout classification: (shape, strides, itemsize) -> stored layout + ld -------------

@pytest.mark.parametrize("shape,strides,want", [
    ((3, 5), (20, 4), (False, 5)),      # row-major
    ((3, 5), (32, 4), (False, 8)),      # a column block of a 3 x 8 matrix: ld 8
    ((3, 5), (4, 12), (True, 3)),       # column-major: the transpose of a 5 x 3 matrix
    ((3, 5), (4, 40), (True, 10)),      # the transpose of a column block of a 5 x 10 matrix
    ((1, 5), (4, 4), (False, 5)),       # a single row: its row stride is never used
    ((1, 5), (999, 4), (False, 5)),
    ((1, 5), (-8, 4), (False, 5)),
    ((1, 5), (4, 40), (True, 10)),      # a row of a transposed matrix: elements 10 apart
    ((5, 1), (4, 4), (False, 1)),       # a contiguous column
    ((5, 1), (400, 4), (False, 100)),   # a column of a 100-wide matrix
    ((5, 1), (400, 123), (False, 100)),  # its column stride is never used
    ((1, 1), (7, 9), (False, 1)),
    ((0, 5), (20, 4), (False, 5)),      # empty: refused later by its sizes, not by its strides
    ((3, 0), (0, 4), (False, 1)),
])
def test_classify(shape, strides, want):
    assert tuple(geo.classify(shape, strides, 4)) == want


@pytest.mark.parametrize("shape,strides,ptr,match", [
    ((3, 5), (40, 8), 0, "no dimension has unit stride"),             # every other row and column
    ((3, 5), (-20, 4), 0, "negative stride"),                         # rows reversed
    ((3, 5), (20, -4), 0, "negative stride"),
    ((3, 5), (0, 4), 0, "overlap"),                                   # broadcast rows
    ((3, 5), (12, 4), 0, "overlap"),                                  # ld 3 < 5 columns
    ((3, 5), (4, 8), 0, "overlap"),                                   # column-major, ld 2 < 3 rows
    ((3, 5), (22, 4), 0, "not a whole number of elements"),
    ((3, 5), (20, 4), 0x1002, "not a multiple of its 4-byte elements"),
    ((3, 5, 2), (40, 8, 4), 0, "must be 2-D"),
])
def test_classify_refuses(shape, strides, ptr, match):
    with pytest.raises(ShapeError, match=match):
        geo.classify(shape, strides, 4, ptr, what="matmul: b")


def test_classify_message_names_operand_layout_and_need():
    with pytest.raises(ShapeError) as err:
        geo.classify((64, 32), (8, 4096), 4, what="matmul: b", needs="the simt kernel reads X")
    msg = str(err.value)
    assert msg.startswith("matmul: b has shape (64, 32) and strides (8, 4096) bytes (4-byte elements)")
    assert "the simt kernel reads X" in msg and "copy it into a contiguous array" in msg
    with pytest.raises(ShapeError, match=r"row-major operand \(strides \(ld\*2, 2\) with ld >= 32\) or a "
                                         r"column-major one \(strides \(2, ld\*2\) with ld >= 64\)"):
        geo.classify((64, 32), (8, 4096), 2)


def _host_views(rng):
    """Random numpy views of a 2-D host array: blocks, steps, reversals, transposes."""
    base = np.zeros((13, 17), np.float32)
    for _ in range(400):
        r0, c0 = rng.integers(0, 13), rng.integers(0, 17)
        r1, c1 = rng.integers(r0, 14), rng.integers(c0, 18)
        sr, sc = rng.choice([1, 1, 1, 2, -1]), rng.choice([1, 1, 1, 2, 3, -1])
        v = base[r0:r1:sr, c0:c1:sc] if sr > 0 and sc > 0 else base[r0:r1, c0:c1][::sr, ::sc]
        yield base, (v.T if rng.random() < 0.5 else v)


def test_classify_against_numpy_addresses():
    """Where classify accepts a view, (transposed, ld) addresses every element where numpy puts it;
    it refuses exactly the views with no unit-stride dimension (sizes above 1), or reversed ones."""
    rng = np.random.default_rng(13)
    accepted = refused = 0
    for base, v in _host_views(rng):
        ptr = v.__array_interface__["data"][0]
        it = v.itemsize
        rows, cols = v.shape
        unit = [s == it or d <= 1 for s, d in zip(v.strides, v.shape)]
        plain = v.size == 0 or (all(s > 0 or d <= 1 for s, d in zip(v.strides, v.shape)) and any(unit))
        try:
            st = geo.classify(v.shape, v.strides, it, ptr)
        except ShapeError:
            refused += 1
            assert not plain or (v.size and not any(unit)), (v.shape, v.strides)
            continue
        accepted += 1
        assert plain, (v.shape, v.strides)
        for i in range(rows):
            for j in range(cols):
                want = ptr + i * v.strides[0] + j * v.strides[1]
                got = ptr + ((j * st.ld + i) if st.transposed else (i * st.ld + j)) * it
                assert got == want, (v.shape, v.strides, st, i, j)
    assert accepted > 100 and refused > 30


def test_layout_of_wraps_classify():
    assert layout_of(fake((3, 5), (20, 4)), "a") == (0, 5)
    assert layout_of(fake((3, 5), (4, 12)), "a") == (1, 3)
    with pytest.raises(ShapeError, match=r"^matmul: a has shape \(3, 5\) and strides \(40, 8\)"):
        layout_of(fake((3, 5), (40, 8)), "a")
    with pytest.raises(ShapeError, match="2-D"):
        layout_of(fake((3,), (4,)), "a")


def test_overlaps_against_numpy():
    """Exact (np.shares_memory) for sibling views with equal strides; never a miss otherwise."""
    rng = np.random.default_rng(7)
    views = [v for _, v in _host_views(rng)]
    base = np.zeros((13, 17), np.float32)
    views += [base[:, :8], base[:, 8:], base[:5], base[5:], base[:, :9], base.T[:, :4], base.T[:, 4:]]
    exact = 0
    for _ in range(4000):
        v1, v2 = views[rng.integers(len(views))], views[rng.integers(len(views))]
        p1, p2 = v1.__array_interface__["data"][0], v2.__array_interface__["data"][0]
        got = geo.overlaps(p1, v1.shape, v1.strides, p2, v2.shape, v2.strides, 4)
        truth = bool(np.shares_memory(v1, v2))
        if truth:
            assert got, (v1.shape, v1.strides, v2.shape, v2.strides)
        if v1.strides == v2.strides and v1.strides[1] == 4 and v1.strides[0] >= 4 * max(v1.shape[1], v2.shape[1]):
            assert got == truth, (v1.shape, v1.strides, p2 - p1, v2.shape)
            exact += 1
    assert exact > 100
    it = 4  # sibling column blocks of one matrix: disjoint although their address ranges interleave
    assert not geo.overlaps(0, (13, 8), (68, it), 32, (13, 9), (68, it), it)
    assert geo.overlaps(0, (13, 9), (68, it), 32, (13, 9), (68, it), it)
    assert not geo.overlaps(0, (17, 4), (it, 68), 4 * 68, (17, 9), (it, 68), it)  # column-major siblings


# --- the layout vocabulary ---------------------------------------------------------------------

def test_layout_vocabulary():
    assert geo.LAYOUTS == ("nn", "nt", "tn", "tt")
    for ta in (False, True):
        for tb in (False, True):
            name = geo.layout_name(ta, tb)
            assert geo.layout_flags(name) == (ta, tb)
    assert geo.layout_name(0, 1) == "nt"  # b stored N x K: a @ b_stored.T
    with pytest.raises(ValueError, match="nn"):
        geo.layout_flags("rc")


_ENTRY = re.compile(r'extern\s+"C"\s+__global__\s+(?:__launch_bounds__\([^)]*\)\s+)?void\s+'
                    r'(?:__launch_bounds__\([^)]*\)\s+)?(\w+)\s*\(')
_DEFINE = re.compile(r'^[ \t]*#[ \t]*define(?:[^\n]*\\\n)*[^\n]*|//[^\n]*', re.M)
_INSTANCE = re.compile(r'^(SIMT256_KERNEL|KIT_WMMA_CP|KIT_SM90_KERNEL|KIT_SM90_PERSISTENT)\((\w+), ([^)]*)\)\s*$', re.M)
_PASS = re.compile(r'^KIT_EPILOGUE_PASS\((\w+),', re.M)      # one entry point


def _declared(source: str) -> dict:
    """Entry points of a kernel source: {name: None} for plain ones, {name: (macro, args)} for
    ones instantiated by a macro (KIT_SM90_KERNEL: a kernel and its epilogue twin <name>_epi,
    kernels/epilogue.cuh)."""
    text = (KERNELS / source).read_text()
    out = {n: None for n in _ENTRY.findall(_DEFINE.sub("", text))}
    for macro, name, args in _INSTANCE.findall(text):
        out[name] = (macro, [a.strip() for a in args.split(",")])
        if macro.startswith("KIT_SM90"):  # the Hopper kernels: each with its epilogue twin <name>_epi
            out[name + "_epi"] = out[name]
    out.update({name: None for name in _PASS.findall(text)})
    return out


def test_kernel_names_speak_the_layout_vocabulary():
    """Every layout-suffixed entry point's letters are one of LAYOUTS and agree with the flags its
    macro instantiates it with (A stored transposed, B stored transposed)."""
    checked = 0
    for source in ("gemm.cu", "gemm_sm90.cu"):
        for name, inst in _declared(source).items():
            if inst is None:
                continue
            macro, args = inst
            layout = re.search(r"_(\w\w)(?:_f32)?(?:_epi)?$", name).group(1)
            assert layout in geo.LAYOUTS, name
            flags = {"SIMT256_KERNEL": args[0:2], "KIT_WMMA_CP": args[1:3], "KIT_SM90_KERNEL": args[2:4],
                     "KIT_SM90_PERSISTENT": args[1:3]}[macro]
            assert tuple(f in ("true", "1") for f in flags) == geo.layout_flags(layout), (name, args)
            checked += 1
    assert checked == 4 + 12 + 2 * (18 + 9)  # the Hopper kernels (and persistent ones) with their epilogue twins


def test_python_names_every_kernel_and_only_those():
    """The kernel names the Python side builds from the table are exactly the entry points of the
    sources: none missing, none unreachable."""
    gemm = {"gemm_naive_f32", "gemm_tiled_f32", geo.SIMT128.kernel, "gemm_tf32", "gemm_bf16", "gemm_fp16",
            "transpose_f32", "repitch_b16", "repitch_b32"}
    gemm |= {geo.SIMT256.kernel(lay) for lay in geo.LAYOUTS}
    gemm |= {geo.Wmma.cp_kernel(algo, lay) for algo in ("tf32", "bf16", "fp16") for lay in geo.LAYOUTS}
    sm90 = {geo.SM90.kernel(kind, bn, lay) for kind in ("bf16", "f16") for bn in (128, 256) for lay in geo.LAYOUTS}
    sm90 |= {geo.SM90.kernel("tf32", bn, "nt") for bn in (geo.SM90.bn_narrow, geo.SM90.bn_wide)}
    sm90 |= {geo.SM90.kernel(kind, geo.SM90.bn_wide, lay, persistent=True) for kind in ("bf16", "f16")
             for lay in geo.LAYOUTS}
    sm90.add(geo.SM90.kernel("tf32", geo.SM90.bn_wide, "nt", persistent=True))
    gemm |= {"epilogue_f32", "epilogue_bf16", "epilogue_fp16"}  # the epilogue as a pass (after cuBLAS)
    sm90 |= {n + "_epi" for n in sm90}
    assert set(_declared("gemm.cu")) == gemm
    assert set(_declared("gemm_sm90.cu")) == sm90
    with pytest.raises(ValueError, match="K-major"):
        geo.SM90.kernel("tf32", 128, "nn")
    with pytest.raises(ValueError, match="256-wide"):
        geo.SM90.kernel("bf16", 128, "nn", persistent=True)


def test_sm90_grid_and_tile_choice(monkeypatch):
    """One CTA per tile, or for the persistent kernels at most one per SM; the persistent kernel
    only for the wide tiles and only when tiles outnumber the SMs (else the two are the same
    schedule); the forcing switches tests and benchmarks use."""
    from cudart_kit.ops import _gemm_sm90 as sm

    S = geo.SM90
    assert S.grid(4096, 4096, 256, False, 132) == 32 * 16 == S.tiles(4096, 4096, 256)
    assert S.grid(4096, 4096, 256, True, 132) == 132
    assert S.grid(300, 300, 256, True, 132) == S.tiles(300, 300, 256) == 3 * 2
    assert S.kernel("bf16", 256, "tn", persistent=True) == "gemm_sm90_bf16_256p_tn"
    monkeypatch.setattr(sm, "FORCE_BN", None)
    monkeypatch.setattr(sm, "FORCE_PERSIST", True)
    assert sm.pick_tile(4096, 4096, 256, 132) == (256, True)
    assert sm.pick_tile(1024, 1024, 256, 132) == (128, False)  # narrow tiles: never persistent
    monkeypatch.setattr(sm, "FORCE_PERSIST", False)
    assert sm.pick_tile(4096, 4096, 256, 132) == (256, False)
    monkeypatch.setattr(sm, "FORCE_PERSIST", None)
    assert sm.pick_tile(2048, 2048, 256, 132)[1] is False  # 128 tiles <= 132 SMs: one tile per CTA anyway
    assert sm.pick_tile(4096, 4096, 256, 132) == (256, sm.persistent_wins(4096, 4096, 256))


# --- the geometry table against the kernel sources ---------------------------------------------

_BLOCK = re.compile(r"//\s*<geometry (\w+)>\n(.*?)//\s*</geometry>", re.S)
_FIELD = re.compile(r"^\s*static constexpr int (\w+) = ([^;]+);", re.M)


def _int_literal(expr: str) -> int:
    """An integer literal, or a product / sum of them (``99 * 1024``); anything else is refused so
    the blocks stay readable without a C parser."""
    def ev(node):
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Add, ast.Sub)):
            a, b = ev(node.left), ev(node.right)
            return a * b if isinstance(node.op, ast.Mult) else a + b if isinstance(node.op, ast.Add) else a - b
        raise ValueError(f"not an integer literal: {expr!r}")
    return ev(ast.parse(expr.strip(), mode="eval").body)


def geometry_blocks(text: str) -> dict:
    """{block name: {FIELD: value}} of every ``// <geometry NAME>`` block of a kernel source."""
    blocks = {}
    for name, body in _BLOCK.findall(text):
        assert re.search(rf"\bstruct {name}\b", body), f"block {name} declares no struct {name}"
        assert name not in blocks, f"two geometry blocks named {name}"
        blocks[name] = {f: _int_literal(v) for f, v in _FIELD.findall(body)}
    return blocks


def test_geometry_parser():
    text = ("// <geometry x>\nstruct x {\n  static constexpr int BM = 128;  // rows\n"
            "  static constexpr int SMEM = 99 * 1024;\n  __host__ __device__ static constexpr int f(int a) { return a; }\n"
            "};\n// </geometry>\n")
    assert geometry_blocks(text) == {"x": {"BM": 128, "SMEM": 101376}}
    with pytest.raises(ValueError, match="literal"):
        geometry_blocks(text.replace("99 * 1024", "BM * 2"))


@pytest.mark.parametrize("source", sorted(geo.TABLE))
def test_geometry_table_mirrors_the_sources(source):
    """Each kernel family's Python dataclass holds exactly the constants of its C block (the same
    names, lower-cased, and values): changing one side without the other fails here."""
    c_side = geometry_blocks((KERNELS / source).read_text())
    py_side = {name: {f.name.upper(): getattr(obj, f.name) for f in fields(obj)} for name, obj in geo.TABLE[source].items()}
    assert sorted(c_side) == sorted(py_side), "geometry blocks and table entries differ"
    for name in c_side:
        assert c_side[name] == py_side[name], f"{source} <geometry {name}> differs from the table"


def test_geometry_formulas_and_limits():
    """The static_asserts of the sources, restated on the table: shared-memory formulas, limits,
    warp layouts that tile the blocks."""
    L, S2, S1 = geo.LIMITS, geo.SIMT256, geo.SIMT128
    assert L.portable_smem_optin == 99 * 1024 and L.static_smem == 48 * 1024
    assert geo.TILED.static_smem == 2 * geo.TILED.tile * (geo.TILED.tile + 1) * 4 <= L.static_smem
    assert S1.threads * S1.thread_m * S1.thread_n == S1.bm * S1.bn
    assert S1.static_smem == S1.stages * S1.bk * (S1.bm + S1.bn) * 4 <= L.static_smem
    assert S2.warps_m * S2.warps_n * 32 == S2.threads
    assert S2.bm == S2.warps_m * 4 * S2.thread_m and S2.bn == S2.warps_n * 8 * S2.thread_n
    for lay in geo.LAYOUTS:
        pitch_b = S2.b_pitch_t if lay[1] == "t" else S2.b_pitch_n
        assert S2.smem_bytes(lay) == S2.stages * S2.bk * (S2.a_pitch + pitch_b) * 4 <= L.portable_smem_optin
    for W in (geo.WMMA_TF32, geo.WMMA_B16):
        assert W.warps_m * W.warps_n * 32 == W.threads and W.warps_m * W.warp_m == W.bm
        assert W.warps_n * W.warp_n == W.bn and W.pad * W.itemsize == 16
        a_n, a_t = W.bm * (W.bk + W.pad), W.bk * (W.bm + W.pad)
        b_n, b_t = W.bk * (W.bn + W.pad), W.bn * (W.bk + W.pad)
        assert W.static_smem == (a_n + b_n) * W.itemsize + W.scratch <= L.static_smem
        for lay in geo.LAYOUTS:
            a, b = (a_t if lay[0] == "t" else a_n), (b_t if lay[1] == "t" else b_n)
            assert W.cp_smem_bytes(lay) == W.cp_stages * (a + b) * W.itemsize + W.scratch <= L.portable_smem_optin
    T = geo.TRANSPOSE
    assert T.static_smem == T.tile * (T.tile + 1) * 4 and T.threads_x == T.tile
    H = geo.SM90
    assert H.threads == 128 * (1 + H.consumers) and H.bm == 64 * H.consumers
    assert H.producer_regs * 128 + H.consumer_regs * 128 * H.consumers <= 65536
    assert H.smem_optin == 227 * 1024
    assert H.bias_floats >= max(H.bm, H.bn_wide)  # the staged bias: a tile's row or column
    for bn in (H.bn_narrow, H.bn_wide):
        assert H.smem_bytes(bn) == (H.stages * (H.bm + bn) * H.row_bytes + H.align_slack + 2 * H.stages * 8
                                    + 4 * H.bias_floats)
        assert H.smem_bytes(bn) <= H.smem_optin
    assert H.bk(2) * 2 == H.bk(4) * 4 == H.row_bytes
    with pytest.raises(ValueError):
        H.smem_bytes(192)


def test_launch_geometry_from_the_table():
    assert geo.NAIVE.grid(33, 17) == (2, 3) and geo.NAIVE.block == (16, 16)
    assert geo.SIMT256.grid(129, 257) == (2, 2) and geo.SIMT128.grid(129, 257) == (3, 2)
    assert geo.WMMA_B16.grid(1, 1) == (1, 1)
    assert geo.TRANSPOSE.grid(33, 65) == (2, 3)
    assert geo.SM90.tiles(129, 257, 256) == 4


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
    assert g.pick_bn(1024, 1024, 16) == 256           # the SM count is the device's, not a constant
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
    from cudart_kit.ops._gemm_geometry import REPITCH

    assert REPITCH.blocks(1, 132) == 1
    assert REPITCH.blocks(257, 132) == 2
    assert REPITCH.blocks(10**8, 132) == 32 * 132
    assert REPITCH.blocks(10**8, 114) == 32 * 114     # H100 PCIe
    assert REPITCH.blocks(10**8, 78) == 32 * 78


# --- closed streams and arrays are refused, naming them, before any driver call -------------

class _FakeDevice:  # hashable (arrays intern their device in a signature), no driver behind it
    ordinal = 0
    name = "fake H100"
    multiprocessor_count = 132
    compute_capability = (9, 0)

    def attribute(self, name):  # the launch core's geometry limits (an H100's)
        return {"max_block_dim_x": 1024, "max_block_dim_y": 1024, "max_block_dim_z": 64,
                "max_grid_dim_x": 2**31 - 1, "max_grid_dim_y": 65535, "max_grid_dim_z": 65535,
                "max_threads_per_block": 1024, "max_shared_memory_per_block_optin": 232448}[name]


def _fake_stream(closed: bool):
    from types import SimpleNamespace

    from cudart_kit.stream import Stream

    s = Stream._wrap(SimpleNamespace(handle=0x5150), _FakeDevice(), owned=False)
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


# --- layouts refused before any driver call, saying what the kernel needs --------------------

def _operands(s, b_strides=(64, 4), out_shape=(8, 16), out_strides=(64, 4), dtype=np.float32, out_ptr=0x9000):
    it = np.dtype(dtype).itemsize
    a = fake((8, 4), (4 * it, it), dtype, ptr=0x1000, device=s.device)
    b = fake((4, 16), tuple(x * it // 4 for x in b_strides), dtype, ptr=0x5000, device=s.device)
    out = fake(out_shape, tuple(x * it // 4 for x in out_strides), dtype, ptr=out_ptr, device=s.device)
    return a, b, out


@pytest.mark.parametrize("algo,dtype,extra", [
    ("simt", np.float32, ""), ("tiled", np.float32, ""), ("tf32", np.float32, ""),
    ("fp16_sm90", np.float16, "re-pitched first"),
])
def test_stepped_operand_refused_naming_the_kernel(algo, dtype, extra):
    from cudart_kit.ops import gemm

    s = _fake_stream(closed=False)
    a, b, out = _operands(s, b_strides=(128, 8), dtype=dtype)  # every other column of a wider matrix
    it = np.dtype(dtype).itemsize
    with pytest.raises(ShapeError) as err:
        gemm.matmul(a, b, out, algo=algo, stream=s)
    msg = str(err.value)
    assert msg.startswith(f"matmul: b has shape (4, 16) and strides ({32 * it}, {2 * it}) bytes"), msg
    assert f"the {algo} kernel reads a row-major operand (strides (ld*{it}, {it}) with ld >= 16)" in msg
    assert extra in msg


def test_auto_names_the_kernel_it_chose():
    from cudart_kit.ops import gemm

    s = _fake_stream(closed=False)
    a, b, out = _operands(s, b_strides=(-64, 4))
    with pytest.raises(ShapeError, match=r"negative stride .*the simt kernel reads"):
        gemm.matmul(a, b, out, stream=s)


def test_column_major_out_refused():
    from cudart_kit.ops import gemm

    s = _fake_stream(closed=False)
    a, b, out = _operands(s, out_strides=(4, 32))  # the transpose of a 16 x 8 matrix
    with pytest.raises(ShapeError, match=r"out has shape \(8, 16\) and strides \(4, 32\) \(column-major\): the "
                                         r"simt kernel writes a row-major out .*out\.T = op\(b\)\.T @ op\(a\)\.T"):
        gemm.matmul(a, b, out, algo="simt", stream=s)
    a1 = fake((1, 4), (16, 4), ptr=0x1000, device=s.device)
    row = fake((1, 16), (4, 8), ptr=0x9000, device=s.device)  # a single row, elements 8 bytes apart
    with pytest.raises(ShapeError, match="column-major"):
        gemm.matmul(a1, b, row, algo="tiled", stream=s)


@pytest.mark.parametrize("out_ptr", [0x1000, 0x1000 + 4 * 16, 0x5000 + 4 * 8])
def test_out_overlapping_an_input_refused(out_ptr):
    """out= over a's rows, or partly over b's columns (a block of the same matrix), would be read
    while written: refused, on the checked path and never through a cached plan."""
    from cudart_kit.ops import gemm

    s = _fake_stream(closed=False)
    a, b, out = _operands(s, out_ptr=out_ptr)
    with pytest.raises(ShapeError, match="out overlaps"):
        gemm.matmul(a, b, out, algo="simt", stream=s)


def test_out_is_an_input_never_takes_a_cached_plan(monkeypatch):
    from cudart_kit.ops import gemm

    s = _fake_stream(closed=False)
    a = fake((4, 4), (16, 4), device=s.device)
    calls = []
    monkeypatch.setitem(gemm._fast, (a.sig, a.sig, a.sig, "tiled", False, False, False),
                        lambda *args: calls.append(args) or True)
    with pytest.raises(ShapeError, match="out overlaps a"):
        gemm.matmul(a, a, a, algo="tiled", stream=s)
    assert not calls


def test_simt128_layout_refusal_speaks_the_vocabulary():
    from cudart_kit.ops import gemm

    s = _fake_stream(closed=False)
    a, b, out = _operands(s)
    bt = fake((16, 4), (16, 4), ptr=0x5000, device=s.device)  # b stored N x K
    with pytest.raises(ShapeError, match=r"algo 'simt128' reads layout nn only .* got nt \(a stored M x K, b stored "
                                         r"N x K"):
        gemm.matmul(a, bt, out, algo="simt128", transpose_b=True, stream=s)
    with pytest.raises(ShapeError, match="got nt"):
        gemm.matmul(a, bt.T if hasattr(bt, "T") else fake((4, 16), (4, 16), ptr=0x5000, device=s.device), out,
                    algo="simt128", stream=s)


# --- the host path on views, against numpy, with the kernels emulated -----------------------
#
# matmul runs for real down to the launch; each launch is then carried out in numpy on host
# memory at the pointers, leading dimensions and layout flags matmul passed (gemm.cu's contract:
# op(A)(m, k) = A[m * lda + k], or A[k * lda + m] stored transposed; likewise B; C[m * ldc + n]).
# A wrong ld, flag, pointer, kernel name or shared-memory size shows as a wrong result or a
# failed check, with no GPU. Every matrix the emulation touches must lie inside a buffer the test
# made (no read or write outside an operand).

import ctypes  # noqa: E402


class _Host:
    """Host buffers standing in for device memory, and the emulated launches."""

    def __init__(self):
        self.buffers = []
        self.launches = []

    def array(self, h: np.ndarray) -> np.ndarray:
        """A copy of ``h`` starting on a 256-byte boundary, as a device allocation does."""
        raw = np.zeros(h.nbytes + 256, np.uint8)
        off = -raw.ctypes.data % 256
        a = raw[off:off + h.nbytes].view(h.dtype).reshape(h.shape)
        a[...] = h
        self.buffers.append(a)
        return a

    def mat(self, ptr, rows, cols, ld, dtype):
        """rows x cols, row-major with pitch ld, at ptr: a numpy view of the host buffer there."""
        dtype = np.dtype(dtype)
        it = dtype.itemsize
        nbytes = ((rows - 1) * ld + cols) * it
        inside = [b for b in self.buffers if b.ctypes.data <= ptr and ptr + nbytes <= b.ctypes.data + b.nbytes]
        assert inside, f"a {rows}x{cols} (ld {ld}) access at {ptr:#x} lies outside every operand"
        assert ptr % it == 0
        raw = np.frombuffer((ctypes.c_char * nbytes).from_address(ptr), np.uint8)
        return np.lib.stride_tricks.as_strided(raw.view(dtype) if nbytes % it == 0 else raw[: nbytes - nbytes % it].view(dtype),
                                               (rows, cols), (ld * it, it))

    def bias(self, ptr, M, N, sm, sn, dtype):
        """The bias of kernels/epilogue.cuh broadcast to M x N (element strides sm, sn, either may
        be 0 or negative) as a float64 array, checked to lie inside a buffer."""
        dtype = np.dtype(dtype)
        it = dtype.itemsize
        offs = [i * sm + j * sn for i in (0, M - 1) for j in (0, N - 1)]
        lo, hi = ptr + min(offs) * it, ptr + (max(offs) + 1) * it
        inside = [b for b in self.buffers if b.ctypes.data <= lo and hi <= b.ctypes.data + b.nbytes]
        assert inside, f"the bias at {ptr:#x} (strides {sm}, {sn}) lies outside every operand"
        raw = np.frombuffer((ctypes.c_char * (hi - lo)).from_address(lo), dtype)
        return np.lib.stride_tricks.as_strided(raw[(ptr - lo) // it:], (M, N), (sm * it, sn * it)).astype(np.float64)

    def epilogue(self, v, M, N, dtype, epi):
        """act(v + bias) in float64 for the kernels' last four arguments (kernels/epilogue.cuh)."""
        bias, sm, sn, act = epi
        assert [type(x) for x in epi[1:]] in ([int, int, int], [np.int64, np.int64, np.int32]), epi
        bptr = bias.ptr if isinstance(bias, Array) else int(bias)
        if bptr:
            v = v + self.bias(bptr, M, N, int(sm), int(sn), dtype)
        if int(act) == 1:
            v = np.where(v < 0, 0.0, v)
        elif int(act) == 2:
            v = 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3)))
        else:
            assert int(act) == 0, act
        return v

    def gemm(self, dtype, M, N, K, alpha, pa, lda, ta, pb, ldb, tb, beta, pc, ldc, epi=(0, 0, 0, 0)):
        a = self.mat(pa, K if ta else M, M if ta else K, lda, dtype)
        b = self.mat(pb, N if tb else K, K if tb else N, ldb, dtype)
        c = self.mat(pc, M, N, ldc, dtype)
        opa, opb = (a.T if ta else a).astype(np.float64), (b.T if tb else b).astype(np.float64)
        res = float(alpha) * (opa @ opb) + (float(beta) * c.astype(np.float64) if beta else 0.0)
        c[...] = self.epilogue(res, M, N, dtype, epi).astype(dtype)


class _FakeKernel:
    def __init__(self, name):
        self.name = name

    def ensure_dynamic_shared(self, dev, nbytes):
        assert nbytes <= geo.SM90.smem_optin

    def max_threads_per_block(self, dev):
        return 1024

    @property
    def param_sizes(self):
        """The parameter sizes of kernels/gemm.cu and gemm_sm90.cu's signatures, by kernel name."""
        n = self.name
        epi = (8, 8, 8, 4)  # every gemm kernel's last four: const T* bias, long long bias_sm, bias_sn, int act
        if n.startswith("gemm_sm90_"):  # (CUtensorMap tmA, tmB, int M, N, K, float alpha, beta, T* C, int ldc)
            return (128, 128, 4, 4, 4, 4, 4, 8, 4) + epi
        if n in ("transpose_f32", "repitch_b16", "repitch_b32"):  # (in, rows, cols, ldi, out, ldo)
            return (8, 4, 4, 4, 8, 4)
        if n.startswith("epilogue_"):  # (int M, N, T* C, int ldc)
            return (4, 4, 8, 4) + epi
        if "_cp_" in n:  # (M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
            return (4, 4, 4, 4, 8, 4, 8, 4, 4, 8, 4) + epi
        if "simt" in n:  # ... C, ldc, vec_ok
            return (4, 4, 4, 4, 8, 4, 8, 4, 4, 8, 4, 4) + epi
        return (4, 4, 4, 4, 8, 4, 4, 8, 4, 4, 4, 8, 4) + epi  # (M, N, K, alpha, A, lda, ta, B, ldb, tb, beta, C, ldc)


def _dim3(v) -> tuple:
    return (int(v), 1, 1) if isinstance(v, (int, np.integer)) else tuple(int(x) for x in v) + (1,) * (3 - len(v))


def _emulated(monkeypatch):
    """Patch the launch points to emulate on host memory: the public ``launch`` of ops.gemm and
    ops._gemm_sm90 (their checked launches) and the launch core's ``config`` / ``do_launch``
    (every LaunchPlan: the sm90 launches, the cached plans). The launch core's geometry checks
    run for real, against the fake device's limits."""
    from cudart_kit import _launch
    from cudart_kit.ops import _gemm_sm90 as g9
    from cudart_kit.ops import gemm

    host = _Host()

    def layout_of_name(name):
        m = re.search(r"_(nn|nt|tn|tt)(?:_f32)?$", name)
        return geo.layout_flags(m.group(1)) if m else (False, False)

    def ptr(x):
        return x.ptr if isinstance(x, Array) else int(x)

    def run_kernel(name, grid, block, smem, args, via):
        host.launches.append((name, grid, block, smem, via))
        if name.startswith("gemm_sm90_") and not name.endswith("_epi"):
            # a plain Hopper twin never reads its last four arguments: matmul passes "no epilogue" to it
            assert int(args[-1]) == 0 and not (args[-4].ptr if isinstance(args[-4], Array) else int(args[-4])), name
        name = name[:-4] if name.endswith("_epi") else name
        grid, block = _dim3(grid), _dim3(block)
        if name in ("repitch_b16", "repitch_b32", "transpose_f32"):
            src, rows, cols, ld, out, ldo = args
            rows, cols, ld, ldo = int(rows), int(cols), int(ld), int(ldo)
            dt = {"repitch_b16": np.uint16, "repitch_b32": np.uint32, "transpose_f32": np.float32}[name]
            s_ = host.mat(ptr(src), rows, cols, ld, dt)
            if name == "transpose_f32":
                assert grid == _dim3(geo.TRANSPOSE.grid(rows, cols)) and block == _dim3(geo.TRANSPOSE.block)
                host.mat(ptr(out), cols, rows, ldo, dt)[...] = s_.T
            else:
                assert block == _dim3(geo.REPITCH.threads) and grid == _dim3(geo.REPITCH.blocks(rows * cols, 132))
                host.mat(ptr(out), rows, cols, ldo, dt)[...] = s_
            return
        if name.startswith("epilogue_"):
            M, N, C, ldc, *epi = args
            M, N = int(M), int(N)
            assert block == _dim3(geo.EPILOGUE.threads) and grid == _dim3(geo.EPILOGUE.blocks(M * N, 132))
            dt = {"epilogue_f32": np.float32, "epilogue_fp16": np.float16}[name]
            c = host.mat(ptr(C), M, N, int(ldc), dt)
            c[...] = host.epilogue(c.astype(np.float64), M, N, dt, epi).astype(dt)
            return
        if name.startswith("gemm_sm90_"):
            tma, tmb, M, N, K, alpha, beta, o_ptr, ldc, *epi = args
            assert [type(x) for x in args] == [tuple, tuple] + [np.int32] * 3 + [np.float32] * 2 + [int, np.int32] + [
                int, np.int64, np.int64, np.int32]
            ta, tb = layout_of_name(name)
            kind = tma[1]
            dt = {"tf32": np.float32, "f16": np.float16, "bf16": None}[kind]
            bn = int(name.split("_")[3])
            assert (grid, block, smem) == ((geo.SM90.tiles(M, N, bn), 1, 1), (geo.SM90.threads, 1, 1),
                                           geo.SM90.smem_bytes(bn))
            assert tma[3] == ((K, M) if ta else (M, K)) and tmb[3] == ((N, K) if tb else (K, N))
            bk = geo.SM90.bk(4 if kind == "tf32" else 2)
            assert tma[5] == ((bk, geo.SM90.mn_box) if ta else (geo.SM90.bm, bk))
            assert tmb[5] == ((bn, bk) if tb else (bk, geo.SM90.mn_box))
            host.gemm(dt, int(M), int(N), int(K), alpha, tma[2], tma[4], ta, tmb[2], tmb[4], tb, beta, o_ptr, int(ldc),
                      epi)
            return
        args, epi = args[:-4], args[-4:]
        M, N, K, alpha = int(args[0]), int(args[1]), int(args[2]), args[3]
        if len(args) == 13:
            A, lda, ta, B, ldb, tb, beta, C, ldc = args[4:]
        else:
            A, lda, B, ldb, beta, C, ldc = args[4:11]
            ta, tb = layout_of_name(name)
        lay = geo.layout_name(ta, tb)
        want = {"gemm_naive_f32": (geo.NAIVE.grid(M, N), geo.NAIVE.block, 0),
                "gemm_tiled_f32": (geo.TILED.grid(M, N), geo.TILED.block, 0),
                "gemm_simt128_f32": (geo.SIMT128.grid(M, N), geo.SIMT128.threads, 0)}.get(name)
        if name.startswith("gemm_simt256_"):
            want = (geo.SIMT256.grid(M, N), geo.SIMT256.threads, geo.SIMT256.smem_bytes(lay))
        elif "_cp_" in name:
            w = geo.WMMA_TF32 if name.startswith("gemm_tf32") else geo.WMMA_B16
            want = (w.grid(M, N), w.threads, w.cp_smem_bytes(lay))
        elif name in ("gemm_tf32", "gemm_bf16", "gemm_fp16"):
            want = (geo.WMMA_B16.grid(M, N), geo.WMMA_B16.threads, 0)
        assert (grid, block, smem) == (_dim3(want[0]), _dim3(want[1]), want[2]), name
        dt = np.float16 if "fp16" in name else np.float32
        host.gemm(dt, M, N, K, alpha, ptr(A), int(lda), int(ta), ptr(B), int(ldb), int(tb), beta, ptr(C), int(ldc),
                  epi)

    def launch(kernel, grid, block, *args, stream, timed=False, shared_mem_bytes=0):
        run_kernel(kernel.name, grid, block, shared_mem_bytes, args, "launch")

    def do_launch(s, cfg, kern, args):
        grid, block, smem = cfg
        run_kernel(kern.name, grid, block, smem, args, "plan")

    def tensor_map(dev, kind, ptr, shape, ld, box):
        it = 4 if kind == "tf32" else 2
        assert ptr % 16 == 0 and (shape[0] == 1 or ld * it % 16 == 0), "TMA needs 16-byte starts and pitches"
        return ("tmap", kind, ptr, shape, ld, box)

    def workspace(n, dtype, s):
        h = host.array(np.zeros(n, dtype))
        return Array._make(h.ctypes.data, (n,), np.dtype(dtype), (h.itemsize,), "foreign", s.device, None, owner=h)

    monkeypatch.setattr(gemm, "launch", launch)
    monkeypatch.setattr(gemm, "_kernel", _FakeKernel)
    monkeypatch.setattr(g9, "launch", launch)
    monkeypatch.setattr(g9, "kit_kernel", lambda mod, name: _FakeKernel(name))
    monkeypatch.setattr(_launch, "config", lambda grid, block, smem: (tuple(grid), tuple(block), smem))
    monkeypatch.setattr(_launch, "do_launch", do_launch)
    monkeypatch.setattr(_launch, "_limits_cache", {})  # the fake device's limits, forgotten afterwards
    monkeypatch.setattr(g9, "tensor_map", tensor_map)
    monkeypatch.setattr(g9, "_pointer_of", lambda arr, s, what: arr.ptr)
    monkeypatch.setattr(g9, "workspace", workspace)
    monkeypatch.setattr(g9, "release", lambda w, s: None)
    monkeypatch.setattr(g9, "_tmaps", {})
    monkeypatch.setattr(gemm, "_fast", {})  # plans made here never outlive the test
    return host


def _wrap(v: np.ndarray, dev) -> Array:
    """A kit Array over a host numpy view (its address, shape and strides): what a device view
    of the same geometry looks like to matmul."""
    return Array._make(v.ctypes.data if v.size else 0x1000, v.shape, v.dtype, v.strides, "foreign", dev, None, owner=v)


_EMU_ALGOS = ["naive", "tiled", "simt", "simt128", "simt256", "tf32", "fp16", "tf32_sm90", "fp16_sm90"]
_EMU_CASES = {  # a view and b view of host bases, transpose flags
    "nn": (lambda x: x[3:3 + 67], (74, 37), lambda x: x, (37, 45), False, False),
    "a_block": (lambda x: x[3:70, 5:42], (74, 46), lambda x: x, (37, 45), False, False),
    "b_col_block": (lambda x: x, (67, 37), lambda x: x[:, 2:47], (37, 50), False, False),
    "a_T": (lambda x: x.T, (37, 67), lambda x: x, (37, 45), False, False),
    "b_T": (lambda x: x, (67, 37), lambda x: x.T, (45, 37), False, False),
    "T_of_blocks": (lambda x: x[1:38, 3:70].T, (40, 71), lambda x: x[2:47, 1:38].T, (47, 42), False, False),
    "T_and_flags": (lambda x: x.T, (67, 37), lambda x: x.T, (37, 45), True, True),
    "flags_only": (lambda x: x, (37, 67), lambda x: x, (45, 37), True, True),
    "odd_offsets": (lambda x: x[1:68, 1:38], (69, 39), lambda x: x[1:38, 3:48], (39, 49), False, False),
    # pitches 16-byte aligned, starts not (the sm90 path re-pitches them)
    "offset_start": (lambda x: x[1:68, 2:39], (69, 40), lambda x: x[1:38, 2:47], (39, 48), False, False),
    # starts and pitches 16-byte aligned: the cp.async WMMA twins and TMA read them in place
    "aligned_blocks": (lambda x: x[4:71, 8:45], (75, 48), lambda x: x[:, 8:53], (37, 64), False, False),
}


@pytest.mark.parametrize("algo", _EMU_ALGOS)
@pytest.mark.parametrize("case", list(_EMU_CASES))
@pytest.mark.parametrize("out_kind", ["row_block", "block_beta"])
def test_matmul_host_path_on_views_emulated(algo, case, out_kind, monkeypatch):
    """Views as a and b (row / column blocks, transposes, odd starts) and out a row block (beta 0)
    or a block (beta != 0) of a larger NaN-poisoned array: the result matches numpy, nothing
    outside the out block is written, the sm90 path re-pitches or transposes exactly where TMA /
    wgmma need it."""
    from cudart_kit.ops import gemm

    host = _emulated(monkeypatch)
    s = _fake_stream(closed=False)
    fa, a_shape, fb, b_shape, ta, tb = _EMU_CASES[case]
    dt = np.float16 if "fp16" in algo else np.float32
    rng = np.random.default_rng(abs(hash((algo, case, out_kind))) % 2**32)
    ah = host.array(rng.uniform(-1, 1, a_shape).astype(dt))
    bh = host.array(rng.uniform(-1, 1, b_shape).astype(dt))
    av, bv = fa(ah), fb(bh)
    opa, opb = (av.T if ta else av), (bv.T if tb else bv)
    M, N = opa.shape[0], opb.shape[1]
    if out_kind == "row_block":
        r0, c0, big = 2, 0, host.array(np.full((M + 5, N), np.nan, dt))
    else:
        r0, c0, big = 3, 4, host.array(np.full((M + 5, N + 7), np.nan, dt))
    ch = rng.uniform(-1, 1, (M, N)).astype(dt)
    beta = -1.25 if out_kind == "block_beta" else 0.0
    if beta:
        big[r0:r0 + M, c0:c0 + N] = ch
    before = big.copy()
    a, b, out = _wrap(av, s.device), _wrap(bv, s.device), _wrap(big[r0:r0 + M, c0:c0 + N], s.device)
    stored_ta = geo.classify(av.shape, av.strides, av.itemsize).transposed ^ ta
    stored_tb = geo.classify(bv.shape, bv.strides, bv.itemsize).transposed ^ tb
    if algo == "simt128" and (stored_ta or stored_tb):
        with pytest.raises(ShapeError, match="layout nn only"):
            gemm.matmul(a, b, out, algo=algo, transpose_a=ta, transpose_b=tb, stream=s)
        assert not host.launches
        return
    assert gemm.matmul(a, b, out, alpha=0.5, beta=beta, algo=algo, transpose_a=ta, transpose_b=tb, stream=s) is out
    ref = 0.5 * (opa.astype(np.float64) @ opb.astype(np.float64)) + (beta * ch.astype(np.float64) if beta else 0.0)
    got = big[r0:r0 + M, c0:c0 + N].astype(np.float64)
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < (1e-5 if dt == np.float32 else 2e-2)
    rest = np.ones(big.shape, bool)
    rest[r0:r0 + M, c0:c0 + N] = False
    bits = np.uint16 if dt == np.float16 else np.uint32
    assert np.array_equal(big.view(bits)[rest], before.view(bits)[rest]), "wrote outside the out block"
    names = [n for n, *_ in host.launches]
    if algo.endswith("_sm90") and case in ("odd_offsets", "offset_start"):
        assert f"repitch_b{8 * np.dtype(dt).itemsize}" in names, names  # TMA cannot read these starts
    if algo.endswith("_sm90") and case == "aligned_blocks":
        assert not [n for n in names if n.startswith("repitch")], names  # read in place
    if algo == "tf32_sm90" and not stored_tb:
        assert "transpose_f32" in names, names  # B stored K x N: TF32 wgmma reads K-major only
    layout = geo.layout_name(stored_ta, stored_tb)
    if algo == "simt256" or (algo == "simt" and layout != "nn"):
        assert names == [geo.SIMT256.kernel(layout)], names
    if algo in ("tf32", "fp16"):  # the cp.async twin needs 16-byte starts and pitches
        def aligned(v):
            st = geo.classify(v.shape, v.strides, v.itemsize)
            rows = v.shape[1] if st.transposed else v.shape[0]
            return v.ctypes.data % 16 == 0 and (rows == 1 or st.ld * v.itemsize % 16 == 0)
        cp = aligned(av) and aligned(bv)
        assert names == [geo.Wmma.cp_kernel(algo, layout) if cp else f"gemm_{algo}"], names
        assert cp or case != "aligned_blocks"  # both kinds of kernel are reached


# --- the cached plans (LaunchPlans of the launch core), emulated -----------------------------

def _kit_owned(host: _Host, h: np.ndarray, s) -> Array:
    """A kit-owned contiguous Array (what ``empty`` returns) over a 256-byte-aligned host copy
    of ``h``: the operands matmul keeps plans for."""
    v = host.array(h)
    return Array._make(v.ctypes.data, v.shape, v.dtype, v.strides, "device", s.device, s, owner=v)


@pytest.mark.parametrize("algo,flags", [(algo, flags) for algo in _EMU_ALGOS
                                         for flags in ((False, False), (True, False), (False, True), (True, True))
                                         if algo != "simt128" or flags == (False, False)])  # simt128: nn only
@pytest.mark.parametrize("mnk", [(72, 48, 40), (67, 45, 37)])
def test_cached_plans_rebind_pointers_alpha_and_beta_emulated(algo, flags, mnk, monkeypatch):
    """Kit-owned contiguous operands: the first call takes the checked path and leaves a plan
    (a launch-core LaunchPlan, packed once); later calls with other arrays of the same
    signatures and other alpha / beta launch through the plan alone (nothing but the core's
    do_launch), with the pointers, alpha and beta bound in the plan's slots and, for the sm90
    kernels, the tensor maps of the new pointers (tf32_sm90 with B stored K x N: the plan's own
    transpose into a workspace first). Each result matches numpy. Where no plan can be made (an
    sm90 operand whose rows TMA cannot read in place, a TF32 A stored K x M) every call takes
    the checked path."""
    from cudart_kit.ops import gemm

    host = _emulated(monkeypatch)
    s = _fake_stream(closed=False)
    ta, tb = flags
    M, N, K = mnk
    dt = np.float16 if "fp16" in algo else np.float32
    rng = np.random.default_rng(abs(hash((algo, flags, mnk))) % 2**32)
    it = np.dtype(dt).itemsize
    a_stored, b_stored = ((K, M) if ta else (M, K)), ((N, K) if tb else (K, N))
    planned = not (algo.endswith("_sm90") and (
        (algo == "tf32_sm90" and ta) or (a_stored[1] * it) % 16 or (b_stored[1] * it % 16 and not (
            algo == "tf32_sm90" and not tb))))
    for call, (alpha, beta) in enumerate([(0.5, 0.0), (-1.5, 0.75), (2.0, -1.0)]):
        ah = rng.uniform(-1, 1, a_stored).astype(dt)
        bh = rng.uniform(-1, 1, b_stored).astype(dt)
        ch = rng.uniform(-1, 1, (M, N)).astype(dt)
        a, b, out = _kit_owned(host, ah, s), _kit_owned(host, bh, s), _kit_owned(host, ch, s)
        oh = host.buffers[-1]  # out's host memory
        del host.launches[:]
        assert gemm.matmul(a, b, out, alpha=alpha, beta=beta, algo=algo, transpose_a=ta, transpose_b=tb,
                           stream=s) is out
        opa, opb = (ah.T if ta else ah).astype(np.float64), (bh.T if tb else bh).astype(np.float64)
        ref = alpha * (opa @ opb) + beta * ch.astype(np.float64)
        got = oh.astype(np.float64)
        assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < (1e-5 if dt == np.float32 else 2e-2), call
        vias = {via for *_, via in host.launches}
        if call == 0 or not planned:
            assert "launch" in vias or algo.endswith("_sm90"), host.launches  # the checked path
        else:
            assert vias == {"plan"}, host.launches  # the cached plan alone
            names = [n for n, *_ in host.launches]
            assert names.count("transpose_f32") == (algo == "tf32_sm90" and not tb), names
    key = (a.sig, b.sig, out.sig, algo, False, ta, tb)
    assert (key in gemm._fast) == planned


# --- fused epilogues: bias broadcast over out, relu / gelu (kernels/epilogue.cuh), emulated ----

def _gelu_tanh(v):
    return 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3)))


_BIAS_KINDS = {  # name -> (host base shape from M, N; the view matmul gets; its M x N broadcast)
    "col": (lambda M, N: (N,), lambda x: x, lambda x, M, N: np.broadcast_to(x, (M, N))),
    "col_2d": (lambda M, N: (1, N), lambda x: x, lambda x, M, N: np.broadcast_to(x, (M, N))),
    "row": (lambda M, N: (M, 1), lambda x: x, lambda x, M, N: np.broadcast_to(x, (M, N))),
    "full": (lambda M, N: (M, N), lambda x: x, lambda x, M, N: x),
    "col_stepped": (lambda M, N: (2 * N + 3,), lambda x: x[3::2], lambda x, M, N: np.broadcast_to(x, (M, N))),
    "row_reversed": (lambda M, N: (M + 2, 3), lambda x: x[-2:0:-1, 1:2],
                     lambda x, M, N: np.broadcast_to(x, (M, N))),
    "full_T": (lambda M, N: (N, M), lambda x: x.T, lambda x, M, N: x),
    "none": (None, None, None),
}


@pytest.mark.parametrize("algo", _EMU_ALGOS)
@pytest.mark.parametrize("bias_kind,activation", [(k, act) for k in _BIAS_KINDS for act in (None, "relu", "gelu")
                                                  if (k, act) != ("none", None)])  # that is the plain path
def test_matmul_epilogue_emulated(algo, bias_kind, activation, monkeypatch):
    """bias= (a column, row or full bias, views with steps, reversed, transposed) and
    activation= reach every kit kernel's last four arguments so that out = act(alpha op(a) op(b)
    + beta out + bias) matches float64 numpy at an odd shape with transposed a, out a block of a
    NaN-poisoned array; the inputs are untouched and nothing outside the out block is written.
    Views leave no cached plan."""
    from cudart_kit.ops import gemm

    host = _emulated(monkeypatch)
    s = _fake_stream(closed=False)
    dt = np.float16 if "fp16" in algo else np.float32
    rng = np.random.default_rng(abs(hash((algo, bias_kind, activation))) % 2**32)
    M, N, K = 67, 45, 37
    ah = host.array(rng.uniform(-1, 1, (K, M)).astype(dt))  # a = ah.T: stored transposed
    bh = host.array(rng.uniform(-1, 1, (K, N)).astype(dt))
    big = host.array(np.full((M + 4, N + 6), np.nan, dt))
    ch = rng.uniform(-1, 1, (M, N)).astype(dt)
    big[2:2 + M, 3:3 + N] = ch
    before = big.copy()
    out = _wrap(big[2:2 + M, 3:3 + N], s.device)
    a, b = _wrap(ah.T, s.device), _wrap(bh, s.device)
    base_shape, view, bcast = _BIAS_KINDS[bias_kind]
    bias, ref_bias = None, 0.0
    if base_shape is not None:
        bb = host.array(rng.uniform(-2, 2, base_shape(M, N)).astype(dt))
        bv = view(bb)
        bias, ref_bias = _wrap(bv, s.device), bcast(bv, M, N).astype(np.float64)
    if algo == "simt128":  # a is transposed: simt128 reads layout nn only
        with pytest.raises(ShapeError, match="layout nn only"):
            gemm.matmul(a, b, out, bias=bias, activation=activation, algo=algo, stream=s)
        return
    res = gemm.matmul(a, b, out, alpha=0.75, beta=-0.5, bias=bias, activation=activation, algo=algo, stream=s)
    assert res is out
    ref = 0.75 * (ah.T.astype(np.float64) @ bh.astype(np.float64)) - 0.5 * ch.astype(np.float64) + ref_bias
    ref = {None: ref, "relu": np.maximum(ref, 0.0), "gelu": _gelu_tanh(ref)}[activation]
    got = big[2:2 + M, 3:3 + N].astype(np.float64)
    assert np.allclose(got, ref, rtol=1e-5 if dt == np.float32 else 2e-3, atol=1e-5 if dt == np.float32 else 2e-3)
    rest = np.ones(big.shape, bool)
    rest[2:2 + M, 3:3 + N] = False
    bits = np.uint16 if dt == np.float16 else np.uint32
    assert np.array_equal(big.view(bits)[rest], before.view(bits)[rest]), "wrote outside the out block"
    assert not gemm._fast, "views and foreign arrays never leave a cached plan"
    gemms = [n for n, *_ in host.launches if n.startswith("gemm_")]
    assert len(gemms) == 1 and gemms[0].endswith("_epi") == algo.endswith("_sm90"), gemms  # Hopper: the twin
    assert not [n for n, *_ in host.launches if n.startswith("epilogue_")], "a kit kernel fuses its epilogue"


def _epi_operands(monkeypatch, M=5, N=7, K=3, dt=np.float32):
    host = _emulated(monkeypatch)
    s = _fake_stream(closed=False)
    a = _wrap(host.array(np.ones((M, K), dt)), s.device)
    b = _wrap(host.array(np.ones((K, N), dt)), s.device)
    big = host.array(np.zeros((M + 1, N), dt))
    return host, s, a, b, big


@pytest.mark.parametrize("shape", [(6,), (5, 7, 1), (2, 7), (5, 2), (7, 1), (1, 5)])
def test_matmul_bias_that_does_not_broadcast_is_a_shape_error(shape, monkeypatch):
    from cudart_kit.ops import gemm

    host, s, a, b, big = _epi_operands(monkeypatch)
    bias = _wrap(host.array(np.ones(shape, np.float32)), s.device)
    out = _wrap(big[:5], s.device)
    with pytest.raises(ShapeError, match=r"bias of shape .* does not broadcast to out's 5x7"):
        gemm.matmul(a, b, out, bias=bias, algo="simt", stream=s)
    assert not host.launches


def test_matmul_bias_dtype_activation_and_overlap_errors(monkeypatch):
    from cudart_kit.errors import ClosedError, DeviceMismatchError
    from cudart_kit.ops import gemm

    host, s, a, b, big = _epi_operands(monkeypatch)
    out = _wrap(big[:5], s.device)
    with pytest.raises(DTypeError, match=r"bias must be float32 \(out's dtype\), got float64"):
        gemm.matmul(a, b, out, bias=_wrap(host.array(np.ones(7)), s.device), stream=s)
    with pytest.raises(DTypeError, match=r"^matmul: out is float64 but a and b are float32; out must be 5x7 float32"):
        gemm.matmul(a, b, _wrap(host.array(np.ones((5, 7))), s.device), stream=s)
    with pytest.raises(ShapeError, match=r"^matmul: out must be 5x7 float32, got \(5, 6\)"):
        gemm.matmul(a, b, _wrap(host.array(np.ones((5, 6), np.float32)), s.device), stream=s)
    with pytest.raises(ValueError, match=r"activation must be one of \(None, 'relu', 'gelu'\), got 'tanh'"):
        gemm.matmul(a, b, out, activation="tanh", stream=s)
    with pytest.raises(ShapeError, match="bias overlaps out"):  # a row of out itself
        gemm.matmul(a, b, out, bias=_wrap(big[2], s.device), stream=s)
    with pytest.raises(DeviceMismatchError, match="matmul: bias.*numpy"):
        gemm.matmul(a, b, out, bias=np.ones(7, np.float32), stream=s)
    closed = _wrap(host.array(np.ones(7, np.float32)), s.device)
    closed.close()
    with pytest.raises(ClosedError, match="matmul: bias"):
        gemm.matmul(a, b, out, bias=closed, stream=s)
    assert not host.launches
    # the row just below out does not overlap it: accepted, and used
    gemm.matmul(a, b, out, bias=_wrap(big[5], s.device), activation="relu", algo="simt", stream=s)
    assert [n for n, *_ in host.launches] == ["gemm_simt128_f32"]


@pytest.mark.parametrize("algo", ["simt", "simt256", "naive", "tf32", "tf32_sm90", "fp16_sm90"])
@pytest.mark.parametrize("bias_shape,activation", [((45,), "gelu"), ((67, 1), "relu"), (None, "relu")])
def test_epilogue_plans_rebind_the_bias_emulated(algo, bias_shape, activation, monkeypatch):
    """Kit-owned contiguous operands and bias: the first epilogue call takes the checked path and
    leaves a plan keyed by the bias's signature and the activation; later calls with new arrays
    (a new bias too) go through the plan alone, the bias pointer rebound, the Hopper plan running
    the _epi twin; a plain call of the same shapes afterwards takes the plain plan, not this one."""
    from cudart_kit.ops import gemm

    host = _emulated(monkeypatch)
    s = _fake_stream(closed=False)
    M, N, K = 67, 48 if algo.endswith("_sm90") else 45, 40
    bias_shape = (N,) if bias_shape == (45,) else bias_shape
    dt = np.float16 if "fp16" in algo else np.float32
    rng = np.random.default_rng(abs(hash((algo, bias_shape, activation))) % 2**32)
    for call in range(3):
        ah, bh = rng.uniform(-1, 1, (M, K)).astype(dt), rng.uniform(-1, 1, (K, N)).astype(dt)
        a, b = _kit_owned(host, ah, s), _kit_owned(host, bh, s)
        out = _kit_owned(host, np.full((M, N), np.nan, dt), s)
        oh = host.buffers[-1]
        bias, ref_bias = None, 0.0
        if bias_shape is not None:
            bb = rng.uniform(-1, 1, bias_shape).astype(dt)
            bias, ref_bias = _kit_owned(host, bb, s), np.broadcast_to(bb.astype(np.float64), (M, N))
        del host.launches[:]
        assert gemm.matmul(a, b, out, bias=bias, activation=activation, algo=algo, stream=s) is out
        ref = ah.astype(np.float64) @ bh.astype(np.float64) + ref_bias
        ref = np.maximum(ref, 0) if activation == "relu" else _gelu_tanh(ref)
        assert np.allclose(oh.astype(np.float64), ref, rtol=1e-5 if dt == np.float32 else 2e-3,
                           atol=1e-5 if dt == np.float32 else 2e-3), call
        vias = {via for *_, via in host.launches}
        names = [n for n, *_ in host.launches if n.startswith("gemm_")]
        assert names and names[0].endswith("_epi") == algo.endswith("_sm90"), names
        if call:
            assert vias == {"plan"}, host.launches  # the cached plan alone
    key = (a.sig, b.sig, out.sig, algo, False, False, False, None if bias is None else bias.sig, activation)
    assert key in gemm._fast
    del host.launches[:]
    gemm.matmul(a, b, out, algo=algo, stream=s)  # plain: its own plan (the first plain call: checked)
    assert not [n for n, *_ in host.launches if n.endswith("_epi")]
    assert np.allclose(oh.astype(np.float64), ah.astype(np.float64) @ bh.astype(np.float64),
                       rtol=1e-5 if dt == np.float32 else 2e-3, atol=1e-5 if dt == np.float32 else 2e-3)


def _macro_params(macro: str) -> list[str]:
    """Parameter names of the first entry point a kernels/gemm_sm90.cu macro defines, with
    KIT_EPI_PARAMS expanded (kernels/epilogue.cuh)."""
    text = (KERNELS / "gemm_sm90.cu").read_text()
    body = re.search(r"#define " + macro + r"\(.*?\n(.*?)\{", text, re.S).group(1)
    params = re.search(r"NAME\((.*?)\)\s*$", body.replace("\\\n", " "), re.S).group(1)
    names = []
    for p in params.split(","):
        p = p.strip()
        if p.startswith("KIT_EPI_PARAMS"):
            names += ["bias", "bias_sm", "bias_sn", "act"]
        else:
            names.append(re.findall(r"\w+", p)[-1])
    return names


def test_sm90_plan_slots_match_the_kernel_signatures():
    """The plans' slot indices (what is bound per launch) name exactly the parameters the kernels
    declare: tensor maps, alpha, beta, C and the epilogue — plus out's map and tma_store for the
    persistent twins — and _bind's values line up with them."""
    from cudart_kit.ops import _gemm_sm90 as sm

    plain, persistent = _macro_params("KIT_SM90_KERNEL"), _macro_params("KIT_SM90_PERSISTENT")
    assert [plain[i] for i in sm._SLOTS] == ["tmA", "tmB", "alpha", "beta", "C", "bias", "bias_sm", "bias_sn", "act"]
    assert [persistent[i] for i in sm._SLOTS_P] == ["tmA", "tmB", "tmC", "alpha", "beta", "C", "tma_store", "bias",
                                                    "bias_sm", "bias_sn", "act"]
    tail = ("sm", "sn", "act")
    assert sm._bind(None, "bf16", None, "A", "B", 4096, "al", "be", "bias", tail) == \
        ("A", "B", "al", "be", 4096, "bias", *tail)
    # out misaligned (start or pitch): the threads store; A's map fills tmC's slot
    geo = ((300, 777), 777, (128, 64))
    v = sm._bind(None, "bf16", geo, "A", "B", 4096, "al", "be", "bias", tail)
    assert v == ("A", "B", "A", "al", "be", 4096, sm._THREAD_STORE, "bias", *tail)
    assert sm._bind(None, "bf16", ((300, 520), 520, (128, 64)), "A", "B", 4098, "al", "be", 0, tail)[6] == 0
    assert len(v) == len(sm._SLOTS_P)


def test_sm90_bind_uses_tma_stores_for_aligned_out(monkeypatch):
    """A 16-byte-aligned out with 16-byte row pitches (or a single row) gets out's own tensor map
    (shape, pitch and the 128-row x 128-byte box of the staging buffer) and tma_store = 1."""
    from cudart_kit.ops import _gemm_sm90 as sm

    made = []
    monkeypatch.setattr(sm, "tensor_map", lambda dev, kind, ptr, *geo: made.append((kind, ptr, *geo)) or "C-map")
    monkeypatch.setattr(sm, "_tmaps", {})

    class Dev:
        ordinal = 0

    for kind, geo_c in (("bf16", ((300, 520), 520, (128, 64))), ("tf32", ((1, 77), 80, (128, 32)))):
        v = sm._bind(Dev(), kind, geo_c, "A", "B", 8192, "al", "be", 0, ("sm", "sn", "act"))
        assert v[2] == "C-map" and v[6] == sm._TMA_STORE and v[5] == 8192
        assert made[-1] == (kind, 8192, *geo_c)
    monkeypatch.setattr(sm, "FORCE_THREAD_STORE", True)  # the benchmarks' switch: threads store anyway
    assert sm._bind(Dev(), "bf16", ((300, 520), 520, (128, 64)), "A", "B", 8192, 1, 0, 0, ())[6] == sm._THREAD_STORE
