"""Environment diagnosis behind ``cudart-kit doctor``: each check says what it found and, when
something is wrong, what to do about it.

Checks run in dependency order (no device check without a driver, no launch without fresh
kernels) and never raise: a failure becomes a check with status "fail" and a fix. The report
is a plain dict (schema cudart-kit/doctor/1); ``ok`` is true only when nothing failed, which
is what the exit code of the command reflects. Warnings do not fail the report.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from dataclasses import asdict, dataclass

from . import _driver as drv
from . import device as _device  # called through the modules: tests stand fakes in
from . import query
from .errors import VISIBLE_DEVICES_ENV, CudaKitError, NoDeviceError, NoDriverError, visible_devices_hint

__all__ = [
    "SCHEMA",
    "STATUSES",
    "Check",
    "parse_version",
    "bindings_driver_compat",
    "nvcc_driver_compat",
    "parse_arch",
    "arch_coverage",
    "summarize",
    "run_checks",
]

SCHEMA = "cudart-kit/doctor/1"
STATUSES = ("ok", "warn", "fail", "skip")
SUPPORTED_CUDA_CORE = (1, 2)  # the cuda.core minor series the kit is written against
SUPPORTED_BINDINGS_MAJOR = 13
LAUNCH_ELEMENTS = 257  # an awkward size: not a multiple of the block or of the vector width


@dataclass
class Check:
    """One line of the report: ``status`` is ok / warn / fail / skip; ``fix`` says what to do."""

    name: str
    status: str
    detail: str
    fix: str = ""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# --- pure helpers ---------------------------------------------------------------------------------

def parse_version(text) -> tuple[int, ...] | None:
    """(major, minor[, patch]) from "13.3.1", "V13.0.88", "release 13.0, V13.0.88" or a tuple."""
    if text is None:
        return None
    if isinstance(text, (tuple, list)):
        return tuple(int(x) for x in text)
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", str(text))
    if not m:
        return None
    return tuple(int(g) for g in m.groups() if g is not None)


def bindings_driver_compat(bindings_version: str | None, driver_int: int) -> tuple[str, str, str]:
    """(status, detail, fix) for cuda-bindings against the driver's CUDA version (e.g. 13000).

    A driver runs software built for its own or an older CUDA major version; within one major
    version, newer bindings still work (minor-version compatibility) but cannot use APIs the
    driver does not have.
    """
    driver_major, driver_minor = driver_int // 1000, (driver_int % 1000) // 10
    v = parse_version(bindings_version)
    if v is None:
        return "warn", f"cuda-bindings version unknown; driver supports CUDA {driver_major}.{driver_minor}", ""
    major, minor = v[0], v[1] if len(v) > 1 else 0
    if major > driver_major:
        return ("fail",
                f"cuda-bindings {bindings_version} is for CUDA {major}.x but the driver supports only "
                f"CUDA {driver_major}.{driver_minor}",
                f"update the NVIDIA driver to one for CUDA {major}.x, or install cuda-bindings {driver_major}.x")
    if major == driver_major and minor > driver_minor:
        return ("ok",
                f"cuda-bindings {bindings_version} on a CUDA {driver_major}.{driver_minor} driver "
                f"(minor-version compatibility: APIs newer than {driver_major}.{driver_minor} are unavailable)",
                "")
    return "ok", f"cuda-bindings {bindings_version} fits the CUDA {driver_major}.{driver_minor} driver", ""


def nvcc_driver_compat(nvcc_version, driver_int: int | None) -> tuple[str, str]:
    """(status, note) for nvcc against the driver: PTX from a newer nvcc cannot be JIT-compiled
    by an older driver (CUDA_ERROR_UNSUPPORTED_PTX_VERSION); cubins for the GPU still load."""
    v = parse_version(nvcc_version)
    if v is None or driver_int is None:
        return "ok", ""
    driver = (driver_int // 1000, (driver_int % 1000) // 10)
    if tuple(v[:2]) > driver:
        return ("warn",
                f"nvcc {v[0]}.{v[1]} is newer than the driver (CUDA {driver[0]}.{driver[1]}): PTX it emits "
                "cannot be JIT-compiled here; cubins for this GPU's architecture still load")
    return "ok", ""


def parse_arch(arch: str) -> tuple[int, int, bool]:
    """"90" -> (9, 0, False); "100" -> (10, 0, False); "90a" -> (9, 0, True) (arch-specific)."""
    text = str(arch).lower().removeprefix("sm_").removeprefix("compute_")
    specific = text.endswith(("a", "f"))
    digits = text.rstrip("af")
    return int(digits[:-1]), int(digits[-1]), specific


def arch_coverage(gpu_arch: str, archs, ptx_archs, arch_specific=()) -> tuple[str, str]:
    """(status, how) a fatbin built for ``archs`` (cubins) and ``ptx_archs`` (PTX) runs on a GPU
    of ``gpu_arch`` (e.g. "90").

    A cubin runs on its own major version at an equal or higher minor (sm_80 on 8.6); an
    arch-specific cubin (sm_90a) only on exactly that GPU; PTX is JIT-compiled by the driver
    for any GPU at or above its version. "fail" when nothing fits.
    """
    major, minor, _ = parse_arch(gpu_arch)
    for a in arch_specific:
        am, an, _ = parse_arch(a)
        if (am, an) == (major, minor):
            return "ok", f"cubin sm_{a}"
    cubins = sorted((parse_arch(a)[:2] for a in archs if not parse_arch(a)[2]), reverse=True)
    for am, an in cubins:
        if am == major and an <= minor:
            return "ok", f"cubin sm_{am}{an}"
    ptx = sorted((parse_arch(a)[:2] for a in ptx_archs), reverse=True)
    for am, an in ptx:
        if (am, an) <= (major, minor):
            return "ok", f"PTX compute_{am}{an}, JIT-compiled by the driver on first load"
    return "fail", f"no cubin or PTX usable on sm_{major}{minor}"


def summarize(checks: list[Check]) -> dict:
    """The report document: every check, the counts per status and ``ok`` (no failures)."""
    counts = {s: 0 for s in STATUSES}
    for c in checks:
        counts[c.status] = counts.get(c.status, 0) + 1
    return {
        "schema": SCHEMA,
        "ok": counts["fail"] == 0,
        "counts": counts,
        "checks": [asdict(c) for c in checks],
    }


# --- the checks -----------------------------------------------------------------------------------

def _package_version(dist: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return None


def _check_python() -> Check:
    return Check("python", "ok", f"Python {platform.python_version()} ({sys.executable}) on {platform.platform()}")


def _check_cuda_core() -> Check:
    try:
        import cuda.core as core
    except Exception as exc:
        return Check("cuda-core", "fail", f"cuda.core cannot be imported: {_one_line(exc)}",
                     "pip install 'cuda-core==1.2.*'")
    version = _package_version("cuda-core") or getattr(core, "__version__", None)
    v = parse_version(version)
    if v is not None and tuple(v[:2]) != SUPPORTED_CUDA_CORE:
        want = ".".join(map(str, SUPPORTED_CUDA_CORE))
        return Check("cuda-core", "warn", f"cuda-core {version}; the kit is written and tested against {want}.x",
                     f"pip install 'cuda-core=={want}.*' if something misbehaves")
    return Check("cuda-core", "ok", f"cuda-core {version}")


def _check_cuda_bindings() -> tuple[Check, str | None]:
    try:
        import cuda.bindings as bindings
    except Exception as exc:
        return (Check("cuda-bindings", "fail", f"cuda.bindings cannot be imported: {_one_line(exc)}",
                      f"pip install 'cuda-bindings=={SUPPORTED_BINDINGS_MAJOR}.*'"), None)
    version = _package_version("cuda-bindings") or getattr(bindings, "__version__", None)
    v = parse_version(version)
    if v is not None and v[0] != SUPPORTED_BINDINGS_MAJOR:
        return (Check("cuda-bindings", "warn",
                      f"cuda-bindings {version}; the kit is written for {SUPPORTED_BINDINGS_MAJOR}.x",
                      f"pip install 'cuda-bindings=={SUPPORTED_BINDINGS_MAJOR}.*'"), version)
    return Check("cuda-bindings", "ok", f"cuda-bindings {version}"), version


_DRIVER_FIX = "install the NVIDIA driver (nvidia-smi should list your GPU), then run this again"


def _check_driver() -> tuple[Check, int | None]:
    try:
        version = drv.version()
    except NoDeviceError as exc:  # libcuda loaded and initialised, but no device is visible
        return Check("driver", "ok", f"loaded, but {_one_line(exc)}"), None
    except NoDriverError as exc:  # what is missing here, what to do in the fix: each said once
        return (Check("driver", "fail", f"no NVIDIA driver: {exc.reason}", _DRIVER_FIX), None)
    except CudaKitError as exc:
        return Check("driver", "fail", _one_line(exc), _DRIVER_FIX), None
    display = query._nvml_driver_version()
    detail = f"CUDA {query.format_cuda_version(version)} driver" + (f" (display driver {display})" if display else "")
    return Check("driver", "ok", detail), version


_DEVICES_FIX = "make the GPU visible to this process (the detail says what hides it), then run this again"


def _check_devices() -> tuple[Check, list]:
    # what hides the GPUs is explained once, by errors.visible_devices_hint, in the detail
    try:
        devs = _device.devices()
    except CudaKitError as exc:
        return Check("devices", "fail", visible_devices_hint(_one_line(exc)), _DEVICES_FIX), []
    if not devs:
        return Check("devices", "fail", visible_devices_hint("the driver reports no CUDA device"), _DEVICES_FIX), []
    names = "; ".join(f"{d.ordinal}: {d.name} (sm_{d.arch})" for d in devs)
    visible = os.environ.get(VISIBLE_DEVICES_ENV)
    note = f" ({VISIBLE_DEVICES_ENV}={visible!r})" if visible is not None else ""
    return Check("devices", "ok", f"{len(devs)} visible: {names}{note}"), devs


def _check_nvcc(driver_int: int | None) -> tuple[Check, bool]:
    try:  # imported here so that a broken install is this check's failure, not doctor's crash
        from . import build

        nvcc = build.find_nvcc()
    except ImportError as exc:
        return Check("nvcc", "fail", f"cudart_kit.build cannot be imported: {_one_line(exc)}",
                     "reinstall cudart-kit"), False
    except CudaKitError as exc:  # find_nvcc may refuse with a BuildError instead of returning None
        nvcc, reason = None, _one_line(exc)
    else:
        reason = ""
    if not nvcc:
        return (Check("nvcc", "warn",
                      "nvcc not found" + (f": {reason}" if reason else "") +
                      "; only needed to build the kernels from a source checkout",
                      "install the CUDA toolkit 13.x or set CUDA_HOME (a wheel carries prebuilt kernels)"),
                False)
    try:
        version = build.nvcc_version(nvcc)
    except Exception as exc:
        return Check("nvcc", "warn", f"{nvcc} does not report its version: {_one_line(exc)}",
                     "check the CUDA toolkit installation"), True
    status, note = nvcc_driver_compat(version, driver_int)
    detail = f"{nvcc} (version {version})" + (f"; {note}" if note else "")
    return Check("nvcc", status, detail,
                 "use an nvcc no newer than the driver, or update the driver" if status == "warn" else ""), True


def _check_kernels(have_nvcc: bool, gpu_archs: list[str]) -> tuple[Check, bool]:
    """Every kernel artifact present, fresh (sources, flags, nvcc) and built for each GPU here."""
    try:  # (see _check_nvcc)
        from . import build

        all_specs = build.specs()
        names = sorted(all_specs)
        states = {name: build.status(name) for name in names}
    except Exception as exc:
        return Check("kernels", "fail", f"cannot read the kernel artifacts: {_one_line(exc)}",
                     "run `cudart-kit build --force`"), False
    if not names:
        return Check("kernels", "fail", "no kernel sources or artifacts found", "reinstall cudart-kit"), False
    bad = {n: s for n, s in states.items() if getattr(s, "state", None) != "fresh"}
    if bad:
        what = "; ".join(f"{n}: {getattr(s, 'state', '?')}" + (f" ({s.reason})" if getattr(s, "reason", "") else "")
                         for n, s in bad.items())
        fix = ("run `cudart-kit build`" if have_nvcc
               else "install nvcc (CUDA toolkit 13.x) and run `cudart-kit build`, or install the wheel, which carries the kernels")
        return Check("kernels", "fail", what, fix), False
    how: dict[str, str] = {}
    for arch in sorted(set(gpu_archs)):
        for name in names:
            spec = all_specs[name]
            status, text = arch_coverage(arch, getattr(spec, "archs", ()), getattr(spec, "ptx_archs", ()),
                                         getattr(spec, "arch_specific", ()))
            if status == "fail":
                return (Check("kernels", "fail", f"{name}: {text} (this GPU is sm_{arch})",
                              f"add \"{arch}\" to the kernel architectures in cudart_kit/build.py and run "
                              "`cudart-kit build`"), False)
            how.setdefault(arch, text)
    runs = "; ".join(f"sm_{a} runs {t}" for a, t in how.items())
    return Check("kernels", "ok", f"{len(names)} artifact(s) fresh: {', '.join(names)}" + (f"; {runs}" if runs else "")), True


def _check_launch(dev) -> Check:
    """vector add on fresh random data, output poisoned first, compared with numpy."""
    import numpy as np

    try:  # imported here so that a module that fails to import is this check's failure
        from .memory import empty, memset, to_device
        from .ops import vector
        from .stream import Stream

        rng = np.random.default_rng()
        x = rng.standard_normal(LAUNCH_ELEMENTS).astype(np.float32)
        y = rng.standard_normal(LAUNCH_ELEMENTS).astype(np.float32)
        with Stream.create(dev) as s:
            dx, dy = to_device(x, stream=s), to_device(y, stream=s)
            out = empty(LAUNCH_ELEMENTS, np.float32, stream=s)
            memset(out, 0xFF, stream=s)  # NaN everywhere: an element left unwritten shows up
            _, rec = vector.add(dx, dy, out, stream=s, timed=True)
            got = out.to_numpy(stream=s)  # synchronizes: a kernel fault surfaces here
            elapsed = rec.elapsed_ms()
            for a in (dx, dy, out):
                a.close()
    except Exception as exc:
        return Check("launch", "fail", f"vector add on device {dev.ordinal} failed: {_one_line(exc)}",
                     "rebuild the kernels (`cudart-kit build --force`); if it persists, check nvidia-smi "
                     "and run the GPU tests")
    if not np.allclose(got, x + y, rtol=1e-6, atol=1e-6):
        bad = int(np.count_nonzero(~np.isclose(got, x + y, rtol=1e-6, atol=1e-6)))
        return Check("launch", "fail",
                     f"vector add on device {dev.ordinal} ran but {bad} of {LAUNCH_ELEMENTS} results are wrong",
                     "rebuild the kernels (`cudart-kit build --force`) and run the GPU tests")
    return Check("launch", "ok",
                 f"vector add of {LAUNCH_ELEMENTS} float32 on device {dev.ordinal} (sm_{dev.arch}) "
                 f"matched numpy ({elapsed:.3f} ms)")


def _check_nvml(dev) -> Check:
    info = query.nvml_info(dev)
    if not info.get("available"):
        return Check("nvml", "warn", info.get("reason", "NVML not available") +
                     "; query shows driver attributes only (no live clocks, power, temperature)",
                     "NVML comes with the NVIDIA driver; a cuda-bindings with the nvml module enables it")
    return Check("nvml", "ok", "available through cuda.core.system")


def run_checks(device: int = 0) -> dict:
    """Run every check and return the report (schema cudart-kit/doctor/1). Never raises for an
    environment problem: each one is a failed check with its fix."""
    checks = [_check_python(), _check_cuda_core()]
    bindings_check, bindings_version = _check_cuda_bindings()
    checks.append(bindings_check)
    driver_check, driver_int = _check_driver()
    checks.append(driver_check)
    if driver_int is not None:
        status, detail, fix = bindings_driver_compat(bindings_version, driver_int)
        checks.append(Check("compatibility", status, detail, fix))
    else:
        checks.append(Check("compatibility", "skip", "driver version unknown"))
    if driver_check.status == "ok":
        devices_check, devs = _check_devices()
    else:
        # not a second failure: the driver check already says what is missing and the fix
        devices_check, devs = Check("devices", "skip", "no driver, so no GPU is usable"), []
    checks.append(devices_check)
    nvcc_check, have_nvcc = _check_nvcc(driver_int)
    checks.append(nvcc_check)
    kernels_check, fresh = _check_kernels(have_nvcc, [d.arch for d in devs])
    checks.append(kernels_check)
    dev = None
    if devs:
        if 0 <= device < len(devs):
            dev = devs[device]
        else:
            checks.append(Check("device", "fail", f"--device {device} does not exist: {len(devs)} visible",
                                f"choose 0..{len(devs) - 1}"))
    if dev is None:
        checks.append(Check("launch", "skip", "no usable device"))
    elif not fresh:
        checks.append(Check("launch", "skip", "kernels are not built or not fresh", "run `cudart-kit build`"))
    else:
        checks.append(_check_launch(dev))
    if dev is not None:
        checks.append(_check_nvml(dev))
    return summarize(checks)
