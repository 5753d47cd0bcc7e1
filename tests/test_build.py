"""The kernel pipeline with the real nvcc: manifest, freshness, refusal without nvcc, wheels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cudart_kit import build
from cudart_kit.errors import BuildError, MissingArtifactError, StaleArtifactError

NVCC = build.find_nvcc()
pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc not installed")
REPO = Path(__file__).resolve().parent.parent

TINY = r"""
#include "tiny.cuh"
extern "C" __global__ void twice(float* x, int n) { int i = threadIdx.x; if (i < n) x[i] = TWICE(x[i]); }
"""
HEADER = "#define TWICE(v) (2.0f * (v))\n"


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    (src / "tiny.cu").write_text(TINY)
    (src / "tiny.cuh").write_text(HEADER)
    # one cubin + one PTX keeps these tests quick
    monkeypatch.setitem(build.SPEC_OVERRIDES, "tiny", build.KernelSpec("tiny", "tiny.cu", archs=("90",), ptx_archs=("90",)))
    return src, out


def test_build_writes_artifact_and_manifest(tiny):
    src, out = tiny
    built = build.build(src_dir=src, out_dir=out)
    assert set(built) == {"tiny"}
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["artifacts"]["tiny"]
    assert manifest["format"] == 1
    for key in ("file", "source", "source_sha256", "nvcc_version", "flags", "archs", "ptx_archs",
                "arch_specific", "artifact_sha256", "built_at"):
        assert key in entry, key
    assert entry["nvcc_version"] == build.nvcc_version(NVCC)
    assert "-gencode=arch=compute_90,code=sm_90" in entry["flags"]
    assert "-gencode=arch=compute_90,code=compute_90" in entry["flags"]
    data = (out / "tiny.fatbin").read_bytes()
    assert data[:4] == (0xBA55ED50).to_bytes(4, "little")  # a fatbin
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert build.status("tiny", src_dir=src, out_dir=out).state == "fresh"
    assert build.build(src_dir=src, out_dir=out) == {}  # fresh: nothing rebuilt


@pytest.mark.parametrize("change, reason", [
    ("source", "changed since the build"),
    ("header", "changed since the build"),
    ("artifact", "differs from the file"),
    ("flags", "flags or target architectures"),
])
def test_stale_detection(tiny, monkeypatch, change, reason):
    src, out = tiny
    build.build(src_dir=src, out_dir=out)
    if change == "source":
        (src / "tiny.cu").write_text(TINY + "\n// edited\n")
    elif change == "header":
        (src / "tiny.cuh").write_text(HEADER + "// edited\n")
    elif change == "artifact":
        with open(out / "tiny.fatbin", "ab") as f:
            f.write(b"\0")
    else:
        monkeypatch.setitem(build.SPEC_OVERRIDES, "tiny", build.KernelSpec("tiny", "tiny.cu", archs=("80",), ptx_archs=("90",)))
    st = build.status("tiny", src_dir=src, out_dir=out)
    assert st.state == "stale" and reason in st.reason


def test_missing_and_nvcc_version(tiny, monkeypatch):
    src, out = tiny
    assert build.status("tiny", src_dir=src, out_dir=out).state == "missing"
    build.build(src_dir=src, out_dir=out)
    (out / "tiny.fatbin").unlink()
    assert build.status("tiny", src_dir=src, out_dir=out).state == "missing"
    build.build(src_dir=src, out_dir=out)
    monkeypatch.setitem(build._version_cache, NVCC, "99.9.9")
    st = build.status("tiny", src_dir=src, out_dir=out)
    assert st.state == "stale" and "99.9.9" in st.reason


def test_ensure_rebuilds_with_nvcc(tiny):
    src, out = tiny
    path = build.ensure("tiny", src_dir=src, out_dir=out)
    assert path.exists()
    (src / "tiny.cu").write_text(TINY + "// v2\n")
    path2 = build.ensure("tiny", src_dir=src, out_dir=out)
    assert build.status("tiny", src_dir=src, out_dir=out).fresh and path2 == path


def test_ensure_refuses_without_nvcc(tiny, monkeypatch):
    src, out = tiny
    build.build(src_dir=src, out_dir=out)
    (src / "tiny.cu").write_text(TINY + "// v2\n")
    monkeypatch.setenv("CUDART_KIT_NVCC", "")  # no nvcc on this "machine"
    with pytest.raises(StaleArtifactError, match="cudart-kit build") as info:
        build.ensure("tiny", src_dir=src, out_dir=out)
    assert "nvcc is not available" in str(info.value)
    (out / "tiny.fatbin").unlink()
    with pytest.raises(MissingArtifactError, match="cudart-kit build"):
        build.ensure("tiny", src_dir=src, out_dir=out)
    with pytest.raises(BuildError, match="nvcc not found"):
        build.build(src_dir=src, out_dir=out, force=True)


def test_nvcc_error_is_reported(tiny):
    src, out = tiny
    (src / "tiny.cu").write_text("this is not CUDA\n")
    with pytest.raises(BuildError) as info:
        build.build(src_dir=src, out_dir=out)
    msg = str(info.value)
    assert "nvcc failed on tiny.cu" in msg and "error" in msg.lower()
    assert not (out / "tiny.fatbin").exists()


def test_unknown_name(tiny):
    src, out = tiny
    with pytest.raises(MissingArtifactError, match="tiny"):
        build.status("nope", src_dir=src, out_dir=out)


def test_cli_list_and_build(tiny, monkeypatch, capsys):
    src, out = tiny
    monkeypatch.setenv("CUDART_KIT_KERNEL_DIR", str(src))
    monkeypatch.setenv("CUDART_KIT_ARTIFACT_DIR", str(out))
    assert build.main(["--list"]) == 1
    assert "missing" in capsys.readouterr().out
    assert build.main([]) == 0
    assert build.main(["--list"]) == 0
    assert "fresh" in capsys.readouterr().out


@pytest.mark.slow
def test_real_kernels_build(tmp_path):
    """Every kernels/*.cu with the default architectures."""
    built = build.build(force=True, out_dir=tmp_path)
    assert {"vector", "bench"} <= set(built)
    for name in built:
        assert build.status(name, out_dir=tmp_path).fresh


@pytest.mark.slow
def test_wheel_carries_artifacts(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", str(REPO), "-w", str(tmp_path)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheel = next(tmp_path.glob("cudart_kit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "cudart_kit/_artifacts/manifest.json" in names
    assert "cudart_kit/_artifacts/vector.fatbin" in names
    assert "cudart_kit/_kernels/vector.cu" in names
    # unpacked on a machine without nvcc, the artifacts check out fresh
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import os; os.environ['CUDART_KIT_NVCC'] = '';"
            "from cudart_kit import build; st = build.status('vector');"
            "print(st.state, build.source_dir().name, build.ensure('vector').name)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUDART_KIT_")}
    env["PYTHONPATH"] = str(site)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["fresh", "_kernels", "vector.fatbin"]
