"""Errors of the collectives: the missing optional extra, NCCL results (ncclResult_t named),
ranks that do not fit a communicator, launcher environments that cannot be read, and the one
translation of what nccl4py raises into them.

Pure Python: importing touches neither nccl4py nor the driver. MissingExtraError, NcclError
and RankError live in cudart_kit.errors (with every kit error) and are re-exported here.
"""

from __future__ import annotations

from ..errors import NCCL_RESULTS, CudaKitError, MissingExtraError, NcclError, RankError
from ..errors import translate as _translate_cuda

__all__ = ["MissingExtraError", "NcclError", "RankError", "LaunchEnvError", "NCCL_EXTRA", "NCCL_INSTALL",
           "NCCL_RESULTS", "missing_nccl", "translate"]

NCCL_EXTRA = "nccl"
NCCL_INSTALL = 'pip install "cudart-kit[nccl]"'


def missing_nccl(detail: str = "") -> MissingExtraError:
    """The error of every collectives call made without nccl4py (or without libnccl)."""
    return MissingExtraError("cudart_kit.collectives", "nccl4py (NVIDIA's NCCL bindings, with libnccl)",
                             NCCL_EXTRA, detail)


class LaunchEnvError(CudaKitError, ValueError):
    """The launcher's environment (RANK, WORLD_SIZE, LOCAL_RANK, ...) is incomplete or malformed."""


def _status(exc: BaseException) -> int | None:
    for attr in ("status", "result", "code"):
        value = getattr(exc, attr, None)
        try:
            if value is not None and not isinstance(value, bool):
                return int(value)
        except (TypeError, ValueError):
            continue
    return None


def _library_missing(exc: BaseException) -> bool:
    """nccl4py imported but libnccl could not be loaded (cuda.pathfinder or the lazy loader)."""
    name = type(exc).__name__
    text = str(exc).lower()
    if name in ("DynamicLibNotFoundError", "FunctionNotFoundError"):
        return True
    return "nccl" in text and ("not found" in text or "cannot open shared object" in text
                               or "failed to load" in text)


def translate(exc: BaseException, api: str, *, context: str = "", last_error: str = "") -> BaseException:
    """A kit error for what nccl4py raised: ``NCCLError`` -> NcclError (naming the ncclResult_t),
    ``NcclInvalid`` -> NcclError with result None, a libnccl that cannot be loaded ->
    MissingExtraError, a cuda.core CUDA error -> the kit's CudaDriverError. Anything else (a
    kit error included) is returned unchanged."""
    if isinstance(exc, CudaKitError):
        return exc
    name = type(exc).__name__
    if name == "NCCLError":
        code = _status(exc)
        result = NCCL_RESULTS.get(code) if code is not None else None
        if result is None:  # an unknown code: keep the name nccl4py printed
            result = str(exc).split(":", 1)[0].split(" (", 1)[0].strip() or f"ncclResult_t({code})"
        return NcclError(result, code, api, context=context, detail=last_error or "")
    if name == "NcclInvalid":
        return NcclError(None, None, api, advice=str(getattr(exc, "msg", exc)), context=context)
    if _library_missing(exc):
        return missing_nccl(f"{name}: {exc}")
    return _translate_cuda(exc, api, context)
