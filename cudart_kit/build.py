"""The kernel pipeline: kernels/*.cu -> one fatbin each (cubins + PTX) with a manifest that ties
every artifact to its source hash, nvcc version and flags. Stdlib only: setup.py imports it.

Manifest (``<artifact dir>/manifest.json``)::

    {"format": 1, "artifacts": {"vector": {
        "file": "vector.fatbin", "source": "vector.cu", "source_sha256": "...",
        "nvcc_version": "13.0.88", "flags": ["-O3", ...], "archs": ["80", ...],
        "ptx_archs": ["80", "120"], "arch_specific": [], "artifact_sha256": "...",
        "built_at": "2026-11-23T22:00:00Z"}}}
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cudart_kit.errors import BuildError, MissingArtifactError, StaleArtifactError

__all__ = [
    "DEFAULT_ARCHS", "DEFAULT_PTX_ARCHS", "KernelSpec", "SPEC_OVERRIDES", "specs", "source_dir",
    "artifact_dir", "find_nvcc", "nvcc_version", "nvcc_flags", "source_hash", "build", "status",
    "ensure", "read_manifest", "ArtifactStatus", "main",
]

DEFAULT_ARCHS = ("80", "86", "89", "90", "100", "120")
DEFAULT_PTX_ARCHS = ("80", "120")
MANIFEST_FORMAT = 1
BUILD_COMMAND = "cudart-kit build   (or: python -m cudart_kit.build)"
_COMMON_FLAGS = ("-O3", "-std=c++17", "-lineinfo", "--fatbin")
_HEADER_SUFFIXES = (".cuh", ".h", ".hpp")


@dataclass(frozen=True)
class KernelSpec:
    """How one kernels/<source> is compiled. ``arch_specific`` like ("90a",) adds an
    architecture-specific cubin (wgmma and friends need sm_90a)."""

    name: str
    source: str
    archs: tuple = DEFAULT_ARCHS
    ptx_archs: tuple = DEFAULT_PTX_ARCHS
    arch_specific: tuple = ()
    extra_flags: tuple = ()


# Sources that need other targets than the defaults. gemm_sm90 uses wgmma / setmaxnreg, which
# exist only in the architecture-specific sm_90a target (no PTX: it could not run elsewhere).
SPEC_OVERRIDES: dict[str, KernelSpec] = {
    "gemm_sm90": KernelSpec("gemm_sm90", "gemm_sm90.cu", archs=(), ptx_archs=(), arch_specific=("90a",)),
}


def source_dir() -> Path:
    """kernels/ of a source checkout, else the copy shipped inside a wheel."""
    env = os.environ.get("CUDART_KIT_KERNEL_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parent.parent / "kernels"
    if repo.is_dir():
        return repo
    return Path(__file__).resolve().parent / "_kernels"


def artifact_dir() -> Path:
    env = os.environ.get("CUDART_KIT_ARTIFACT_DIR")
    return Path(env) if env else Path(__file__).resolve().parent / "_artifacts"


def specs(src_dir: Path | None = None) -> dict[str, KernelSpec]:
    """Every kernels/*.cu as a spec (the default one unless SPEC_OVERRIDES names it)."""
    src = Path(src_dir) if src_dir is not None else source_dir()
    out = {}
    for cu in sorted(src.glob("*.cu")) if src.is_dir() else []:
        out[cu.stem] = SPEC_OVERRIDES.get(cu.stem, KernelSpec(cu.stem, cu.name))
    for name, spec in SPEC_OVERRIDES.items():
        if name not in out and (src / spec.source).exists():
            out[name] = spec
    return out


def find_nvcc() -> str | None:
    """nvcc from CUDART_KIT_NVCC, CUDA_HOME, CUDA_PATH, PATH or /usr/local/cuda (None if absent)."""
    env = os.environ.get("CUDART_KIT_NVCC")
    if env is not None:
        return env if env and os.access(env, os.X_OK) else None
    for var in ("CUDA_HOME", "CUDA_PATH"):
        root = os.environ.get(var)
        if root and os.access(os.path.join(root, "bin", "nvcc"), os.X_OK):
            return os.path.join(root, "bin", "nvcc")
    found = shutil.which("nvcc")
    if found:
        return found
    default = "/usr/local/cuda/bin/nvcc"
    return default if os.access(default, os.X_OK) else None


_version_cache: dict[str, str] = {}


def nvcc_version(nvcc: str) -> str:
    """e.g. '13.0.88', from ``nvcc --version``."""
    v = _version_cache.get(nvcc)
    if v is None:
        try:
            out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
        except OSError as exc:
            raise BuildError(f"cannot run {nvcc}: {exc}") from exc
        m = re.search(r"V(\d+\.\d+\.\d+)", out) or re.search(r"release (\d+\.\d+)", out)
        if not m:
            raise BuildError(f"could not read the version from `{nvcc} --version`: {out.strip()[:200]}")
        v = _version_cache[nvcc] = m.group(1)
    return v


def nvcc_flags(spec: KernelSpec) -> list[str]:
    """Every flag that shapes the artifact (recorded in the manifest; no paths)."""
    flags = list(_COMMON_FLAGS)
    for a in spec.archs:
        flags.append(f"-gencode=arch=compute_{a},code=sm_{a}")
    for a in spec.arch_specific:
        flags.append(f"-gencode=arch=compute_{a},code=sm_{a}")
    for a in spec.ptx_archs:
        flags.append(f"-gencode=arch=compute_{a},code=compute_{a}")
    flags.extend(spec.extra_flags)
    return flags


def source_hash(spec: KernelSpec, src_dir: Path) -> str:
    """SHA-256 over the source and every header beside it (names included)."""
    h = hashlib.sha256()
    files = [src_dir / spec.source] + sorted(p for p in src_dir.iterdir() if p.suffix in _HEADER_SUFFIXES)
    for f in files:
        h.update(f.name.encode() + b"\0")
        h.update(f.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(out_dir: Path | None = None) -> dict:
    path = Path(out_dir or artifact_dir()) / "manifest.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {"format": MANIFEST_FORMAT, "artifacts": {}}
    except (OSError, ValueError) as exc:
        raise StaleArtifactError(f"manifest {path} is unreadable ({exc}); run: {BUILD_COMMAND}") from None
    if data.get("format") != MANIFEST_FORMAT:
        return {"format": MANIFEST_FORMAT, "artifacts": {}}
    return data


_tlock = threading.RLock()


@contextlib.contextmanager
def _locked(out_dir: Path):
    """One builder at a time, across threads and processes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with _tlock:
        with open(out_dir / ".lock", "w") as lockf:
            try:
                import fcntl

                fcntl.flock(lockf, fcntl.LOCK_EX)
            except ImportError:  # not POSIX: the thread lock is all we have
                pass
            yield


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass
class ArtifactStatus:
    name: str
    state: str  # "fresh" | "missing" | "stale"
    reason: str
    path: Path = field(default_factory=Path)

    @property
    def fresh(self) -> bool:
        return self.state == "fresh"


def status(name: str, *, src_dir=None, out_dir=None, nvcc="auto") -> ArtifactStatus:
    """Is artifact ``name`` usable? Compares file, manifest, sources, flags and nvcc version."""
    src = Path(src_dir) if src_dir is not None else source_dir()
    out = Path(out_dir) if out_dir is not None else artifact_dir()
    all_specs = specs(src)
    spec = all_specs.get(name)
    entry = read_manifest(out)["artifacts"].get(name)
    path = out / f"{name}.fatbin"
    if spec is None and entry is None:
        known = ", ".join(sorted(all_specs)) or "(none)"
        raise MissingArtifactError(f"no kernel source or artifact named {name!r}; known: {known}")
    if entry is None:
        return ArtifactStatus(name, "missing", "never built (no manifest entry)", path)
    path = out / entry.get("file", f"{name}.fatbin")
    if not path.exists():
        return ArtifactStatus(name, "missing", f"{path.name} does not exist", path)
    if _file_hash(path) != entry.get("artifact_sha256"):
        return ArtifactStatus(name, "stale", f"{path.name} differs from the file the manifest recorded", path)
    if spec is not None and (src / spec.source).exists():
        if source_hash(spec, src) != entry.get("source_sha256"):
            return ArtifactStatus(name, "stale", f"{spec.source} (or a header beside it) changed since the build", path)
        if nvcc_flags(spec) != entry.get("flags"):
            return ArtifactStatus(name, "stale", "compile flags or target architectures changed since the build", path)
    if nvcc == "auto":
        nvcc = find_nvcc()
    if nvcc:
        have = nvcc_version(nvcc)
        if have != entry.get("nvcc_version"):
            return ArtifactStatus(name, "stale", f"built by nvcc {entry.get('nvcc_version')}, this nvcc is {have}", path)
    return ArtifactStatus(name, "fresh", "up to date", path)


def _compile(spec: KernelSpec, nvcc: str, src: Path, dest: Path) -> None:
    cmd = [nvcc, *nvcc_flags(spec), "--threads", "0", str(src / spec.source), "-o", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(
            f"nvcc failed on {spec.source} (exit {proc.returncode}).\ncommand: {' '.join(cmd)}\n"
            f"{(proc.stderr or proc.stdout).strip()}"
        )


def build(names=None, *, force: bool = False, nvcc=None, src_dir=None, out_dir=None, log=None) -> dict:
    """Compile the named artifacts (default: all) that are not fresh (all of them with ``force``).

    Returns the manifest entries written. Raises BuildError when nvcc is missing or fails."""
    src = Path(src_dir) if src_dir is not None else source_dir()
    out = Path(out_dir) if out_dir is not None else artifact_dir()
    all_specs = specs(src)
    wanted = list(all_specs) if names is None else list(names)
    for n in wanted:
        if n not in all_specs:
            raise BuildError(f"no kernel source {n}.cu in {src}; known: {', '.join(sorted(all_specs)) or '(none)'}")
    nvcc = nvcc or find_nvcc()
    if not nvcc:
        raise BuildError(
            "nvcc not found: install the CUDA toolkit (nvcc 13.x) or point CUDA_HOME or "
            "CUDART_KIT_NVCC at it; a wheel of cudart-kit ships prebuilt kernels instead"
        )
    version = nvcc_version(nvcc)
    built = {}
    with _locked(out):
        for n in wanted:
            spec = all_specs[n]
            if not force and status(n, src_dir=src, out_dir=out, nvcc=nvcc).fresh:
                continue
            t0 = time.perf_counter()
            dest = out / f"{n}.fatbin"
            fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{n}.", suffix=".fatbin.tmp")
            os.close(fd)
            try:
                _compile(spec, nvcc, src, Path(tmp))
                os.replace(tmp, dest)
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            entry = {
                "file": dest.name, "source": spec.source, "source_sha256": source_hash(spec, src),
                "nvcc_version": version, "flags": nvcc_flags(spec), "archs": list(spec.archs),
                "ptx_archs": list(spec.ptx_archs), "arch_specific": list(spec.arch_specific),
                "artifact_sha256": _file_hash(dest),
                "built_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            manifest = read_manifest(out)
            manifest["artifacts"][n] = entry
            _write_atomic(out / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode())
            built[n] = entry
            if log:
                archs = ",".join(spec.archs + spec.arch_specific)
                log(f"built {n:10} sm_{{{archs}}} +ptx {','.join(spec.ptx_archs) or '-'} "
                    f"in {time.perf_counter() - t0:5.1f} s, {dest.stat().st_size / 1024:.0f} KiB")
    return built


def ensure(name: str, *, rebuild: bool = True, src_dir=None, out_dir=None) -> Path:
    """The path of a fresh artifact ``name``. A missing or stale one is rebuilt when nvcc and the
    source are available (``rebuild``), otherwise refused with the command to run."""
    src = Path(src_dir) if src_dir is not None else source_dir()
    out = Path(out_dir) if out_dir is not None else artifact_dir()
    with _tlock:
        st = status(name, src_dir=src, out_dir=out)
        if st.fresh:
            return st.path
        nvcc = find_nvcc()
        spec = specs(src).get(name)
        can_build = rebuild and nvcc and spec is not None and (src / spec.source).exists()
        if not can_build:
            why = "nvcc is not available" if not nvcc else "the kernel sources are not available"
            if not rebuild:
                why = "rebuilding was not allowed"
            cls = MissingArtifactError if st.state == "missing" else StaleArtifactError
            raise cls(f"kernel artifact {name!r} is {st.state}: {st.reason}; {why}. Run: {BUILD_COMMAND}")
        print(f"cudart_kit: building kernel artifact {name!r} ({st.reason})", file=sys.stderr)
        build([name], nvcc=nvcc, src_dir=src, out_dir=out)
        st = status(name, src_dir=src, out_dir=out, nvcc=nvcc)
        if not st.fresh:  # a build that does not produce a fresh artifact is a bug worth naming
            raise StaleArtifactError(f"kernel artifact {name!r} still {st.state} after building: {st.reason}")
        return st.path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="cudart-kit build", description="Build the kit's kernels with nvcc.")
    p.add_argument("names", nargs="*", help="artifacts to build (default: all)")
    p.add_argument("--force", action="store_true", help="rebuild even fresh artifacts")
    p.add_argument("--list", action="store_true", help="show each artifact's state and exit")
    args = p.parse_args(argv)
    try:
        names = args.names or list(specs())
        if args.list:
            for n in names:
                st = status(n)
                print(f"{n:12} {st.state:8} {st.reason}")
            return 0 if all(status(n).fresh for n in names) else 1
        built = build(args.names or None, force=args.force, log=print)
        if not built:
            print("all kernel artifacts are fresh (use --force to rebuild)")
        print(f"artifacts in {artifact_dir()}")
        return 0
    except (BuildError, StaleArtifactError, MissingArtifactError) as exc:
        print(f"cudart-kit build: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
