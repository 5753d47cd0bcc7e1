"""The exception hierarchy of cudart_kit and the translation of driver results.

Pure Python: importing this module touches no driver (setup.py and the build
pipeline import it on machines without a GPU).
"""

from __future__ import annotations

import os

__all__ = [
    "CudaKitError",
    "IPCError",
    "MissingExtraError",
    "NcclError",
    "RankError",
    "NCCL_RESULTS",
    "NoDriverError",
    "NoDeviceError",
    "CudaDriverError",
    "CudaOutOfMemoryError",
    "ShapeError",
    "DTypeError",
    "DeviceMismatchError",
    "DeviceCapabilityError",
    "PeerAccessError",
    "StreamError",
    "LaunchConfigError",
    "ArgumentError",
    "KernelNotFoundError",
    "ArtifactError",
    "StaleArtifactError",
    "MissingArtifactError",
    "BuildError",
    "NotReadyError",
    "UntimedError",
    "ClosedError",
    "InvalidImageError",
    "UnsupportedImageError",
    "DEFAULT_ADVICE",
    "VISIBLE_DEVICES_ENV",
    "visible_devices_hint",
]


class CudaKitError(Exception):
    """Root of every error cudart_kit raises on purpose."""


class NoDriverError(CudaKitError):
    """No usable NVIDIA driver (libcuda) on this machine.

    ``str()`` is one line: what is missing, then what to do. What the dependency reported
    (pathfinder's search notes, the ``cuInit`` result, an import error) is kept apart, in
    ``detail``, for ``--verbose`` and the CLI's JSON error object. Attributes: ``reason`` (what
    is missing), ``advice`` (what to do), ``detail`` (the dependency's words, "" when none),
    ``result`` (the CUresult name when ``cuInit`` returned one, else None).
    """

    ADVICE = "install the NVIDIA driver (nvidia-smi must work). Building kernels needs no GPU."

    def __init__(self, detail: str = ""):
        self.detail = " ".join(str(detail).split())
        self.result = self._result_in(self.detail)
        self.reason = (f"the NVIDIA driver did not initialise ({self.result})" if self.result
                       else "libcuda.so.1 could not be loaded")
        self.advice = self.ADVICE
        super().__init__(f"no NVIDIA driver: {self.reason}; {self.advice}")

    def __reduce__(self):
        return (type(self), (self.detail,))

    @staticmethod
    def _result_in(text: str) -> str | None:
        """The first ``CUDA_ERROR_...`` name in ``text``, or None."""
        idx = text.find("CUDA_ERROR_")
        if idx < 0:
            return None
        end = idx
        while end < len(text) and (text[end].isupper() or text[end].isdigit() or text[end] == "_"):
            end += 1
        return text[idx:end]


class NoDeviceError(CudaKitError):
    """The driver loaded but reports no usable GPU (or the index is out of range)."""


VISIBLE_DEVICES_ENV = "CUDA_VISIBLE_DEVICES"


def visible_devices_hint(message: str = "") -> str:
    """The kit's one explanation of ``CUDA_VISIBLE_DEVICES``, for a message about a missing or
    out-of-range device: ``message`` followed by ``"; "`` and the explanation (the explanation
    alone for an empty ``message``). It names the variable's value as the process has it now::

        unset:  "check nvidia-smi (CUDA_VISIBLE_DEVICES is not set: every GPU the driver reports is visible)"
        "":     "CUDA_VISIBLE_DEVICES='' hides every GPU from this process: unset it or list the GPUs to use"
        "1,3":  "CUDA_VISIBLE_DEVICES='1,3' limits this process to the GPUs it lists, numbered from 0 in
                 its order: unset or correct it, and check nvidia-smi"

    A ``message`` that already carries the explanation (it came through here once, e.g. a kit
    error's text) is returned unchanged, so layers that wrap an error never say it twice.
    Every module that explains the variable calls this (errors, _driver, device, doctor, cli).
    """
    visible = os.environ.get(VISIBLE_DEVICES_ENV)
    if visible is None:
        named = f"{VISIBLE_DEVICES_ENV} is not set"
        hint = f"check nvidia-smi ({named}: every GPU the driver reports is visible)"
    else:
        named = f"{VISIBLE_DEVICES_ENV}={visible!r}"
        if visible.strip() == "":
            hint = f"{named} hides every GPU from this process: unset it or list the GPUs to use"
        else:
            hint = (f"{named} limits this process to the GPUs it lists, numbered from 0 in its order: "
                    "unset or correct it, and check nvidia-smi")
    if not message:
        return hint
    if named in message:
        return message
    return f"{message}; {hint}"


# Driver results whose advice depends on which GPUs the process may see.
_VISIBLE_DEVICE_RESULTS = ("CUDA_ERROR_NO_DEVICE", "CUDA_ERROR_INVALID_DEVICE")

# Sentences a person can act on, for the results people actually meet.
DEFAULT_ADVICE = {
    "CUDA_ERROR_OUT_OF_MEMORY": "free device arrays you no longer need, or ask for less memory",
    "CUDA_ERROR_INVALID_VALUE": "an argument passed to the driver is out of range; check sizes, pointers and launch dimensions",
    "CUDA_ERROR_NOT_FOUND": "the named symbol is not in the module",
    "CUDA_ERROR_NO_BINARY_FOR_GPU": "the module has no code for this GPU's architecture; rebuild the kernels (`cudart-kit build`) with this architecture",
    "CUDA_ERROR_INVALID_PTX": "the PTX could not be compiled by this driver; the driver may be older than the nvcc that produced it",
    "CUDA_ERROR_UNSUPPORTED_PTX_VERSION": "the driver is older than the nvcc that produced this PTX; update the driver or rebuild with an older nvcc",
    "CUDA_ERROR_ILLEGAL_ADDRESS": "a kernel accessed memory it does not own; the context is now unusable and the process must restart. Run under compute-sanitizer to find the access",
    "CUDA_ERROR_LAUNCH_FAILED": "a kernel faulted; the context is now unusable and the process must restart",
    "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES": "the launch asks for more registers or shared memory than a multiprocessor has; use fewer threads per block",
    "CUDA_ERROR_INVALID_HANDLE": "a stream, event or module handle was invalid or already destroyed",
    "CUDA_ERROR_NOT_READY": "the work has not completed yet; synchronize first",
    "CUDA_ERROR_NO_DEVICE": "no CUDA-capable GPU is visible",  # + visible_devices_hint()
    "CUDA_ERROR_INVALID_DEVICE": "the device index does not exist",  # + visible_devices_hint()
    "CUDA_ERROR_NOT_INITIALIZED": "the driver was not initialised",
    "CUDA_ERROR_DEINITIALIZED": "the driver is shutting down",
    "CUDA_ERROR_INVALID_CONTEXT": "no CUDA context is current on this thread",
    "CUDA_ERROR_NOT_SUPPORTED": "this device or driver does not support the operation",
    "CUDA_ERROR_PEER_ACCESS_UNSUPPORTED": "these two GPUs cannot access each other's memory directly",
    "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED": "the operation is not allowed while the stream is being captured into a graph",
    "CUDA_ERROR_INSUFFICIENT_DRIVER": "the driver is older than the CUDA version this software needs; update the NVIDIA driver",
}


class CudaDriverError(CudaKitError):
    """A CUDA driver API call failed.

    Attributes: ``result`` (the CUresult name, e.g. ``CUDA_ERROR_INVALID_VALUE``),
    ``code`` (its integer value), ``api`` (the driver function that failed).
    """

    def __init__(self, result: str, code: int, api: str, advice: str | None = None, context: str = ""):
        self.result = result
        self.code = code
        self.api = api
        if advice is None:
            advice = DEFAULT_ADVICE.get(result, "")
            if result in _VISIBLE_DEVICE_RESULTS:
                advice = visible_devices_hint(advice)
        msg = f"{api} failed with {result} ({code})"
        if context:
            msg += f" while {context}"
        if advice:
            msg += f": {advice}"
        self.advice = advice
        super().__init__(msg)

    def __reduce__(self):
        return (type(self), (self.result, self.code, self.api, self.advice))


class CudaOutOfMemoryError(CudaDriverError, MemoryError):
    """CUDA_ERROR_OUT_OF_MEMORY: also a MemoryError."""


class ShapeError(CudaKitError, ValueError):
    """Array shapes (or sizes) do not fit the operation."""


class DTypeError(CudaKitError, TypeError):
    """Array dtypes do not fit the operation."""


class DeviceMismatchError(CudaKitError, ValueError):
    """Arrays or streams of different devices were mixed, or host memory given to a kernel."""


class StreamError(CudaKitError, TypeError):
    """An object could not be used as a stream."""


class LaunchConfigError(CudaKitError, ValueError):
    """Grid, block or shared memory outside what the device or kernel allows."""


class DeviceCapabilityError(CudaKitError, ValueError):
    """The device lacks what the call needs (e.g. compute capability 9.0 for sm_90a kernels)."""



class PeerAccessError(DeviceCapabilityError):
    """Two devices have no peer path (cuDeviceCanAccessPeer is 0): peer access cannot be
    enabled; copies between them still work (staged by the driver), kernels cannot reach across."""

class ArgumentError(CudaKitError, TypeError):
    """A kernel argument does not match the kernel's parameter."""


class KernelNotFoundError(CudaKitError, KeyError):
    """A kernel name is not in the module. ``available`` lists the names it has."""

    def __init__(self, name: str, module: str, available: list[str]):
        self.name = name
        self.available = sorted(available)
        shown = ", ".join(self.available[:40])
        more = f" (+{len(self.available) - 40} more)" if len(self.available) > 40 else ""
        self.message = f"no kernel named {name!r} in module {module}; it has: {shown or '(no kernels)'}{more}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class ArtifactError(CudaKitError):
    """A compiled kernel artifact cannot be used."""


class MissingArtifactError(ArtifactError, FileNotFoundError):
    """The artifact was never built."""


class StaleArtifactError(ArtifactError):
    """The artifact does not match its source, flags or manifest."""


class BuildError(ArtifactError):
    """nvcc is missing or failed."""


class NotReadyError(CudaKitError):
    """Timing or a result was asked for before the GPU finished the work."""


class UntimedError(CudaKitError):
    """Elapsed time was asked of a launch that was not timed."""


class ClosedError(CudaKitError, ValueError):
    """An object was used after close()."""


class MissingExtraError(CudaKitError, ImportError):
    """An optional extra of cudart-kit is not installed (also an ImportError).

    Attributes: ``package`` (what is missing, e.g. "nccl4py"), ``extra`` (the extra that brings
    it, e.g. "nccl"), ``install`` (the pip command), ``detail`` (what the import said)."""

    def __init__(self, feature: str, package: str, extra: str, detail: str = ""):
        self.feature, self.package, self.extra = feature, package, extra
        self.install = f'pip install "cudart-kit[{extra}]"'
        self.detail = " ".join(str(detail).split())
        super().__init__(f"{feature} needs {package}: install cudart-kit's optional extra {extra!r}: {self.install}")

    def __reduce__(self):
        return (type(self), (self.feature, self.package, self.extra, self.detail))


#: ncclResult_t values and their C names (nccl.h)
NCCL_RESULTS = {
    0: "ncclSuccess", 1: "ncclUnhandledCudaError", 2: "ncclSystemError", 3: "ncclInternalError",
    4: "ncclInvalidArgument", 5: "ncclInvalidUsage", 6: "ncclRemoteError", 7: "ncclInProgress", 8: "ncclTimeout",
}

_ADVICE = {
    "ncclUnhandledCudaError": "a CUDA call inside NCCL failed; the CUDA context may be unusable (run with "
                              "NCCL_DEBUG=WARN to see which)",
    "ncclSystemError": "a system call failed (sockets, shared memory: containers need a large /dev/shm); run "
                       "with NCCL_DEBUG=INFO to see which",
    "ncclInternalError": "NCCL hit an internal error; run with NCCL_DEBUG=INFO and report it",
    "ncclInvalidArgument": "NCCL refused an argument (count, datatype, op, root, peer, or a pointer it cannot "
                           "use, e.g. memory of another device)",
    "ncclInvalidUsage": "the call is not allowed here: ranks that disagree (counts, order of calls), a "
                        "duplicate GPU in one communicator, or unbalanced group()s",
    "ncclRemoteError": "a remote rank failed or a connection broke: abort() the communicator on every rank",
    "ncclInProgress": "the operation is still in progress",
    "ncclTimeout": "NCCL gave up waiting (a rank that never joined, or a hung peer): abort() on every rank",
}


class NcclError(CudaKitError):
    """An NCCL call failed. Attributes: ``result`` (the ncclResult_t name, e.g.
    ``ncclInvalidUsage``; None when nccl4py refused the arguments before calling NCCL),
    ``code`` (its integer value or None), ``api`` (the NCCL function), ``advice``, ``detail``
    (NCCL's own last-error text, or what nccl4py said).

    After an NcclError raised by a collective, nothing is known about the operations queued on
    the communicator: abort() it on every rank (close() may hang)."""

    def __init__(self, result: str | None, code: int | None, api: str, advice: str | None = None,
                 context: str = "", detail: str = ""):
        self.result, self.code, self.api = result, code, api
        self.advice = _ADVICE.get(result or "", "") if advice is None else advice
        self.context = context
        self.detail = " ".join(str(detail).split())
        head = f"{api} failed with {result} ({code})" if result else f"{api} was refused by nccl4py"
        if context:
            head += f" while {context}"
        msg = f"{head}: {self.advice}" if self.advice else head
        if self.detail and self.detail not in msg:
            msg += f" (NCCL: {self.detail})"
        super().__init__(msg)

    def __reduce__(self):
        return (type(self), (self.result, self.code, self.api, self.advice, self.context, self.detail))


class RankError(CudaKitError, ValueError):
    """A rank, peer, root, rank count or device list that does not fit the communicator."""


class IPCError(CudaKitError, ValueError):
    """An array cannot be shared across processes, or an IPC descriptor / signal cannot be used
    (corrupt, stale, from this very process, or without its pool handle)."""


class InvalidImageError(CudaKitError, ValueError):
    """A cubin / fatbin / PTX image is malformed (truncated, not an image, or of the wrong
    kind); raised before the driver sees it, so a corrupt image cannot crash the process."""


class UnsupportedImageError(CudaKitError):
    """The image is well formed but uses something the kit's pure-Python reader cannot decode
    (a zstd-compressed fatbin entry on a Python without ``compression.zstd``)."""


def result_name(result) -> str:
    """Name of a CUresult enum member or integer."""
    name = getattr(result, "name", None)
    if name:
        return name
    try:
        from cuda.bindings import driver

        return driver.CUresult(int(result)).name
    except Exception:  # unknown code or no bindings
        return f"CUresult({int(result)})"


def driver_error(result, api: str, context: str = "") -> CudaDriverError:
    """Build the right exception class for a failed CUresult."""
    name = result_name(result)
    code = int(result)
    if name == "CUDA_ERROR_OUT_OF_MEMORY":
        return CudaOutOfMemoryError(name, code, api, context=context)
    return CudaDriverError(name, code, api, context=context)


_CUDA_ERROR_TOKEN = "CUDA_ERROR_"


def translate(exc: BaseException, api: str, context: str = "") -> BaseException:
    """Turn an exception raised inside cuda.core into a kit error where we can name the result.

    cuda.core raises ``CUDAError("CUDA_ERROR_X: explanation")``; no-driver situations surface
    as a pathfinder ``DynamicLibNotFoundError``. Anything we cannot classify is returned as is.
    """
    if isinstance(exc, CudaKitError):
        return exc
    text = str(exc)
    if type(exc).__name__ == "DynamicLibNotFoundError" or "libcuda" in text and "not found" in text.lower():
        return NoDriverError(text)
    idx = text.find(_CUDA_ERROR_TOKEN)
    if idx >= 0:
        end = idx
        while end < len(text) and (text[end].isupper() or text[end].isdigit() or text[end] == "_"):
            end += 1
        name = text[idx:end]
        code = -1
        try:
            from cuda.bindings import driver

            code = int(getattr(driver.CUresult, name))
        except Exception:
            pass
        cls = CudaOutOfMemoryError if name == "CUDA_ERROR_OUT_OF_MEMORY" else CudaDriverError
        err = cls(name, code, api, context=context)
        err.__cause__ = exc
        return err
    return exc


#: schema name of the JSON error object a command run with ``--json`` prints when it fails
ERROR_SCHEMA = "cudart-kit/error/1"


def error_document(exc: BaseException, *, message: str, command: str | None, exit_code: int,
                   detail: str | None = None) -> dict:
    """The JSON error object (schema cudart-kit/error/1) that a command run with ``--json``
    prints on stdout instead of its document when it fails. ``message`` is the one line also
    printed on stderr; ``detail`` what a dependency added (None when nothing); ``result`` and
    ``api`` name the CUresult and the driver call when the error carries them."""
    return {
        "schema": ERROR_SCHEMA,
        "error": {
            "type": type(exc).__name__,
            "message": message,
            "command": command,
            "detail": detail or None,
            "result": getattr(exc, "result", None),
            "api": getattr(exc, "api", None),
        },
        "exit_code": exit_code,
    }

