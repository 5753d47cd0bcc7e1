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
    for key in ("file", "source", "headers", "source_sha256", "nvcc_version", "flags", "archs", "ptx_archs",
                "arch_specific", "min_driver_cuda", "prebuilt", "artifact_sha256", "size_bytes", "built_at"):
        assert key in entry, key
    assert entry["headers"] == ["tiny.cuh"] and entry["prebuilt"] is False
    major, minor = entry["nvcc_version"].split(".")[:2]
    assert entry["min_driver_cuda"] == f"{major}.{minor}"  # it carries PTX: JIT needs this driver
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



def test_artifacts_readable_by_others(tiny):
    """mkstemp makes 0600 files: another user of a shared checkout could not read them."""
    src, out = tiny
    old = os.umask(0o022)
    try:
        build.build(src_dir=src, out_dir=out)
    finally:
        os.umask(old)
    for f in ("tiny.fatbin", "manifest.json", ".lock"):
        assert (out / f).stat().st_mode & 0o777 == 0o644, f


def test_header_change_marks_only_its_includers(tiny, monkeypatch):
    src, out = tiny
    (src / "plain.cu").write_text('extern "C" __global__ void plain(float* x) { x[0] = 1.0f; }\n')
    (src / "nested.cuh").write_text('#include "tiny.cuh"\n')
    (src / "deep.cu").write_text('#include "nested.cuh"\nextern "C" __global__ void deep(float* x) { x[0] = TWICE(x[0]); }\n')
    for n in ("plain", "deep"):
        monkeypatch.setitem(build.SPEC_OVERRIDES, n, build.KernelSpec(n, f"{n}.cu", archs=("90",), ptx_archs=()))
    assert build.local_headers("deep.cu", src) == ["nested.cuh", "tiny.cuh"]
    assert build.local_headers("plain.cu", src) == []
    build.build(src_dir=src, out_dir=out)
    (src / "tiny.cuh").write_text(HEADER + "// a comment\n")
    states = {n: build.status(n, src_dir=src, out_dir=out).state for n in ("tiny", "deep", "plain")}
    assert states == {"tiny": "stale", "deep": "stale", "plain": "fresh"}


def test_no_build_path_in_artifact(tiny):
    """-lineinfo records the compile directory; the kit compiles from a throwaway copy."""
    src, out = tiny
    build.build(src_dir=src, out_dir=out)
    data = (out / "tiny.fatbin").read_bytes()
    assert str(src).encode() not in data and str(src.parent).encode() not in data


def test_fresh_and_no_nvcc_is_success(tiny, monkeypatch, capsys):
    src, out = tiny
    monkeypatch.setenv("CUDART_KIT_KERNEL_DIR", str(src))
    monkeypatch.setenv("CUDART_KIT_ARTIFACT_DIR", str(out))
    assert build.main([]) == 0
    capsys.readouterr()
    monkeypatch.setenv("CUDART_KIT_NVCC", "")
    assert build.main([]) == 0
    assert "fresh (nvcc not found, and not needed)" in capsys.readouterr().out
    assert build.main(["--list"]) == 0
    (src / "tiny.cu").write_text(TINY + "// v2\n")
    assert build.main([]) == 1
    assert "nvcc not found" in capsys.readouterr().err


def test_list_names_targets_and_driver(tiny, monkeypatch, capsys):
    src, out = tiny
    monkeypatch.setenv("CUDART_KIT_KERNEL_DIR", str(src))
    monkeypatch.setenv("CUDART_KIT_ARTIFACT_DIR", str(out))
    build.build(src_dir=src, out_dir=out)
    capsys.readouterr()
    assert build.main(["--list"]) == 0
    line = capsys.readouterr().out
    major, minor = build.nvcc_version(NVCC).split(".")[:2]
    assert "sm_90 + PTX compute_90" in line and f"driver >= CUDA {major}.{minor}" in line
    assert build.main(["--list", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["artifacts"][0]["archs"] == ["90"]
    assert doc["artifacts"][0]["min_driver_cuda"] == f"{major}.{minor}"


def test_prebuilt_ignores_local_nvcc(tiny, monkeypatch):
    """A wheel's artifacts stay fresh whatever nvcc the machine has; local builds do not."""
    src, out = tiny
    build.build(src_dir=src, out_dir=out, prebuilt=True)
    monkeypatch.setitem(build._version_cache, NVCC, "99.9.9")
    assert build.status("tiny", src_dir=src, out_dir=out).fresh
    (src / "tiny.cu").write_text(TINY + "// v2\n")  # the sources still count
    assert build.status("tiny", src_dir=src, out_dir=out).state == "stale"


def test_unwritable_artifact_dir_is_a_kit_error(tiny, monkeypatch):
    src, out = tiny
    blocker = out.parent / "a_file"
    blocker.write_text("")
    with pytest.raises(BuildError, match="cannot create the artifact directory"):
        build.build(src_dir=src, out_dir=blocker / "sub")
    out.mkdir()
    real_access = os.access
    monkeypatch.setattr(build.os, "access", lambda p, m: False if Path(p) == out else real_access(p, m))
    with pytest.raises(BuildError, match="not writable.*CUDART_KIT_ARTIFACT_DIR"):
        build.build(src_dir=src, out_dir=out)


def _installed_copy(tmp_path: Path) -> Path:
    """site/cudart_kit with build.py + errors.py (no checkout around it) and an unrelated
    site/kernels package beside it, as a PyPI package called 'kernels' would install."""
    site = tmp_path / "site"
    pkg = site / "cudart_kit"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for name in ("build.py", "errors.py"):
        (pkg / name).write_bytes((REPO / "cudart_kit" / name).read_bytes())
    (site / "kernels").mkdir()
    (site / "kernels" / "evil.cu").write_text("not ours\n")
    (pkg / "_kernels").mkdir()
    (pkg / "_kernels" / "tiny.cu").write_text(TINY)
    (pkg / "_kernels" / "tiny.cuh").write_text(HEADER)
    return site


def _run_in(site: Path, code: str, **env_extra) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUDART_KIT_")}
    env.update(PYTHONPATH=str(site), **env_extra)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=site.parent)


def test_checkout_detected_here():
    assert build.is_source_checkout() and build.source_dir() == REPO / "kernels"


def test_installed_layout_finds_only_its_own_sources(tmp_path):
    site = _installed_copy(tmp_path)
    run = _run_in(site, "from cudart_kit import build; print(build.is_source_checkout(), build.source_dir(), sorted(build.specs()))")
    assert run.returncode == 0, run.stderr
    checkout, src, names = run.stdout.split(maxsplit=2)
    assert checkout == "False" and Path(src) == site / "cudart_kit" / "_kernels"
    assert names.strip() == "['tiny']"


def test_installed_package_is_never_written(tmp_path):
    site = _installed_copy(tmp_path)
    code = ("from cudart_kit import build\n"
            "build.SPEC_OVERRIDES['tiny'] = build.KernelSpec('tiny', 'tiny.cu', archs=('90',), ptx_archs=())\n"
            "try:\n    build.ensure('tiny')\nexcept Exception as e:\n    print(type(e).__name__, '|', e)\n"
            "try:\n    build.build()\nexcept Exception as e:\n    print(type(e).__name__, '|', e)\n")
    run = _run_in(site, code)
    assert run.returncode == 0, run.stderr
    first, second = run.stdout.strip().splitlines()
    assert first.startswith("MissingArtifactError |") and "Reinstall cudart-kit" in first
    assert "CUDART_KIT_ARTIFACT_DIR" in first
    assert second.startswith("BuildError |") and "will not write kernel artifacts into the installed package" in second
    assert not (site / "cudart_kit" / "_artifacts").exists()
