"""The release path as a user meets it: `python -m build` (sdist first, then the wheel built
from the sdist), installed into a fresh venv on a machine whose nvcc is really hidden (a tmpfs
over the CUDA toolkit in a private mount namespace, where this runs as root) or replaced by
an nvcc of another version. The wheel must carry every kernel, fresh, and never compile."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

from cudart_kit import build

REPO = Path(__file__).resolve().parent.parent
NVCC = build.find_nvcc()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(NVCC is None, reason="nvcc not installed")]

_ENTRY = re.compile(r'extern\s+"C"\s+__global__\s+(?:__launch_bounds__\([^)]*\)\s+)?void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)\s*\(')


# macro bodies (with their line continuations) declare templates of kernels, not kernels
_DEFINE = re.compile(r'^[ \t]*#[ \t]*define(?:[^\n]*\\\n)*[^\n]*|//[^\n]*', re.M)


def declared_kernels(cu_text: str) -> set[str]:
    """extern "C" __global__ entry points declared in a .cu source, outside macro bodies."""
    return set(_ENTRY.findall(_DEFINE.sub("", cu_text)))


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """sdist + wheel of the working tree, built with the standard release command."""
    root = tmp_path_factory.mktemp("release")
    src = root / "src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (REPO / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, src / f)
    out = root / "dist"
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    sdist = next(out.glob("cudart_kit-*.tar.gz"), None) or next(out.glob("cudart-kit-*.tar.gz"))
    wheel = next(out.glob("cudart_kit-*.whl"))
    return {"sdist": sdist, "wheel": wheel, "root": root, "log": proc.stdout}


def test_sdist_carries_kernel_sources_and_no_artifacts(dist):
    names = tarfile.open(dist["sdist"]).getnames()
    top = names[0].split("/")[0]
    for cu in list((REPO / "kernels").glob("*.cu")) + list((REPO / "kernels").glob("*.cuh")):
        assert f"{top}/kernels/{cu.name}" in names, cu.name
    assert f"{top}/setup.py" in names and f"{top}/MANIFEST.in" in names
    assert not [n for n in names if "/_artifacts/" in n or "/_kernels/" in n or n.endswith(".lock")]


def test_wheel_carries_every_artifact(dist):
    zf = zipfile.ZipFile(dist["wheel"])
    names = set(zf.namelist())
    sources = sorted(p.stem for p in (REPO / "kernels").glob("*.cu"))
    for n in sources:
        assert f"cudart_kit/_artifacts/{n}.fatbin" in names, n
        assert f"cudart_kit/_kernels/{n}.cu" in names, n
    assert "cudart_kit/_artifacts/manifest.json" in names
    assert not [n for n in names if n.endswith(".lock") or n.endswith(".tmp")]
    manifest = json.loads(zf.read("cudart_kit/_artifacts/manifest.json"))
    assert sorted(manifest["artifacts"]) == sources
    for entry in manifest["artifacts"].values():
        assert entry["prebuilt"] is True and entry["min_driver_cuda"]
    size = dist["wheel"].stat().st_size
    unpacked = sum(i.file_size for i in zf.infolist())
    print(f"\nwheel {dist['wheel'].name}: {size / 2**20:.1f} MiB, {unpacked / 2**20:.1f} MiB unpacked")
    assert size < 40 * 2**20  # a regression guard: 7 MiB measured with 5 artifacts


def _hidden_nvcc_prefix() -> list[str]:
    """Run under a private mount namespace with a tmpfs over the CUDA toolkit, when we can."""
    cuda = Path(NVCC).resolve().parent.parent
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return []
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs none {cuda} && test ! -e {cuda}/bin/nvcc"],
                           capture_output=True)
    return ["unshare", "-m", "sh", "-c", f'mount -t tmpfs none {cuda} && exec "$@"', "sh"] if probe.returncode == 0 else []


@pytest.fixture(scope="module")
def fresh_venv(dist):
    env_dir = dist["root"] / "venv"
    # system site-packages give numpy / cuda-core without a download; the wheel goes into the
    # venv's own site-packages, which comes first (checked below).
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    proc = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(dist["wheel"])],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return env_dir


def _run(env_dir: Path, args: list[str], nvcc: str | None, prefix: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CUDART_KIT_") and k not in ("CUDA_HOME", "CUDA_PATH", "PYTHONPATH")}
    env["PATH"] = f"{env_dir / 'bin'}:/usr/bin:/bin"
    if nvcc is not None:
        env["CUDART_KIT_NVCC"] = nvcc
    return subprocess.run(prefix + args, capture_output=True, text=True, env=env, cwd=env_dir)


CHECK = r"""
import json, re, sys
from pathlib import Path
import cudart_kit
from cudart_kit import build, image
pkg = Path(cudart_kit.__file__).parent
assert str(pkg).startswith(sys.prefix), (pkg, sys.prefix)
entry = re.compile(PATTERN)
define = re.compile(DEFINE, re.M)
report = {"package": str(pkg), "checkout": build.is_source_checkout(), "source_dir": str(build.source_dir()),
          "artifacts": {}}
for name in sorted(build.specs()):
    path = build.ensure(name)          # must not compile: it would need nvcc
    have = set(image.kernel_names(path.read_bytes()))
    want = set(entry.findall(define.sub("", (build.source_dir() / f"{name}.cu").read_text())))
    report["artifacts"][name] = {"kernels": len(have), "declared": len(want), "missing": sorted(want - have)}
print(json.dumps(report))
"""


@pytest.mark.parametrize("nvcc", ["hidden", "other-version"])
def test_installed_wheel_without_nvcc(fresh_venv, tmp_path, nvcc):
    prefix, nvcc_env = [], None
    marker = tmp_path / "nvcc-was-run"
    if nvcc == "hidden":
        prefix = _hidden_nvcc_prefix()
        nvcc_env = None if prefix else ""  # no namespace here: the kit's own switch hides it
    else:  # a local nvcc of another version must not make the wheel's kernels stale
        fake = tmp_path / "nvcc"
        fake.write_text(f"#!/bin/sh\ntouch {marker}\necho 'Cuda compilation tools, release 12.4, V12.4.131'\n")
        fake.chmod(0o755)
        nvcc_env = str(fake)
    listed = _run(fresh_venv, ["cudart-kit", "build", "--list"], nvcc_env, prefix)
    print(f"\n[{nvcc}{' in a mount namespace' if prefix else ''}] cudart-kit build --list:\n{listed.stdout}")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    lines = [ln for ln in listed.stdout.splitlines() if ln.strip()]
    assert len(lines) == len(list((REPO / "kernels").glob("*.cu")))
    assert all(ln.split()[1] == "fresh" for ln in lines), listed.stdout
    built = _run(fresh_venv, ["cudart-kit", "build"], nvcc_env, prefix)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "all kernel artifacts are fresh" in built.stdout
    code = CHECK.replace("PATTERN", repr(_ENTRY.pattern)).replace("DEFINE", repr(_DEFINE.pattern))
    check = _run(fresh_venv, [str(fresh_venv / "bin" / "python"), "-c", code], nvcc_env, prefix)
    assert check.returncode == 0, check.stderr[-3000:]
    report = json.loads(check.stdout.strip().splitlines()[-1])
    assert report["checkout"] is False and report["source_dir"].endswith("cudart_kit/_kernels")
    for name, r in report["artifacts"].items():
        assert r["kernels"] > 0 and r["missing"] == [], (name, r)
    assert not marker.exists(), "the installed wheel ran nvcc"


def test_declared_kernels_parser():
    text = ('extern "C" __global__ void a(int x) {}\nextern "C" __global__ __launch_bounds__(256, 1) void b_c(float*) {}\n'
            'extern "C" __global__ void __launch_bounds__(128) d(float*) {}\n'
            '#define K(NAME) \\\n  extern "C" __global__ void __launch_bounds__(256, 1) \\\n  NAME(float* x) {}\n')
    assert declared_kernels(text) == {"a", "b_c", "d"}
