"""Device query: what the CUDA sample deviceQuery printed, and more, as plain JSON-ready dicts.

CUDA 13 removed the clock and several other fields from ``cudaDeviceProp`` (it broke the
sample, NVIDIA/cuda-samples#382), so everything here is read from driver attributes
(``cuDeviceGetAttribute``), with NVML extras (live clocks, PCIe link, power, temperature, MIG
mode) through ``cuda.core.system`` where it is available. The arithmetic of the derived
figures (theoretical memory bandwidth, FP32 peak, PCIe bandwidth) is pure and needs no GPU.
``cli.py`` formats what these functions return; the JSON schemas are documented in docs/cli.md.
"""

from __future__ import annotations

import os

from . import _driver as drv
from . import device as _device  # called through the module: tests stand fake devices in
from .errors import VISIBLE_DEVICES_ENV, CudaKitError

__all__ = [
    "SCHEMA_DEVICES",
    "SCHEMA_QUERY",
    "DEVICE_QUERY_ATTRIBUTES",
    "FP32_CORES_PER_SM",
    "COMPUTE_MODES",
    "PCIE_GBPS_PER_LANE",
    "fp32_cores_per_sm",
    "theoretical_memory_bandwidth_gbps",
    "fp32_peak_tflops",
    "pcie_bandwidth_gbps",
    "format_cuda_version",
    "versions",
    "device_summary",
    "devices_report",
    "device_record",
    "nvml_info",
    "peer_matrix",
    "query_report",
]

SCHEMA_DEVICES = "cudart-kit/devices/1"
SCHEMA_QUERY = "cudart-kit/query/1"

# The driver attributes behind every line of deviceQuery (and a few it should have printed),
# by their CUdevice_attribute names without the prefix. JSON "properties" uses these names, so
# they stay stable as long as the driver's names do.
DEVICE_QUERY_ATTRIBUTES = (
    "compute_capability_major",
    "compute_capability_minor",
    "multiprocessor_count",
    "clock_rate",  # kHz, the maximum SM clock
    "memory_clock_rate",  # kHz, the peak memory clock
    "global_memory_bus_width",  # bits
    "l2_cache_size",
    "max_persisting_l2_cache_size",
    "maximum_texture1d_width",
    "maximum_texture2d_width",
    "maximum_texture2d_height",
    "maximum_texture3d_width",
    "maximum_texture3d_height",
    "maximum_texture3d_depth",
    "maximum_texture1d_layered_width",
    "maximum_texture1d_layered_layers",
    "maximum_texture2d_layered_width",
    "maximum_texture2d_layered_height",
    "maximum_texture2d_layered_layers",
    "total_constant_memory",
    "max_shared_memory_per_block",
    "max_shared_memory_per_block_optin",
    "max_shared_memory_per_multiprocessor",
    "reserved_shared_memory_per_block",
    "max_registers_per_block",
    "max_registers_per_multiprocessor",
    "warp_size",
    "max_threads_per_multiprocessor",
    "max_threads_per_block",
    "max_blocks_per_multiprocessor",
    "max_block_dim_x",
    "max_block_dim_y",
    "max_block_dim_z",
    "max_grid_dim_x",
    "max_grid_dim_y",
    "max_grid_dim_z",
    "max_pitch",
    "texture_alignment",
    "surface_alignment",
    "gpu_overlap",
    "async_engine_count",
    "concurrent_kernels",
    "kernel_exec_timeout",
    "integrated",
    "can_map_host_memory",
    "ecc_enabled",
    "unified_addressing",
    "managed_memory",
    "concurrent_managed_access",
    "pageable_memory_access",
    "compute_preemption_supported",
    "cooperative_launch",
    "cooperative_multi_device_launch",
    "stream_priorities_supported",
    "memory_pools_supported",
    "cluster_launch",
    "host_native_atomic_supported",
    "single_to_double_precision_perf_ratio",
    "multi_gpu_board",
    "tcc_driver",
    "pci_domain_id",
    "pci_bus_id",
    "pci_device_id",
    "compute_mode",
    "mps_enabled",
)

# FP32 lanes (CUDA cores) per multiprocessor by compute capability, as the CUDA samples'
# helper table has them. Unknown architectures give None rather than a guess.
FP32_CORES_PER_SM = {
    (3, 0): 192, (3, 2): 192, (3, 5): 192, (3, 7): 192,
    (5, 0): 128, (5, 2): 128, (5, 3): 128,
    (6, 0): 64, (6, 1): 128, (6, 2): 128,
    (7, 0): 64, (7, 2): 64, (7, 5): 64,
    (8, 0): 64, (8, 6): 128, (8, 7): 128, (8, 9): 128,
    (9, 0): 128,
    (10, 0): 128, (10, 1): 128, (10, 3): 128,
    (11, 0): 128,
    (12, 0): 128, (12, 1): 128,
}

# CUcomputemode values (1, "exclusive thread", no longer exists).
COMPUTE_MODES = {
    0: "default",
    2: "prohibited",
    3: "exclusive_process",
}

COMPUTE_MODE_TEXT = {
    "default": "Default (multiple host threads can use the device simultaneously)",
    "prohibited": "Prohibited (no host thread can use the device)",
    "exclusive_process": "Exclusive Process (one process at a time can use the device)",
}

# Usable bandwidth of one PCIe lane, one direction, in GB/s, after line encoding
# (8b/10b up to gen 2, 128b/130b for gen 3-5, FLIT for gen 6).
PCIE_GBPS_PER_LANE = {1: 0.25, 2: 0.5, 3: 0.985, 4: 1.969, 5: 3.938, 6: 7.563}


# --- derived figures (pure) -------------------------------------------------------------------

def fp32_cores_per_sm(major: int, minor: int) -> int | None:
    """FP32 cores per multiprocessor for a compute capability, or None when unknown."""
    return FP32_CORES_PER_SM.get((int(major), int(minor)))


def theoretical_memory_bandwidth_gbps(memory_clock_khz: int | None, bus_width_bits: int | None) -> float | None:
    """Peak DRAM bandwidth in GB/s (1e9 bytes/s): 2 transfers per clock (DDR) x clock x bus bytes.

    ``memory_clock_khz`` is the driver's ``memory_clock_rate`` attribute, ``bus_width_bits``
    its ``global_memory_bus_width``. None when either is missing or zero.
    """
    if not memory_clock_khz or not bus_width_bits:
        return None
    return 2.0 * memory_clock_khz * 1e3 * (bus_width_bits / 8) / 1e9


def fp32_peak_tflops(sm_count: int | None, cores_per_sm: int | None, clock_khz: int | None) -> float | None:
    """Peak FP32 TFLOP/s: SMs x FP32 cores per SM x 2 (a fused multiply-add) x SM clock."""
    if not sm_count or not cores_per_sm or not clock_khz:
        return None
    return sm_count * cores_per_sm * 2.0 * clock_khz * 1e3 / 1e12


def pcie_bandwidth_gbps(generation: int | None, width: int | None) -> float | None:
    """Theoretical PCIe bandwidth per direction in GB/s for a link generation and lane count."""
    if not generation or not width:
        return None
    per_lane = PCIE_GBPS_PER_LANE.get(int(generation))
    return None if per_lane is None else per_lane * int(width)


def format_cuda_version(version: int | None) -> str | None:
    """13000 -> "13.0", 12080 -> "12.8" (the encoding of cuDriverGetVersion)."""
    if version is None:
        return None
    return f"{version // 1000}.{(version % 1000) // 10}"


# --- gathering (needs the driver) -------------------------------------------------------------

def _package_version(dist: str, module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # not installed as a distribution (e.g. a source tree on sys.path)
        try:
            import importlib

            return getattr(importlib.import_module(module), "__version__", None)
        except Exception:
            return None


def _runtime_version() -> int | None:
    """The CUDA runtime version cuda.bindings was built for (no libcudart needed)."""
    try:
        from cuda.bindings import runtime

        err, value = runtime.cudaRuntimeGetVersion()
        return int(value) if int(err) == 0 else None
    except Exception:
        return None


def _nvml_driver_version() -> str | None:
    """The display driver's version string, e.g. "580.159.04", through NVML when available."""
    try:
        from cuda.core import system

        return ".".join(f"{p:02d}" if i else str(p) for i, p in enumerate(system.get_kernel_mode_driver_version()))
    except Exception:
        return None


def versions() -> dict:
    """Driver / runtime / package versions. Raises NoDriverError when the driver is missing."""
    driver_int = drv.version()
    runtime_int = _runtime_version()
    return {
        "driver_cuda_version": format_cuda_version(driver_int),
        "driver_cuda_version_int": driver_int,
        "driver_version": _nvml_driver_version(),
        "runtime_cuda_version": format_cuda_version(runtime_int),
        "runtime_cuda_version_int": runtime_int,
        "cuda_core_version": _package_version("cuda-core", "cuda.core"),
        "cuda_bindings_version": _package_version("cuda-bindings", "cuda.bindings"),
    }


def _visible_devices() -> str | None:
    """The variable's value for the JSON documents (what explains it in errors: errors.visible_devices_hint)."""
    return os.environ.get(VISIBLE_DEVICES_ENV)


def _total_memory(dev) -> int:
    return int(drv.call("cuDeviceTotalMem", dev.ordinal))


def _identity(dev) -> dict:
    major, minor = dev.compute_capability
    info = dev.memory_info()
    return {
        "index": dev.ordinal,
        "name": dev.name,
        "uuid": str(dev.uuid),
        "pci_bus_id": str(dev.pci_bus_id),
        "compute_capability": f"{major}.{minor}",
        "arch": f"sm_{major}{minor}",
        "total_memory_bytes": _total_memory(dev),
        "free_memory_bytes": int(info.free_bytes),
    }


def device_summary(dev) -> dict:
    """One row of ``cudart-kit devices``: identity, memory, SMs and clocks of a kit Device."""
    attrs = dev.attributes()
    row = _identity(dev)
    clock = attrs.get("clock_rate")
    mem_clock = attrs.get("memory_clock_rate")
    row.update({
        "multiprocessor_count": attrs.get("multiprocessor_count"),
        "clock_rate_mhz": None if clock is None else clock // 1000,
        "memory_clock_rate_mhz": None if mem_clock is None else mem_clock // 1000,
        "memory_bus_width_bits": attrs.get("global_memory_bus_width"),
    })
    return row


def devices_report() -> dict:
    """The ``cudart-kit devices`` document (schema cudart-kit/devices/1)."""
    v = versions()
    return {
        "schema": SCHEMA_DEVICES,
        "driver_cuda_version": v["driver_cuda_version"],
        "driver_version": v["driver_version"],
        "cuda_visible_devices": _visible_devices(),
        "devices": [device_summary(d) for d in _device.devices()],
    }


def _nvml_call(out: dict, key: str, fn) -> None:
    """Store ``fn()`` under ``key``; None when this GPU / driver does not report it."""
    try:
        out[key] = fn()
    except Exception:
        out[key] = None


def nvml_info(dev) -> dict:
    """NVML figures for a kit Device through cuda.core.system, or ``{"available": False, "reason"}``.

    Every figure is optional: GPUs and drivers differ in what they report (MIG instances have
    no PCI info, some boards no power sensor), so a figure that fails is None, not an error.
    """
    try:
        sysdev = dev.core.to_system_device()
    except Exception as exc:  # no NVML, cuda-bindings without a compatible nvml module, MIG...
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return {"available": False, "reason": f"NVML not available: {reason}"}
    out: dict = {"available": True}
    _nvml_call(out, "sm_clock_mhz", lambda: int(sysdev.get_clock("sm").get_current_mhz()))
    _nvml_call(out, "sm_clock_max_mhz", lambda: int(sysdev.get_clock("sm").get_max_mhz()))
    _nvml_call(out, "memory_clock_mhz", lambda: int(sysdev.get_clock("memory").get_current_mhz()))
    _nvml_call(out, "memory_clock_max_mhz", lambda: int(sysdev.get_clock("memory").get_max_mhz()))
    _nvml_call(out, "graphics_clock_mhz", lambda: int(sysdev.get_clock("graphics").get_current_mhz()))
    _nvml_call(out, "pcie_link_generation", lambda: int(sysdev.pci_info.current_link_generation))
    _nvml_call(out, "pcie_link_width", lambda: int(sysdev.pci_info.current_link_width))
    _nvml_call(out, "pcie_link_generation_max", lambda: int(sysdev.pci_info.link_generation))
    _nvml_call(out, "pcie_link_width_max", lambda: int(sysdev.pci_info.max_link_width))
    _nvml_call(out, "temperature_c", lambda: int(sysdev.temperature.get_sensor()))
    _nvml_call(out, "performance_state", lambda: sysdev.performance_state)
    _nvml_call(out, "persistence_mode", lambda: bool(sysdev.is_persistence_mode_enabled))
    _nvml_call(out, "mig_mode", lambda: bool(sysdev.mig.mode))
    _nvml_call(out, "is_mig_device", lambda: bool(sysdev.mig.is_mig_device))

    def power(field: str):
        from cuda.core.system.typing import FieldId

        values = sysdev.get_field_values([getattr(FieldId, field)])
        return round(float(values[0].value) / 1000.0, 1)  # NVML reports milliwatts

    _nvml_call(out, "power_draw_w", lambda: power("DEV_POWER_INSTANT"))
    _nvml_call(out, "power_limit_w", lambda: power("DEV_POWER_CURRENT_LIMIT"))
    return out


def peer_matrix(devs) -> list[list[bool]]:
    """``m[i][j]``: device i can access device j's memory directly (the diagonal is True)."""
    return [[a.can_access_peer(b) for b in devs] for a in devs]


def device_record(dev, *, all_attributes: bool = False, nvml: bool = True) -> dict:
    """Everything ``cudart-kit query`` shows for one kit Device (see docs/cli.md for the keys).

    ``properties`` holds the deviceQuery attributes by driver name (None where this driver
    does not report one); ``attributes`` (with ``all_attributes``) every attribute it reports.
    """
    attrs = dev.attributes()
    rec = _identity(dev)
    major, minor = dev.compute_capability
    sms = attrs.get("multiprocessor_count")
    cores = fp32_cores_per_sm(major, minor)
    mode = attrs.get("compute_mode")
    rec.update({
        "fp32_cores_per_multiprocessor": cores,
        "fp32_cores": None if cores is None or sms is None else cores * sms,
        "compute_mode": COMPUTE_MODES.get(mode, f"unknown ({mode})") if mode is not None else None,
        "properties": {name: attrs.get(name) for name in DEVICE_QUERY_ATTRIBUTES},
    })
    nv = nvml_info(dev) if nvml else {"available": False, "reason": "NVML not queried (--no-nvml)"}
    rec["derived"] = {
        "theoretical_memory_bandwidth_gbps": theoretical_memory_bandwidth_gbps(
            attrs.get("memory_clock_rate"), attrs.get("global_memory_bus_width")),
        "fp32_peak_tflops": fp32_peak_tflops(sms, cores, attrs.get("clock_rate")),
        "pcie_bandwidth_gbps": pcie_bandwidth_gbps(nv.get("pcie_link_generation"), nv.get("pcie_link_width")),
    }
    rec["nvml"] = nv
    if all_attributes:
        rec["attributes"] = dict(sorted(attrs.items()))
    return rec


def query_report(device: int | None = None, *, all_attributes: bool = False, nvml: bool = True) -> dict:
    """The ``cudart-kit query`` document (schema cudart-kit/query/1).

    ``device``: one ordinal, or None for every visible device. The peer-access matrix always
    covers every visible device. Raises NoDriverError / NoDeviceError (kit errors) when the
    driver or the device is missing.
    """
    v = versions()
    every = _device.devices()
    chosen = every if device is None else [_device.get_device(device)]
    doc = {"schema": SCHEMA_QUERY, **v, "cuda_visible_devices": _visible_devices(),
           "device_count": len(every)}
    doc["devices"] = [device_record(d, all_attributes=all_attributes, nvml=nvml) for d in chosen]
    try:
        doc["peer_access"] = peer_matrix(every)
    except CudaKitError:  # a driver that cannot answer keeps the rest of the report
        doc["peer_access"] = None
    return doc
