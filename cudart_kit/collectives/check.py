"""The data of the collectives benchmark, on the host: rank-dependent inputs, what each rank
must receive (computed here, not by NCCL), the poison written over outputs before a checked
run, and the count of wrong elements (nccl-tests' ``#wrong``). Pure numpy, no driver.

Inputs are small integers drawn per rank from a fixed seed (period :data:`PERIOD` elements,
a prime, so a block written at a wrong offset or from a wrong rank is caught), chosen so that
every reduction is exact in every dtype (sums and extrema of values in -4..4, products of
+-1 and +-2); integer dtypes wrap exactly as on the GPU. Only ``avg`` of floating types,
where NCCL scales by 1/nranks, is compared with a tolerance.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["PERIOD", "pattern", "expected", "count_wrong", "poison_byte", "reduce_host"]

PERIOD = 1021
_EPS = {"bfloat16": 2.0 ** -7, "float16": 2.0 ** -10, "float32": 2.0 ** -23, "float64": 2.0 ** -52}


def _base(rank: int, redop: str, dtype: np.dtype) -> np.ndarray:
    """One period of rank ``rank``'s input, as int64."""
    rng = np.random.default_rng(0x5EED + 7919 * rank)
    unsigned = dtype.kind == "u"
    if redop == "prod":
        choices = np.array([1, 2] if unsigned else [1, -1, 2, -2], dtype=np.int64)
        return choices[rng.integers(0, len(choices), PERIOD)]
    return rng.integers(0, 9, PERIOD) if unsigned else rng.integers(-4, 5, PERIOD)


def _periodic(base: np.ndarray, start: int, count: int) -> np.ndarray:
    """Elements ``start .. start+count-1`` of the infinite repetition of ``base``."""
    if count <= 0:
        return base[:0].copy()
    return np.resize(np.roll(base, -(start % len(base))), count)


def pattern(rank: int, count: int, dtype, redop: str = "sum", start: int = 0) -> np.ndarray:
    """Rank ``rank``'s input: ``count`` elements of ``dtype`` from element ``start`` on."""
    dtype = np.dtype(dtype)
    return _periodic(_base(rank, redop, dtype), start, count).astype(dtype)


def reduce_host(parts: list[np.ndarray], redop: str, dtype, nranks: int) -> np.ndarray:
    """The reduction NCCL computes, on the host: float types in float64 (the inputs keep every
    result exact but avg's), integer types in their own width (wrapping as the GPU does; avg is
    the wrapped sum divided by ``nranks``, truncated toward zero like NCCL's integer avg)."""
    dtype = np.dtype(dtype)
    integer = dtype.kind in "iu"
    stack = np.stack([p.astype(dtype if integer else np.float64) for p in parts])
    if redop in ("sum", "avg"):
        out = stack.sum(axis=0, dtype=dtype if integer else np.float64)
        if redop == "avg":
            if integer:
                wide = out.astype(np.int64)
                out = (np.sign(wide) * (np.abs(wide) // nranks)).astype(dtype)
            else:
                out = out / nranks
    elif redop == "prod":
        out = stack.prod(axis=0, dtype=dtype if integer else np.float64)
    elif redop == "max":
        out = stack.max(axis=0)
    elif redop == "min":
        out = stack.min(axis=0)
    else:
        raise ValueError(f"unknown reduction {redop!r}")
    return out if integer else out.astype(np.float64)


@functools.lru_cache(maxsize=64)
def _reduced_period(redop: str, dtype: np.dtype, nranks: int) -> np.ndarray:
    """One period of the reduction over every rank's input (the inputs share the period, so
    does their reduction): a reference of any size costs one period of arithmetic."""
    return reduce_host([pattern(r, PERIOD, dtype, redop) for r in range(nranks)], redop, dtype, nranks)


def expected(op: str, rank: int, nranks: int, count: int, dtype, redop: str = "sum", root: int = 0) -> np.ndarray:
    """What rank ``rank`` must hold after ``op`` when every rank r sent ``pattern(r, ...)``.
    ``count`` is nccl-tests' count: elements per rank (all_gather's send, reduce_scatter's recv,
    the buffer of the others). Float results come as float64."""
    dtype = np.dtype(dtype)
    if op in ("all_reduce", "reduce_scatter"):
        start = rank * count if op == "reduce_scatter" else 0
        return _periodic(_reduced_period(redop, dtype, nranks), start, count)
    if op == "all_gather":
        return np.concatenate([pattern(r, count, dtype, redop) for r in range(nranks)])
    if op == "broadcast":
        return pattern(root, count, dtype, redop)
    if op == "sendrecv":
        return pattern((rank - 1) % nranks, count, dtype, redop)
    raise ValueError(f"unknown collective {op!r}")


def poison_byte(dtype) -> int:
    """The byte written over every output element before a checked run, so an element NCCL did
    not write is counted wrong: 0xFF (NaN for floats, the maximum for unsigned integers) or 0x7F
    (the maximum for signed ones); neither is a result of the inputs above (up to 31 ranks)."""
    return 0x7F if np.dtype(dtype).kind == "i" else 0xFF


def count_wrong(got: np.ndarray, want: np.ndarray, dtype, redop: str = "sum", nranks: int = 1) -> int:
    """How many elements of ``got`` differ from ``want``: exactly for integers and for every
    float reduction but avg, within ``4 * nranks`` units of the dtype's rounding for avg of
    floats. NaN (the poison) is always wrong."""
    dtype = np.dtype(dtype)
    got = np.asarray(got).reshape(-1)
    want = np.asarray(want).reshape(-1)
    if got.size != want.size:
        return max(got.size, want.size)
    if dtype.kind in "iu" or redop != "avg":  # exact: compared in the dtype itself (NaN != NaN)
        g = got if got.dtype == dtype else got.astype(dtype)
        w = want if want.dtype == dtype else want.astype(dtype)
        return int(np.count_nonzero(g != w))
    g, w = got.astype(np.float64), want.astype(np.float64)
    tol = 4 * max(nranks, 1) * _EPS.get(dtype.name, 2.0 ** -7) * np.maximum(1.0, np.abs(w))
    return int(np.count_nonzero(~(np.abs(g - w) <= tol)))
