"""Modules (cubin / PTX / fatbin from a path or bytes) and kernel lookup by name.

The kit's own kernels and a user's modules go through the same path: :func:`load_kit_module`
only adds the artifact freshness check of :mod:`cudart_kit.build`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import weakref

from . import _census
from . import image
from . import _driver as drv
from .device import Device, get_device
from .errors import CudaKitError, KernelNotFoundError, translate
from .image import detect_kind  # re-exported: the logic lives with the image inspector

__all__ = ["Module", "Kernel", "load_kit_module", "detect_kind"]

_KINDS = ("cubin", "ptx", "fatbin")


class Module:
    """A loaded code object. Kernels are looked up by name with :meth:`kernel`."""

    def __init__(self, *_a, **_k):
        raise TypeError("use Module.load(path_or_bytes)")

    @classmethod
    def load(cls, source: "str | os.PathLike | bytes | bytearray", *, kind: str | None = None, name: str | None = None,
             device: "Device | int | None" = None) -> "Module":
        """Load a cubin, PTX or fatbin from a file path or bytes. ``kind`` is detected when omitted.

        The image is checked before the driver sees it (a truncated or corrupt image would crash
        the process inside the driver): :class:`InvalidImageError` names what is wrong. With
        ``device``, an image with no code for that device's architecture is refused with
        :class:`DeviceCapabilityError` listing the targets it has; without it the driver's
        refusal (CUDA_ERROR_NO_BINARY_FOR_GPU) surfaces at the first kernel lookup.

        Loading is context-independent (cuLibraryLoad*); PTX is JIT-compiled by the driver for
        the device it is first used on. The bytes that were checked are the bytes loaded; a
        fatbin's compressed entries are expanded and checked too (:func:`image.validate`)."""
        return cls._load(source, kind, name, device, expand=True)

    @classmethod
    def _load(cls, source, kind: str | None, name: str | None, device, *, expand: bool) -> "Module":
        """Module.load; ``expand=False`` for the kit's own artifacts, whose bytes build.ensure has
        just matched against the manifest's SHA-256 (their compressed entries are not re-expanded)."""
        from cuda.core import ObjectCode

        is_bytes = isinstance(source, (bytes, bytearray, memoryview))
        if not is_bytes:
            path = Path(source)
            if not path.exists():
                raise FileNotFoundError(f"module file not found: {path}")
            kind = kind or detect_kind(path=path)
            label = name or path.name
            payload = path.read_bytes()
        else:
            payload = bytes(source)
            kind = kind or detect_kind(data=payload)
            label = name or f"<{kind} bytes>"
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        # A malformed image can crash the driver (SIGSEGV on a truncated cubin): check it first.
        info = image.validate(payload, kind, label=label, expand=expand)
        drv.driver()  # a clear NoDriverError before cuda.core tries to load
        if device is not None:
            image.check_arch(info, *get_device(device).compute_capability, label=label)
        loader = {"cubin": ObjectCode.from_cubin, "ptx": ObjectCode.from_ptx, "fatbin": ObjectCode.from_fatbin}[kind]
        try:
            code = loader(payload, name=label)
        except Exception as exc:
            raise translate(exc, "cuLibraryLoadData", f"loading {label}") from exc
        self = object.__new__(cls)
        self.core = code
        self.kind = kind
        self.name = label
        self._kernels: dict[str, Kernel] = {}
        self._lock = threading.Lock()
        _census.add("modules", 1)
        weakref.finalize(self, _census.add, "modules", -1)
        return self

    def kernel_names(self) -> list[str]:
        """Every kernel entry point in the module."""
        try:
            handle = int(self.core.handle)
        except Exception as exc:
            raise translate(exc, "cuLibraryLoadData", f"loading {self.name}") from exc
        return drv.library_kernel_names(handle)

    def kernel(self, name: str) -> "Kernel":
        """The kernel called ``name``; KernelNotFoundError lists the names the module has."""
        k = self._kernels.get(name)
        if k is not None:
            return k
        with self._lock:
            k = self._kernels.get(name)
            if k is None:
                try:
                    core = self.core.get_kernel(name)
                except Exception as exc:
                    err = translate(exc, "cuLibraryGetKernel", f"looking up {name!r}")
                    if getattr(err, "result", "") in ("CUDA_ERROR_NOT_FOUND", "CUDA_ERROR_INVALID_VALUE") or not isinstance(err, CudaKitError):
                        try:
                            names = self.kernel_names()
                        except CudaKitError:
                            names = []
                        if name not in names:
                            raise KernelNotFoundError(name, self.name, names) from None
                    raise err from exc
                k = self._kernels[name] = Kernel(self, name, core)
        return k

    def __getitem__(self, name: str) -> "Kernel":
        return self.kernel(name)

    def preload(self, device: "Device | int | None" = None) -> int:
        """Load every kernel of the module into ``device``'s context now; returns how many.

        Under CUDA's lazy loading (the driver's default) a kernel's code enters a context at
        its first launch, and that load waits for work already queued on the device: a first
        launch queued behind a still-blocked host callback holds the calling thread until the
        callback returns. Preloading before such work keeps the first launch asynchronous."""
        dev = get_device(device)
        names = self.kernel_names()
        for n in names:
            self.kernel(n).preload(dev)
        return len(names)

    def __repr__(self) -> str:
        return f"<cudart_kit.Module {self.name} ({self.kind})>"


class Kernel:
    """One kernel entry point. Holds its Module, so the module outlives every kernel in use."""

    __slots__ = ("module", "name", "core", "_param_sizes", "_max_threads", "_shared_set")

    def __init__(self, module: Module, name: str, core):
        self.module = module
        self.name = name
        self.core = core
        self._param_sizes: tuple | None = None
        self._max_threads: dict[int, int] = {}
        self._shared_set: dict[int, int] = {}

    @property
    def param_sizes(self) -> tuple[int, ...]:
        """Byte size of each parameter, from the driver (cuKernelGetParamInfo)."""
        sizes = self._param_sizes
        if sizes is None:
            try:
                info = self.core.arguments_info
            except Exception as exc:
                raise translate(exc, "cuKernelGetParamInfo", f"reading the parameters of {self.name}") from exc
            sizes = self._param_sizes = tuple(int(p.size if hasattr(p, "size") else p[1]) for p in info)
        return sizes

    def max_threads_per_block(self, device: Device) -> int:
        """The most threads per block this kernel can launch with on ``device`` (registers decide)."""
        v = self._max_threads.get(device.ordinal)
        if v is None:
            with device.activate():
                try:
                    v = int(self.core.attributes[device.ordinal].max_threads_per_block)
                except Exception as exc:
                    raise translate(exc, "cuKernelGetAttribute") from exc
            self._max_threads[device.ordinal] = v
        return v

    def attributes(self, device: "Device | int | None" = None) -> dict:
        """Registers, static shared / local / constant memory, max threads, PTX and binary versions."""
        dev = get_device(device)
        with dev.activate():
            a = self.core.attributes[dev.ordinal]
            names = ("num_regs", "shared_size_bytes", "local_size_bytes", "const_size_bytes",
                     "max_threads_per_block", "max_dynamic_shared_size_bytes", "ptx_version", "binary_version")
            try:
                return {n: int(getattr(a, n)) for n in names}
            except Exception as exc:
                raise translate(exc, "cuKernelGetAttribute") from exc

    def preload(self, device: "Device | int | None" = None) -> None:
        """Load this kernel's code into ``device``'s context (cuKernelGetFunction + cuFuncLoad),
        so its first launch there does not wait for queued work (see :meth:`Module.preload`).
        ``device``: a Device, an ordinal or None (device 0), as :meth:`Module.preload`."""
        d = drv.driver()
        with get_device(device).activate():
            fn = drv.call("cuKernelGetFunction", d.CUkernel(int(self.core.handle)))
            drv.call("cuFuncLoad", fn)

    def ensure_dynamic_shared(self, device: Device, nbytes: int) -> None:
        """Raise the kernel's dynamic shared-memory limit when a launch needs more than 48 KiB."""
        if nbytes <= 48 * 1024 or self._shared_set.get(device.ordinal, 0) >= nbytes:
            return
        d = drv.driver()
        with device.activate():
            drv.call(
                "cuKernelSetAttribute",
                d.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                nbytes, d.CUkernel(int(self.core.handle)), device.ordinal,
            )
        self._shared_set[device.ordinal] = nbytes

    def launch(self, grid, block, *args, stream, shared_mem_bytes: int = 0, timed: bool = False):
        """Shorthand for :func:`cudart_kit.launch.launch` on this kernel."""
        from .launcher import launch

        return launch(self, grid, block, *args, stream=stream, shared_mem_bytes=shared_mem_bytes, timed=timed)

    def __repr__(self) -> str:
        return f"<cudart_kit.Kernel {self.name} from {self.module.name}>"


_kit_modules: dict[str, Module] = {}
_kit_lock = threading.Lock()


def load_kit_module(name: str) -> Module:
    """Load one of the kit's own artifacts (e.g. "vector"), after checking it is fresh.

    A missing or stale artifact is rebuilt when nvcc and the sources are present, otherwise
    refused with the command to run (never loaded silently)."""
    mod = _kit_modules.get(name)
    if mod is not None:
        return mod
    with _kit_lock:
        mod = _kit_modules.get(name)
        if mod is None:
            from . import build

            path = build.ensure(name)
            mod = _kit_modules[name] = Module._load(path, "fatbin", f"cudart_kit:{name}", None, expand=False)
    return mod



def kit_kernel(module: str, name: str) -> "Kernel":
    """A kernel of one of the kit's own artifacts (both lookups are cached)."""
    return load_kit_module(module).kernel(name)
