"""cudart_kit: a low-level CUDA toolkit for Python on cuda.core — devices, streams, events,
memory, modules, explicit launches and the kit's own kernels.

Importing makes no CUDA call: names are resolved lazily, and the driver is first touched by
the first call that needs it (so ``import cudart_kit`` works on machines without a GPU).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS = {
    # errors
    **{n: "errors" for n in (
        "CudaKitError", "NoDriverError", "NoDeviceError", "CudaDriverError", "CudaOutOfMemoryError",
        "ShapeError", "DTypeError", "DeviceMismatchError", "DeviceCapabilityError", "StreamError", "LaunchConfigError",
        "ArgumentError", "KernelNotFoundError", "IPCError", "MissingExtraError", "NcclError", "RankError",
        "PeerAccessError", "ArtifactError", "StaleArtifactError",
        "MissingArtifactError", "BuildError", "NotReadyError", "UntimedError", "ClosedError", "InvalidImageError", "UnsupportedImageError")},
    # runtime
    "Device": "device", "devices": "device", "device_count": "device", "get_device": "device",
    "Stream": "stream", "as_stream": "stream",
    "Event": "event", "TimingRecord": "event",
    "Array": "memory", "empty": "memory", "empty_like": "memory", "zeros": "memory",
    "to_device": "memory", "asarray": "memory", "copy": "memory", "memset": "memory",
    "empty_shareable": "memory", "copy_peer": "memory",
    "census": "accounting",
    "Module": "module", "Kernel": "module", "load_kit_module": "module",
    "launch": "launcher", "prepare": "launcher", "PreparedLaunch": "launcher", "benchmark": "bench",
    "BenchResult": "bench", "blocks_for": "launcher",
}

_SUBMODULES = ("ops", "graph", "build", "accounting", "trace", "experiments", "collectives")

__all__ = sorted(_EXPORTS) + list(_SUBMODULES) + ["__version__"]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'cudart_kit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
