"""The overlap experiment's pure side: the bound model, chunking, issue order and the numpy
reference of the kernel. No GPU, no kit call: everything here is tested on the CPU.

The model. With H, K, D the times of the whole H2D copy, kernel and D2H copy *alone* (measured
on one stream, one operation each) and C equal chunks, each stage of a chunk takes H/C, K/C, D/C.
H2D and D2H use different copy engines and PCIe directions, and a chunk's kernel fills the GPU,
so the three stages are three resources working in a pipeline. Two lower bounds on the time:

* the pipeline: the busiest resource works its whole total, and nothing can hide the other two
  stages of the first chunk (fill) and of the last chunk (drain)::

      pipeline = max(H, K, D) + (H + K + D - max(H, K, D)) / C

* the streams: work on one stream runs in order, and the busiest streams carry q = ceil(C / S)
  chunks each; there are m = C - (q - 1) * S of them, and their first H2D copies (and last D2H
  copies) take turns on one copy engine, so one of them starts (or ends) m - 1 chunks late::

      streams = q * (H + K + D) / C + (m - 1) * max(H, D) / C

``ideal = max(pipeline, streams)``; ``speedup = serial / overlapped``; ``efficiency = ideal /
overlapped`` (1.0: as good as the model allows); ``max_speedup = serial / ideal``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = [
    "bound_serial_ms", "bound_pipeline_ms", "bound_streams_ms", "bound_ideal_ms", "bound_max_speedup",
    "speedup", "efficiency", "kernel_share", "balanced_iters", "chunk_bounds", "stream_of_chunk",
    "issue_order", "fma_loop_reference", "parse_int_list", "elements_for", "check_count", "check_times",
    "ORDERS", "MEMORY_KINDS", "PHASES", "FMA_A", "FMA_B", "FMA_DB", "SIMPLESTREAMS",
]

ORDERS = ("breadth", "depth")
MEMORY_KINDS = ("pinned", "pageable")
PHASES = ("H2D", "kernel", "D2H")
# Step k: y = fmaf(y, a, c_k), c_k = b + k * db. a = -1 is a power of two: y * a is exact, so
# fmaf and numpy's float32 y * a + c round the same single time and agree bit for bit. Two steps
# move y by db (y_2m ~ x + m * db, y_2m+1 ~ b + m * db - x): no blow-up, no collapse to a fixed
# point, and every output depends on its own input and on every step.
FMA_A = -1.0
FMA_B = 0.75
FMA_DB = 2.0 ** -10
# The CUDA sample simpleStreams on the H100 (docs/overlap.md): 16M ints, kernel + D2H only.
SIMPLESTREAMS = {"size_mib": 64, "h2d_ms": 0.0, "kernel_ms": 0.22, "d2h_ms": 1.24, "streams": 4, "chunks": 4,
                 "non_streamed_ms": 1.33, "streamed_ms": 1.27}


def check_times(h2d_ms: float, kernel_ms: float, d2h_ms: float) -> None:
    """ValueError naming the first stage time that is not a finite number >= 0."""
    for name, v in (("h2d_ms", h2d_ms), ("kernel_ms", kernel_ms), ("d2h_ms", d2h_ms)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a finite time >= 0, got {v!r}")


def check_count(name: str, v: int) -> int:
    """``v`` as an int when it is a whole number >= 1 (not a bool), else ValueError naming ``name``."""
    if isinstance(v, bool) or int(v) != v or v < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {v!r}")
    return int(v)


def elements_for(size_mib: float) -> int:
    """float32 elements in ``size_mib`` MiB (rounded down): what the experiment moves each way."""
    return int(size_mib * (1 << 20)) // 4


def bound_serial_ms(h2d_ms: float, kernel_ms: float, d2h_ms: float) -> float:
    """No overlap at all: the three stages one after the other."""
    check_times(h2d_ms, kernel_ms, d2h_ms)
    return float(h2d_ms + kernel_ms + d2h_ms)


def bound_pipeline_ms(h2d_ms: float, kernel_ms: float, d2h_ms: float, chunks: int) -> float:
    """Three-stage pipeline over ``chunks`` equal chunks: the busiest stage's total plus one
    chunk of each other stage (the first chunk's fill and the last chunk's drain)."""
    check_times(h2d_ms, kernel_ms, d2h_ms)
    c = check_count("chunks", chunks)
    busiest = max(h2d_ms, kernel_ms, d2h_ms)
    return float(busiest + (h2d_ms + kernel_ms + d2h_ms - busiest) / c)


def bound_streams_ms(h2d_ms: float, kernel_ms: float, d2h_ms: float, chunks: int, streams: int) -> float:
    """Stream-order bound: a stream runs its chunks' stages one after the other. The m busiest
    streams carry q = ceil(C / S) chunks each, and their first H2D copies (last D2H copies)
    queue for one engine, so the latest of them starts (the earliest ends) m - 1 chunks off."""
    check_times(h2d_ms, kernel_ms, d2h_ms)
    c = check_count("chunks", chunks)
    s = check_count("streams", streams)
    q = math.ceil(c / s)
    m = c - (q - 1) * s
    return float((q * (h2d_ms + kernel_ms + d2h_ms) + (m - 1) * max(h2d_ms, d2h_ms)) / c)


def bound_ideal_ms(h2d_ms: float, kernel_ms: float, d2h_ms: float, *, chunks: int, streams: int) -> float:
    """The ideal overlapped time: max(pipeline bound, stream-order bound) (module docstring)."""
    return max(bound_pipeline_ms(h2d_ms, kernel_ms, d2h_ms, chunks),
               bound_streams_ms(h2d_ms, kernel_ms, d2h_ms, chunks, streams))


def bound_max_speedup(h2d_ms: float, kernel_ms: float, d2h_ms: float, *, chunks: int, streams: int) -> float:
    """serial / ideal: the most that overlapping can gain for these stage times (3.0 at best)."""
    ideal = bound_ideal_ms(h2d_ms, kernel_ms, d2h_ms, chunks=chunks, streams=streams)
    serial = bound_serial_ms(h2d_ms, kernel_ms, d2h_ms)
    return serial / ideal if ideal > 0 else 1.0


def speedup(serial_ms: float, measured_ms: float) -> float:
    """serial / measured (> 1: overlapping paid off)."""
    if not measured_ms > 0:
        raise ValueError(f"measured time must be > 0, got {measured_ms!r}")
    return float(serial_ms) / float(measured_ms)


def efficiency(ideal_ms: float, measured_ms: float) -> float:
    """ideal / measured: 1.0 means the measured time reached the bound (it can exceed 1.0 a
    little: stage times measured alone carry their own launch and setup latencies)."""
    if not measured_ms > 0:
        raise ValueError(f"measured time must be > 0, got {measured_ms!r}")
    return float(ideal_ms) / float(measured_ms)


def kernel_share(h2d_ms: float, kernel_ms: float, d2h_ms: float) -> float:
    """Fraction of the serial time spent in the kernel (1/3 with balanced stages)."""
    total = bound_serial_ms(h2d_ms, kernel_ms, d2h_ms)
    return kernel_ms / total if total > 0 else 0.0


def balanced_iters(target_ms: float, kernel0_ms: float, kernel1_ms: float, iters1: int) -> int:
    """``iters`` at which the kernel takes ``target_ms``, from two measurements of it: with 0
    iterations (memory traffic only) and with ``iters1`` iterations. The kernel's time is linear
    in ``iters`` once the GPU is full, so this is a straight line through the two points."""
    if iters1 < 1:
        raise ValueError(f"iters1 must be >= 1, got {iters1}")
    slope = (kernel1_ms - kernel0_ms) / iters1
    if not slope > 0:
        raise ValueError(f"the kernel did not get slower with more iterations ({kernel0_ms:.4f} ms at 0, "
                         f"{kernel1_ms:.4f} ms at {iters1}); measure with more iterations")
    return max(0, int(round((target_ms - kernel0_ms) / slope)))


def chunk_bounds(n: int, chunks: int) -> list[tuple[int, int]]:
    """[lo, hi) element ranges of ``chunks`` nearly equal chunks (sizes differ by at most one;
    the first n % chunks chunks are the longer ones)."""
    c = check_count("chunks", chunks)
    n = int(n)
    if n < c:
        raise ValueError(f"cannot split {n} elements into {c} chunks")
    base, extra = divmod(n, c)
    out, lo = [], 0
    for i in range(c):
        hi = lo + base + (1 if i < extra else 0)
        out.append((lo, hi))
        lo = hi
    return out


def stream_of_chunk(chunk: int, streams: int) -> int:
    """Chunks go round-robin over the streams."""
    return chunk % check_count("streams", streams)


def issue_order(chunks: int, streams: int, order: str, phases: Sequence[str] = PHASES) -> list[tuple[str, int]]:
    """The (phase, chunk) sequence in which work is queued (``phases``: the stages per chunk, in
    order; without "H2D" for a workload whose input is already on the device).

    ``depth``: chunk by chunk, each chunk's H2D, kernel, D2H. ``breadth``: in waves of S chunks
    (one per stream), all the wave's H2D copies, then its kernels, then its D2H copies. Both
    give each stream the same work in the same order; they differ only in how the host
    interleaves the streams, which matters where streams share a hardware queue (GPUs without
    Hyper-Q, or more streams than CUDA_DEVICE_MAX_CONNECTIONS)."""
    c = check_count("chunks", chunks)
    s = check_count("streams", streams)
    if order == "depth":
        return [(p, i) for i in range(c) for p in phases]
    if order == "breadth":
        out = []
        for w in range(0, c, s):
            wave = range(w, min(c, w + s))
            out += [(p, i) for p in phases for i in wave]
        return out
    raise ValueError(f"order must be one of {ORDERS}, got {order!r}")


def fma_loop_reference(x: np.ndarray, iters: int, a: float = FMA_A, b: float = FMA_B,
                       db: float = FMA_DB) -> np.ndarray:
    """What ``fma_loop_f32`` computes, in numpy float32: for k in range(iters), y = y * a + c
    then c = c + db, from c = b.

    Bit-exact against the GPU when ``a`` is a power of two (the product is then exact, so the
    fused and the unfused forms round once, identically)."""
    y = np.array(x, dtype=np.float32, copy=True)
    fa, c, fdb = np.float32(a), np.float32(b), np.float32(db)
    for _ in range(int(iters)):
        np.multiply(y, fa, out=y)
        np.add(y, c, out=y)
        c = np.float32(c + fdb)
    return y


def parse_int_list(text: str, *, minimum: int = 0, what: str = "value") -> list[int]:
    """``"1,2,4"`` -> [1, 2, 4] (order kept, duplicates dropped); ValueError naming ``what``."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = int(part)
        except ValueError:
            raise ValueError(f"expected a comma list of whole numbers for {what}, got {text!r}") from None
        if v < minimum:
            raise ValueError(f"{what} must be >= {minimum}, got {v}")
        if v not in out:
            out.append(v)
    if not out:
        raise ValueError(f"no {what} given in {text!r}")
    return out
