"""The kernel pipeline: kernels/*.cu -> one fatbin each (cubins + PTX) with a manifest that ties
every artifact to its sources (the .cu and the local headers it includes), flags and nvcc.
Stdlib only: setup.py imports it.

Two homes, two freshness rules:

- a **source checkout** (``kernels/`` beside this package and the project's pyproject.toml):
  an artifact is fresh when its file, sources, flags and the local nvcc's version all match
  the manifest; anything else is rebuilt on first use (or with ``cudart-kit build``);
- an **installed wheel** (sources in ``cudart_kit/_kernels``, artifacts prebuilt): an artifact
  is fresh when its file and sources match; the local nvcc never enters into it, and nothing
  is ever written into the installed package.

Manifest (``<artifact dir>/manifest.json``)::

    {"format": 1, "artifacts": {"vector": {
        "file": "vector.fatbin", "source": "vector.cu", "headers": [], "source_sha256": "...",
        "nvcc_version": "13.0.88", "flags": ["-O3", ...], "archs": ["80", ...],
        "ptx_archs": ["80", "120"], "arch_specific": [], "min_driver_cuda": "13.0",
        "prebuilt": false, "artifact_sha256": "...", "built_at": "2026-11-23T22:00:00Z"}}}
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

from cudart_kit.errors import BuildError, MissingArtifactError, StaleArtifactError, error_document

__all__ = [
    "DEFAULT_ARCHS", "DEFAULT_PTX_ARCHS", "KernelSpec", "SPEC_OVERRIDES", "specs", "source_dir",
    "artifact_dir", "find_nvcc", "nvcc_version", "nvcc_flags", "source_hash", "build", "status",
    "ensure", "read_manifest", "ArtifactStatus", "main", "is_source_checkout", "local_headers",
    "min_driver_cuda",
]

# One cubin per major architecture family: a cubin for sm_X0 runs on every sm_Xy (y >= 0), so
# sm_86 / sm_89 cubins only duplicated sm_80's (a third of the wheel). sm_90a, sm_100 and
# sm_120 differ in their instruction sets and get their own.
DEFAULT_ARCHS = ("80", "90", "100", "120")
DEFAULT_PTX_ARCHS = ("80", "120")
MANIFEST_FORMAT = 1
BUILD_COMMAND = "cudart-kit build   (or: python -m cudart_kit.build)"
# --compress-mode=speed: the entries nvcc chooses to compress (PTX, cubins past a size: the sm_100 /
# sm_120 matmul cubins of ~10 MiB) are LZ4, which image.py reads on any Python; nvcc's default
# codec, zstd, needs Python 3.14 to list a fatbin's kernels without a driver.
_COMMON_FLAGS = ("-O3", "-std=c++17", "-lineinfo", "--fatbin", "--compress-mode=speed")


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


_PACKAGE = Path(__file__).resolve().parent
_PROJECT_NAME = re.compile(r'^name\s*=\s*"cudart-kit"\s*$', re.M)


def is_source_checkout() -> bool:
    """True when this package sits in the project's own source tree (pyproject.toml naming
    cudart-kit and kernels/ beside it). An installed wheel's site-packages may hold an
    unrelated ``kernels`` directory (a PyPI package has that name): it is never taken."""
    root = _PACKAGE.parent
    try:
        text = (root / "pyproject.toml").read_text()
    except OSError:
        return False
    return bool(_PROJECT_NAME.search(text)) and (root / "kernels").is_dir()


def source_dir() -> Path:
    """``CUDART_KIT_KERNEL_DIR``, else kernels/ of a source checkout, else the copy shipped
    inside the wheel (``cudart_kit/_kernels``)."""
    env = os.environ.get("CUDART_KIT_KERNEL_DIR")
    if env:
        return Path(env)
    if is_source_checkout():
        return _PACKAGE.parent / "kernels"
    return _PACKAGE / "_kernels"


def artifact_dir() -> Path:
    """``CUDART_KIT_ARTIFACT_DIR``, else the package's own ``_artifacts``."""
    env = os.environ.get("CUDART_KIT_ARTIFACT_DIR")
    return Path(env) if env else _PACKAGE / "_artifacts"


def _is_installed_package_dir(out: Path) -> bool:
    """The artifact directory of an installed (non-checkout) package: never written to."""
    try:
        return not is_source_checkout() and out.resolve() == (_PACKAGE / "_artifacts").resolve()
    except OSError:
        return False


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


_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def local_headers(source: str, src_dir: Path) -> list[str]:
    """The headers of ``src_dir`` that ``source`` includes with ``#include "..."``, directly or
    through other local headers (sorted names). ``<...>`` includes are the toolkit's: their
    change shows as an nvcc version change."""
    src_dir = Path(src_dir)
    seen: set[str] = set()
    todo = [source]
    while todo:
        name = todo.pop()
        try:
            text = (src_dir / name).read_text(errors="replace")
        except OSError:
            continue  # a missing header is nvcc's error to report, not the hash's
        for inc in _INCLUDE.findall(text):
            if inc not in seen and (src_dir / inc).is_file():
                seen.add(inc)
                todo.append(inc)
    return sorted(seen)


def source_hash(spec: KernelSpec, src_dir: Path) -> str:
    """SHA-256 over the source and the local headers it includes (names included), so a
    header change marks only the artifacts that use it."""
    h = hashlib.sha256()
    src_dir = Path(src_dir)
    files = [src_dir / spec.source] + [src_dir / n for n in local_headers(spec.source, src_dir)]
    for f in files:
        h.update(f.name.encode() + b"\0")
        h.update(f.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def min_driver_cuda(nvcc_version_text: str, ptx: bool) -> str:
    """The oldest driver (as the CUDA version it supports, cuDriverGetVersion) that runs an
    artifact from this nvcc: cubins need the toolkit's major release (minor-version
    compatibility), embedded PTX is JIT-compiled and needs the toolkit's own major.minor."""
    parts = (nvcc_version_text.split(".") + ["0"])[:2]
    return f"{parts[0]}.{parts[1]}" if ptx else f"{parts[0]}.0"


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(out_dir: Path | None = None) -> dict:
    path = Path(out_dir or artifact_dir()) / "manifest.json"
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        return {"format": MANIFEST_FORMAT, "artifacts": {}}
    except (OSError, ValueError) as exc:
        raise StaleArtifactError(f"manifest {path} is unreadable ({exc}); run: {BUILD_COMMAND}") from None
    if data.get("format") != MANIFEST_FORMAT:
        return {"format": MANIFEST_FORMAT, "artifacts": {}}
    return data


_tlock = threading.RLock()


def _file_mode() -> int:
    """0o666 less the umask: artifacts are readable by every user of a shared checkout."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _writable_or_raise(out_dir: Path) -> None:
    if _is_installed_package_dir(out_dir):
        raise BuildError(
            f"will not write kernel artifacts into the installed package ({out_dir}); "
            "reinstall cudart-kit to get fresh prebuilt kernels, or build your own into a "
            "directory you own: CUDART_KIT_ARTIFACT_DIR=~/.cache/cudart_kit cudart-kit build"
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BuildError(f"cannot create the artifact directory {out_dir} ({exc.strerror}); "
                         "point CUDART_KIT_ARTIFACT_DIR at a writable directory") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise BuildError(f"the artifact directory {out_dir} is not writable; point "
                         "CUDART_KIT_ARTIFACT_DIR at a writable directory and run: cudart-kit build")


@contextlib.contextmanager
def _locked(out_dir: Path):
    """One builder at a time, across threads and processes."""
    _writable_or_raise(out_dir)
    with _tlock:
        fd = os.open(out_dir / ".lock", os.O_RDWR | os.O_CREAT, _file_mode())
        with os.fdopen(fd, "w") as lockf:
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
        os.chmod(tmp, _file_mode())  # mkstemp makes 0600
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
    """Is artifact ``name`` usable? Compares file, manifest, sources and flags; the nvcc
    version too, but only for artifacts built locally (not a wheel's prebuilt ones)."""
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
    if entry.get("prebuilt"):
        return ArtifactStatus(name, "fresh", "up to date (prebuilt)", path)
    if nvcc == "auto":
        nvcc = find_nvcc()
    if nvcc:
        have = nvcc_version(nvcc)
        if have != entry.get("nvcc_version"):
            return ArtifactStatus(name, "stale", f"built by nvcc {entry.get('nvcc_version')}, this nvcc is {have}", path)
    return ArtifactStatus(name, "fresh", "up to date", path)


def _compile(spec: KernelSpec, nvcc: str, src: Path, dest: Path) -> None:
    """nvcc on a staging copy of the sources, run from inside it: with -lineinfo nvcc records
    the compile directory and the source path in the artifact and has no option to map them,
    so the artifact names only a throwaway temporary directory, never the checkout's path."""
    with tempfile.TemporaryDirectory(prefix="cudart-kit-nvcc-") as stage:
        for name in [spec.source, *local_headers(spec.source, src)]:
            shutil.copyfile(src / name, Path(stage) / name)
        cmd = [nvcc, *nvcc_flags(spec), "--threads", "0", spec.source, "-o", str(dest)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=stage)
        except OSError as exc:
            raise BuildError(f"cannot run {nvcc}: {exc}") from None
    if proc.returncode != 0:
        raise BuildError(
            f"nvcc failed on {spec.source} (exit {proc.returncode}).\ncommand: {' '.join(cmd)}\n"
            f"{(proc.stderr or proc.stdout).strip()}"
        )


def _no_nvcc_error() -> BuildError:
    return BuildError(
        "nvcc not found: install the CUDA toolkit (nvcc 13.x) or point CUDA_HOME or "
        "CUDART_KIT_NVCC at it; a wheel of cudart-kit ships prebuilt kernels instead"
    )


def build(names=None, *, force: bool = False, nvcc=None, src_dir=None, out_dir=None, log=None,
          prebuilt: bool = False) -> dict:
    """Compile the named artifacts (default: all) that are not fresh (all of them with ``force``).

    ``prebuilt`` marks the artifacts as a wheel's (the packaging hook sets it): their freshness
    then no longer depends on the local nvcc. Returns the manifest entries written (empty when
    everything was fresh: nvcc is then not needed at all). Raises BuildError when nvcc is
    missing or fails, or when the artifact directory is the installed package or read-only."""
    src = Path(src_dir) if src_dir is not None else source_dir()
    out = Path(out_dir) if out_dir is not None else artifact_dir()
    all_specs = specs(src)
    wanted = list(all_specs) if names is None else list(names)
    for n in wanted:
        if n not in all_specs:
            raise BuildError(f"no kernel source {n}.cu in {src}; known: {', '.join(sorted(all_specs)) or '(none)'}")
    nvcc = nvcc or find_nvcc()
    todo = wanted if force else [n for n in wanted
                                 if not status(n, src_dir=src, out_dir=out, nvcc=nvcc or None).fresh]
    if not todo:
        return {}
    if not nvcc:
        raise _no_nvcc_error()
    version = nvcc_version(nvcc)
    built = {}
    with _locked(out):
        for n in todo:
            spec = all_specs[n]
            if not force and status(n, src_dir=src, out_dir=out, nvcc=nvcc).fresh:
                continue  # another builder finished it while we waited for the lock
            t0 = time.perf_counter()
            dest = out / f"{n}.fatbin"
            fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{n}.", suffix=".fatbin.tmp")
            os.close(fd)
            try:
                _compile(spec, nvcc, src, Path(tmp))
                os.chmod(tmp, _file_mode())
                os.replace(tmp, dest)
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            entry = {
                "file": dest.name, "source": spec.source, "headers": local_headers(spec.source, src),
                "source_sha256": source_hash(spec, src),
                "nvcc_version": version, "flags": nvcc_flags(spec), "archs": list(spec.archs),
                "ptx_archs": list(spec.ptx_archs), "arch_specific": list(spec.arch_specific),
                "min_driver_cuda": min_driver_cuda(version, ptx=bool(spec.ptx_archs)),
                "prebuilt": bool(prebuilt), "artifact_sha256": _file_hash(dest),
                "size_bytes": dest.stat().st_size,
                "built_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            manifest = read_manifest(out)
            manifest["artifacts"][n] = entry
            _write_atomic(out / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode())
            built[n] = entry
            if log:
                log(f"built {n:10} {describe_targets(entry)} in {time.perf_counter() - t0:5.1f} s, "
                    f"{dest.stat().st_size / 1024:.0f} KiB")
    return built


def describe_targets(entry: dict) -> str:
    """'sm_80,86,90 + PTX compute_80,120; driver >= CUDA 13.0' from a manifest entry."""
    cubins = list(entry.get("archs", [])) + list(entry.get("arch_specific", []))
    ptx = list(entry.get("ptx_archs", []))
    text = ("sm_" + ",".join(cubins)) if cubins else "no cubins"
    text += (" + PTX compute_" + ",".join(ptx)) if ptx else " (no PTX)"
    need = entry.get("min_driver_cuda")
    if need:
        text += f"; driver >= CUDA {need}"
    return text


def ensure(name: str, *, rebuild: bool = True, src_dir=None, out_dir=None) -> Path:
    """The path of a fresh artifact ``name``. A missing or stale one is rebuilt when nvcc and the
    source are available and the artifact directory is not an installed package
    (``rebuild``), otherwise refused with what to do (never loaded silently)."""
    src = Path(src_dir) if src_dir is not None else source_dir()
    out = Path(out_dir) if out_dir is not None else artifact_dir()
    with _tlock:
        st = status(name, src_dir=src, out_dir=out)
        if st.fresh:
            return st.path
        cls = MissingArtifactError if st.state == "missing" else StaleArtifactError
        if _is_installed_package_dir(out):
            raise cls(
                f"kernel artifact {name!r} of the installed cudart-kit is {st.state}: {st.reason}. "
                "Reinstall cudart-kit (its wheel carries prebuilt kernels), or build them into a "
                "directory of your own: CUDART_KIT_ARTIFACT_DIR=~/.cache/cudart_kit cudart-kit build"
            )
        nvcc = find_nvcc()
        spec = specs(src).get(name)
        can_build = rebuild and nvcc and spec is not None and (src / spec.source).exists()
        if not can_build:
            why = "nvcc is not available" if not nvcc else "the kernel sources are not available"
            if not rebuild:
                why = "rebuilding was not allowed"
            raise cls(f"kernel artifact {name!r} is {st.state}: {st.reason}; {why}. Run: {BUILD_COMMAND}")
        print(f"cudart_kit: building kernel artifact {name!r} ({st.reason})", file=sys.stderr)
        build([name], nvcc=nvcc, src_dir=src, out_dir=out)
        st = status(name, src_dir=src, out_dir=out, nvcc=nvcc)
        if not st.fresh:  # a build that does not produce a fresh artifact is a bug worth naming
            raise StaleArtifactError(f"kernel artifact {name!r} still {st.state} after building: {st.reason}")
        return st.path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="cudart-kit build", description="Build the kit's kernels with nvcc.",
        epilog="exit codes: 0 every artifact asked for is fresh (built now or before; nvcc is "
               "not needed when nothing must be built), 1 an artifact is missing or stale "
               "(--list) or could not be built, 2 usage error",
    )
    p.add_argument("names", nargs="*", help="artifacts to build (default: all)")
    p.add_argument("--force", action="store_true", help="rebuild even fresh artifacts")
    p.add_argument("--list", action="store_true",
                   help="show each artifact's state, targets and minimum driver, and exit")
    p.add_argument("--json", action="store_true",
                   help="a JSON document on stdout (the list, or what was built; the build log goes to stderr)")
    args = p.parse_args(argv)
    log = (lambda line: print(line, file=sys.stderr)) if args.json else print
    try:
        names = args.names or list(specs())
        if args.list:
            return _list(names, as_json=args.json)
        built = build(args.names or None, force=args.force, log=log)
        if args.json:
            print(json.dumps({"schema": "cudart-kit/build/1", "artifact_dir": str(artifact_dir()),
                              "built": sorted(built), "nvcc": find_nvcc(), "ok": True}, indent=2))
            return 0
        if not built:
            how = "" if find_nvcc() else " (nvcc not found, and not needed)"
            print(f"all kernel artifacts are fresh{how}; use --force to rebuild")
        print(f"artifacts in {artifact_dir()}")
        return 0
    except (BuildError, StaleArtifactError, MissingArtifactError) as exc:
        message = " ".join(str(exc).split())
        if args.json:
            print(json.dumps(error_document(exc, message=message, command="build", exit_code=1)))
        print(f"cudart-kit build: error: {exc}", file=sys.stderr)
        return 1


def _list(names: list[str], *, as_json: bool) -> int:
    manifest = read_manifest()["artifacts"]
    rows = []
    for n in names:
        st = status(n)
        entry = manifest.get(n, {})
        rows.append({"name": n, "state": st.state, "reason": st.reason,
                     "targets": describe_targets(entry) if entry else "",
                     "archs": entry.get("archs", []), "arch_specific": entry.get("arch_specific", []),
                     "ptx_archs": entry.get("ptx_archs", []),
                     "min_driver_cuda": entry.get("min_driver_cuda"),
                     "nvcc_version": entry.get("nvcc_version"), "prebuilt": entry.get("prebuilt", False),
                     "size_bytes": entry.get("size_bytes")})
    ok = all(r["state"] == "fresh" for r in rows)
    if as_json:
        print(json.dumps({"schema": "cudart-kit/build-list/1", "artifact_dir": str(artifact_dir()), "source_dir": str(source_dir()),
                          "artifacts": rows, "ok": ok}, indent=2))
    else:
        for r in rows:
            print(f"{r['name']:12} {r['state']:8} {r['reason']}" + (f"  [{r['targets']}]" if r["targets"] else ""))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
