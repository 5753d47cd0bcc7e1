"""The one door to nccl4py (``nccl.core``): imported on first use, never at import time, with
the kit's names for NCCL's data types and reduction operators (values from nccl.h, so they
are known, and checked, without nccl4py).

Without nccl4py (or without libnccl) :func:`load` raises MissingExtraError naming the extra:
``pip install "cudart-kit[nccl]"``.
"""

from __future__ import annotations

import numpy as np

from ..errors import CudaKitError, DTypeError
from ..memory import bfloat16
from .errors import missing_nccl, translate

__all__ = ["load", "available", "versions", "NCCL_DTYPES", "REDOPS", "DTYPE_NAMES", "nccl_dtype", "redop",
           "supported_dtypes"]

_core = None  # nccl.core once imported

#: numpy dtype -> ncclDataType_t value (nccl.h). bfloat16 only with ml_dtypes (the bf16 extra).
NCCL_DTYPES: dict[np.dtype, int] = {
    np.dtype(np.int8): 0, np.dtype(np.uint8): 1, np.dtype(np.int32): 2, np.dtype(np.uint32): 3,
    np.dtype(np.int64): 4, np.dtype(np.uint64): 5, np.dtype(np.float16): 6, np.dtype(np.float32): 7,
    np.dtype(np.float64): 8,
}
if bfloat16 is not None:
    NCCL_DTYPES[bfloat16] = 9

#: the kit's names of the reduction operators -> ncclRedOp_t value (nccl.h)
REDOPS: dict[str, int] = {"sum": 0, "prod": 1, "max": 2, "min": 3, "avg": 4}

#: nccl-tests' name of each dtype (its "type" column), by numpy name
DTYPE_NAMES = {"int8": "int8", "uint8": "uint8", "int32": "int32", "uint32": "uint32", "int64": "int64",
               "uint64": "uint64", "float16": "half", "float32": "float", "float64": "double",
               "bfloat16": "bfloat16"}


def supported_dtypes() -> str:
    return ", ".join(str(d) for d in NCCL_DTYPES)


def nccl_dtype(dtype, what: str = "array") -> int:
    """The ncclDataType_t of a numpy dtype; DTypeError naming the supported ones otherwise."""
    try:
        return NCCL_DTYPES[dtype]
    except (KeyError, TypeError):
        pass
    hint = " (bfloat16 needs ml_dtypes: pip install 'cudart-kit[bf16]')" if bfloat16 is None else ""
    raise DTypeError(f"{what} is {dtype}, which NCCL has no type for; NCCL moves {supported_dtypes()}{hint}")


def redop(op, what: str = "op") -> int:
    """The ncclRedOp_t value of ``op`` ("sum", "prod", "max", "min", "avg", case-insensitive);
    ValueError for anything else (as the kit's other option values, e.g. ``empty(kind=)``)."""
    if isinstance(op, str) and op.lower() in REDOPS:
        return REDOPS[op.lower()]
    raise ValueError(f"{what} must be one of {', '.join(REDOPS)}, got {op!r}")


def load():
    """``nccl.core``, imported once. Raises MissingExtraError (an ImportError and a CudaKitError)
    when nccl4py is not installed or cannot be imported."""
    global _core
    if _core is None:
        try:
            import nccl.core as core
        except ImportError as exc:
            raise missing_nccl(f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # a libnccl that cannot be loaded, an nccl4py that does not fit
            err = translate(exc, "import nccl.core")
            if not isinstance(err, CudaKitError):
                err = missing_nccl(f"nccl4py did not import: {type(exc).__name__}: {exc}")
            raise err from exc
        _core = core
    return _core


def available() -> bool:
    """Whether nccl4py imports (libnccl itself is first loaded by the first NCCL call)."""
    try:
        load()
    except Exception:
        return False
    return True


def versions() -> dict:
    """``{"nccl4py": "0.6.0", "nccl": "2.32.3" or None, "nccl_path": str or None}``; loads libnccl."""
    core = load()
    out = {"nccl4py": str(getattr(core, "__version__", "")) or None, "nccl": None, "nccl_path": None}
    try:
        lib = core.get_version().libnccl
    except Exception:
        lib = None
    if lib is not None:
        out["nccl"] = str(lib.version)
        out["nccl_path"] = None if lib.path is None else str(lib.path)
    return out
