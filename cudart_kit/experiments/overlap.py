"""The stream-overlap experiment: host -> device copy, a kernel of tunable cost, device -> host
copy, split into C chunks over S streams, measured against the serial run and the ideal bound.

Every copy and launch is timed with events on its own stream, so each result carries its real
timeline (:mod:`cudart_kit.trace`). The bound arithmetic is pure (``bound_*``), so it is tested
without a GPU. See docs/overlap.md for the bound formula and how to read the results.

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

import json
import math
import os
import statistics
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from ..bench import Policy, Round, measure_rounds
from ..trace import Timeline, chrome_trace, draw_gantt, require_matplotlib, save_chrome_trace

__all__ = [
    # pure arithmetic
    "bound_serial_ms", "bound_pipeline_ms", "bound_streams_ms", "bound_ideal_ms", "bound_max_speedup",
    "speedup", "efficiency", "balanced_iters", "chunk_bounds", "stream_of_chunk", "issue_order",
    "fma_loop_reference", "kernel_share",
    # device side
    "fma_loop_f32", "run_overlap", "sweep_iters", "calibrate_balanced_iters", "sampling_policy",
    # results
    "OverlapResult", "SerialResult", "OverlapReport", "format_table", "summary_lines",
    "plot_results", "plot_sweep", "parse_int_list", "table_rows", "TABLE_HEADERS", "GATE_TIMEOUT_S",
    "SCHEMA", "ORDERS", "MEMORY_KINDS", "PHASES", "FMA_A", "FMA_B", "FMA_DB", "SIMPLESTREAMS",
]

SCHEMA = "cudart-kit/overlap/1"
ORDERS = ("breadth", "depth")
MEMORY_KINDS = ("pinned", "pageable")
PHASES = ("H2D", "kernel", "D2H")
BLOCK = 256
MAX_GRID = 1 << 20  # the kernel strides over the rest; a bigger grid buys nothing
# Step k: y = fmaf(y, a, c_k), c_k = b + k * db. a = -1 is a power of two: y * a is exact, so
# fmaf and numpy's float32 y * a + c round the same single time and agree bit for bit. Two steps
# move y by db (y_2m ~ x + m * db, y_2m+1 ~ b + m * db - x): no blow-up, no collapse to a fixed
# point, and every output depends on its own input and on every step.
FMA_A = -1.0
FMA_B = 0.75
FMA_DB = 2.0 ** -10
GATE_TIMEOUT_S = 1.0
# How each configuration is sampled (cudart_kit.bench's rules, one whole run per sample): runs
# untimed until WARMUP_MS of run time and three consecutive runs within STABLE_TOL (at most
# MAX_WARMUP_MS of wall time), then at least `repeat` runs and MIN_TIME_MS of run time, extended
# up to 4x while the spread (p90 - p10) / median is above MAX_SPREAD (then flagged noisy).
WARMUP_MS = 5.0
MAX_WARMUP_MS = 250.0
STABLE_TOL = 0.05        # multi-stream runs vary more than one copy: a wider warm-up tolerance
MIN_TIME_MS = 25.0
MAX_SPREAD = 0.05
MAX_REPEAT = 100         # runs per configuration, at most (each run also costs host time)
MAX_WALL_MS = 5000.0
# The CUDA sample simpleStreams on the H100 (docs/overlap.md): 16M ints, kernel + D2H only.
SIMPLESTREAMS = {"size_mib": 64, "h2d_ms": 0.0, "kernel_ms": 0.22, "d2h_ms": 1.24, "streams": 4, "chunks": 4,
                 "non_streamed_ms": 1.33, "streamed_ms": 1.27}


# ============================================================================================
# Pure arithmetic (no GPU): the bound model, chunking, issue order, the numpy reference
# ============================================================================================

def _check_times(h2d_ms: float, kernel_ms: float, d2h_ms: float) -> None:
    for name, v in (("h2d_ms", h2d_ms), ("kernel_ms", kernel_ms), ("d2h_ms", d2h_ms)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a finite time >= 0, got {v!r}")


def _check_count(name: str, v: int) -> int:
    if isinstance(v, bool) or int(v) != v or v < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {v!r}")
    return int(v)


def bound_serial_ms(h2d_ms: float, kernel_ms: float, d2h_ms: float) -> float:
    """No overlap at all: the three stages one after the other."""
    _check_times(h2d_ms, kernel_ms, d2h_ms)
    return float(h2d_ms + kernel_ms + d2h_ms)


def bound_pipeline_ms(h2d_ms: float, kernel_ms: float, d2h_ms: float, chunks: int) -> float:
    """Three-stage pipeline over ``chunks`` equal chunks: the busiest stage's total plus one
    chunk of each other stage (the first chunk's fill and the last chunk's drain)."""
    _check_times(h2d_ms, kernel_ms, d2h_ms)
    c = _check_count("chunks", chunks)
    busiest = max(h2d_ms, kernel_ms, d2h_ms)
    return float(busiest + (h2d_ms + kernel_ms + d2h_ms - busiest) / c)


def bound_streams_ms(h2d_ms: float, kernel_ms: float, d2h_ms: float, chunks: int, streams: int) -> float:
    """Stream-order bound: a stream runs its chunks' stages one after the other. The m busiest
    streams carry q = ceil(C / S) chunks each, and their first H2D copies (last D2H copies)
    queue for one engine, so the latest of them starts (the earliest ends) m - 1 chunks off."""
    _check_times(h2d_ms, kernel_ms, d2h_ms)
    c = _check_count("chunks", chunks)
    s = _check_count("streams", streams)
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
    c = _check_count("chunks", chunks)
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
    return chunk % _check_count("streams", streams)


def issue_order(chunks: int, streams: int, order: str, phases: Sequence[str] = PHASES) -> list[tuple[str, int]]:
    """The (phase, chunk) sequence in which work is queued (``phases``: the stages per chunk, in
    order; without "H2D" for a workload whose input is already on the device).

    ``depth``: chunk by chunk, each chunk's H2D, kernel, D2H. ``breadth``: in waves of S chunks
    (one per stream), all the wave's H2D copies, then its kernels, then its D2H copies. Both
    give each stream the same work in the same order; they differ only in how the host
    interleaves the streams, which matters where streams share a hardware queue (GPUs without
    Hyper-Q, or more streams than CUDA_DEVICE_MAX_CONNECTIONS)."""
    c = _check_count("chunks", chunks)
    s = _check_count("streams", streams)
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


# ============================================================================================
# Results
# ============================================================================================

def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def _plain_fields(obj) -> dict:
    """Dataclass fields as JSON-ready values, the timeline left out (dataclasses.asdict would
    deep-copy it). Non-finite floats become None: JSON has no NaN."""
    out = {}
    for f in fields(obj):
        if f.name == "timeline":
            continue
        v = getattr(obj, f.name)
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        elif isinstance(v, list):
            v = list(v)
        elif isinstance(v, dict):
            v = json.loads(json.dumps(v))
        out[f.name] = v
    return out


class _TimelineResult:
    """JSON round trip shared by the result dataclasses that carry a ``timeline``."""

    def to_dict(self, *, timeline: bool = True) -> dict:
        d = _plain_fields(self)
        d["timeline"] = self.timeline.to_dict() if (timeline and self.timeline is not None) else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping):
        kw = {k: d[k] for k in cls.__dataclass_fields__ if k in d and k != "timeline"}
        tl = d.get("timeline")
        return cls(**kw, timeline=Timeline.from_dict(tl) if tl else None)


@dataclass
class SerialResult(_TimelineResult):
    """The serial run of one workload: whole-buffer H2D, kernel, D2H on one stream. Its stage
    times are the "alone" times the bound is computed from."""

    memory: str
    iters: int
    size_bytes: int
    serial_ms: float
    h2d_ms: float
    kernel_ms: float
    d2h_ms: float
    samples_ms: list = field(default_factory=list)
    verified: bool | None = None
    verify: dict = field(default_factory=dict)
    timeline: Timeline | None = None
    h2d: bool = True
    spread: float = float("nan")           # (p90 - p10) / median of samples_ms
    noisy: bool = False                    # spread above max_spread after the extension
    warmup_runs: int = 0
    warmup_stable: bool | None = None

    @property
    def label(self) -> str:
        return f"serial {self.memory} iters={self.iters}" + ("" if self.h2d else " no-H2D")



@dataclass
class OverlapResult(_TimelineResult):
    """One configuration: C chunks over S streams, ``iters`` kernel iterations, host memory kind,
    issue order. Times in milliseconds, medians over the repeats; ``timeline`` is the median
    repeat's."""

    memory: str
    order: str
    streams: int
    chunks: int
    iters: int
    size_bytes: int
    serial_ms: float
    h2d_ms: float
    kernel_ms: float
    d2h_ms: float
    overlapped_ms: float
    ideal_ms: float
    speedup: float
    max_speedup: float
    efficiency: float
    samples_ms: list = field(default_factory=list)
    issue_ms: float = float("nan")
    gated: bool = False
    gate_timed_out: bool = False
    verified: bool | None = None
    verify: dict = field(default_factory=dict)
    timeline: Timeline | None = None
    h2d: bool = True
    spread: float = float("nan")           # (p90 - p10) / median of samples_ms
    noisy: bool = False                    # spread above max_spread after the extension
    warmup_runs: int = 0
    warmup_stable: bool | None = None

    @classmethod
    def build(cls, *, memory: str, order: str, streams: int, chunks: int, iters: int, size_bytes: int,
              serial_ms: float, h2d_ms: float, kernel_ms: float, d2h_ms: float, overlapped_ms: float,
              **extra) -> "OverlapResult":
        """Fill the derived figures (ideal, speedup, efficiency) from the measured ones."""
        ideal = bound_ideal_ms(h2d_ms, kernel_ms, d2h_ms, chunks=chunks, streams=streams)
        return cls(memory=memory, order=order, streams=streams, chunks=chunks, iters=iters, size_bytes=size_bytes,
                   serial_ms=serial_ms, h2d_ms=h2d_ms, kernel_ms=kernel_ms, d2h_ms=d2h_ms,
                   overlapped_ms=overlapped_ms, ideal_ms=ideal, speedup=speedup(serial_ms, overlapped_ms),
                   max_speedup=serial_ms / ideal if ideal > 0 else 1.0,
                   efficiency=efficiency(ideal, overlapped_ms), **extra)

    @property
    def label(self) -> str:
        return (f"{self.memory} {self.order} S={self.streams} C={self.chunks} iters={self.iters}"
                + ("" if self.h2d else " no-H2D"))

    @property
    def stages(self) -> str:
        """The stages per chunk: "H2D+kernel+D2H", or "kernel+D2H" when the input stays on the device."""
        return "+".join(PHASES if self.h2d else PHASES[1:])

    @property
    def kernel_share(self) -> float:
        return kernel_share(self.h2d_ms, self.kernel_ms, self.d2h_ms)

    def to_dict(self, *, timeline: bool = True) -> dict:
        d = _TimelineResult.to_dict(self, timeline=timeline)
        d["kernel_share"] = self.kernel_share
        return d


@dataclass
class OverlapReport:
    """Everything one experiment run produced: the device, the parameters, the serial runs and
    one result per configuration. ``to_dict()`` is the ``--json`` document (schema
    ``cudart-kit/overlap/1``)."""

    device: dict
    params: dict
    serial: list = field(default_factory=list)
    results: list = field(default_factory=list)
    calibration: dict | None = None

    def to_dict(self, *, timelines: bool = True) -> dict:
        return {
            "schema": SCHEMA,
            "device": dict(self.device),
            "params": dict(self.params),
            "calibration": self.calibration,
            "serial": [s.to_dict(timeline=timelines) for s in self.serial],
            "results": [r.to_dict(timeline=timelines) for r in self.results],
        }

    @classmethod
    def from_dict(cls, doc: Mapping) -> "OverlapReport":
        if doc.get("schema") != SCHEMA:
            raise ValueError(f"not an overlap report: schema {doc.get('schema')!r}, expected {SCHEMA!r}")
        return cls(device=dict(doc.get("device", {})), params=dict(doc.get("params", {})),
                   serial=[SerialResult.from_dict(s) for s in doc.get("serial", [])],
                   results=[OverlapResult.from_dict(r) for r in doc.get("results", [])],
                   calibration=doc.get("calibration"))

    def save_json(self, path: "str | os.PathLike", *, timelines: bool = True) -> Path:
        out = Path(path)
        out.write_text(json.dumps(self.to_dict(timelines=timelines), indent=1) + "\n")
        return out

    def serial_for(self, memory: str, iters: int, h2d: bool = True) -> SerialResult | None:
        for s in self.serial:
            if s.memory == memory and s.iters == iters and s.h2d == h2d:
                return s
        return None

    def chrome_trace(self) -> dict:
        """One Chrome trace with a process per serial run and per configuration."""
        tls = {}
        for s in self.serial:
            if s.timeline is not None:
                tls[s.label] = s.timeline
        for r in self.results:
            if r.timeline is not None:
                tls[r.label] = r.timeline
        return chrome_trace(tls)

    def save_trace(self, path: "str | os.PathLike") -> Path:
        return save_chrome_trace(self.chrome_trace(), path)

    @property
    def verified(self) -> bool:
        """True when every verified run matched numpy (runs not verified are ignored)."""
        return all(x.verified is not False for x in [*self.serial, *self.results])


def _results_of(results) -> list:
    if isinstance(results, OverlapReport):
        return list(results.results)
    return list(results)


TABLE_HEADERS = ["memory", "stages", "order", "iters", "S", "C", "H2D ms", "kernel ms", "D2H ms", "kernel %",
                 "serial ms", "overlap ms", "speedup", "ideal ms", "max speedup", "efficiency", "ok"]


def table_rows(results) -> list[list[str]]:
    """Rows of :func:`format_table` as strings (for other renderers, e.g. rich)."""
    rows = []
    for r in _results_of(results):
        rows.append([
            r.memory, "H-K-D" if r.h2d else "K-D", r.order, str(r.iters), str(r.streams), str(r.chunks),
            f"{r.h2d_ms:.3f}", f"{r.kernel_ms:.3f}", f"{r.d2h_ms:.3f}", f"{100 * r.kernel_share:.0f}%",
            f"{r.serial_ms:.3f}", f"{r.overlapped_ms:.3f}" + ("~" if r.noisy else ""), f"{r.speedup:.2f}x",
            f"{r.ideal_ms:.3f}",
            f"{r.max_speedup:.2f}x", f"{100 * r.efficiency:.0f}%",
            "-" if r.verified is None else ("yes" if r.verified else "NO")
            + (" (gate timeout)" if r.gate_timed_out else ""),
        ])
    return rows


def format_table(results, *, title: str | None = None) -> str:
    """Plain aligned text, one row per configuration (an OverlapReport or OverlapResults).

    ``stages`` H-K-D (copy in, kernel, copy out) or K-D (input already on the device, as in
    simpleStreams); H2D / kernel / D2H are the stages alone (serial run); ``kernel %`` the kernel's share of the
    serial time; ``speedup`` serial / overlapped; ``ideal`` the bound; ``max speedup`` serial /
    ideal; ``efficiency`` ideal / overlapped; ``ok`` whether the output matched numpy. A ``~``
    after ``overlap ms`` marks a noisy figure (spread of the runs above the limit)."""
    rows = table_rows(results)
    right = set(range(3, len(TABLE_HEADERS) - 1))
    widths = [len(h) for h in TABLE_HEADERS]
    for row in rows:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))

    def fmt(row):
        return "  ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(row)).rstrip()

    lines = [title] if title else []
    lines += [fmt(TABLE_HEADERS), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)


def summary_lines(results, *, min_streams: int = 4) -> list[str]:
    """A few sentences: the best configuration with >= ``min_streams`` streams, per memory kind,
    and how far it is from the bound."""
    rs = _results_of(results)
    lines = []
    for mem in MEMORY_KINDS:
        cand = [r for r in rs if r.memory == mem and r.streams >= min_streams]
        if not cand:
            continue
        best = max(cand, key=lambda r: r.speedup)
        lines.append(f"{mem}: best with >= {min_streams} streams: {best.label}: {best.overlapped_ms:.3f} ms vs "
                     f"serial {best.serial_ms:.3f} ms = {best.speedup:.2f}x (bound {best.max_speedup:.2f}x), "
                     f"efficiency {100 * best.efficiency:.0f}% of the ideal {best.ideal_ms:.3f} ms")
    noisy = [r.label for r in rs if r.noisy]
    if noisy:
        lines.append(f"noisy (spread of the runs above the limit, marked ~): {', '.join(noisy)}")
    if any(r.gate_timed_out for r in rs):
        lines.append("warning: some runs' gate timed out: the host blocked while queuing, their times include host issue")
    bad = [r.label for r in rs if r.verified is False]
    if bad:
        lines.append(f"VERIFICATION FAILED for: {', '.join(bad)}")
    return lines


# --- plots -------------------------------------------------------------------------------------

def _series_key(r: OverlapResult) -> tuple:
    return (r.memory, r.order, r.iters, r.chunks, r.h2d)


def _pick_gantt(rs: list, min_streams: int = 4) -> OverlapResult | None:
    with_tl = [r for r in rs if r.timeline is not None]
    pinned = [r for r in with_tl if r.memory == "pinned" and r.streams >= min_streams] or with_tl
    return max(pinned, key=lambda r: r.speedup) if pinned else None


def plot_results(results, path: "str | os.PathLike", *, gantt: "OverlapResult | str | None" = "auto",
                 serial: SerialResult | None = None, title: str | None = None) -> Path:
    """PNG (or any matplotlib format, by suffix): speedup vs streams, measured (solid) and the
    bound serial / ideal (dashed), one line per memory kind / order / iters; below it, when a
    timeline is available, the Gantt chart of the serial run and of one overlapped run
    (``gantt="auto"``: the fastest pinned run with >= 4 streams) on the same time axis.
    Needs matplotlib (``pip install 'cudart-kit[plot]'``)."""
    plt = require_matplotlib()
    report = results if isinstance(results, OverlapReport) else None
    rs = _results_of(results)
    if not rs:
        raise ValueError("nothing to plot: no results")
    chosen = _pick_gantt(rs) if gantt == "auto" else gantt
    if isinstance(chosen, str):
        raise ValueError(f"gantt must be 'auto', None or an OverlapResult, got {chosen!r}")
    if chosen is not None and chosen.timeline is None:
        raise ValueError(f"{chosen.label} carries no timeline to draw")
    if chosen is not None and serial is None and report is not None:
        serial = report.serial_for(chosen.memory, chosen.iters, chosen.h2d)
    gantts = []  # (timeline, title), drawn on one time axis under the speedup panel
    if chosen is not None:
        if serial is not None and serial.timeline is not None:
            gantts.append((serial.timeline, f"{serial.label}: {serial.serial_ms:.3f} ms"))
        gantts.append((chosen.timeline, f"{chosen.label}: {chosen.overlapped_ms:.3f} ms ({chosen.speedup:.2f}x, "
                                        f"{100 * chosen.efficiency:.0f}% of ideal)"))
    heights = [3.2] + [0.9 + 0.3 * len(tl.tracks) for tl, _ in gantts]
    fig, axes = plt.subplots(len(heights), 1, figsize=(11, sum(heights) + 0.8),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    axes = [a[0] for a in axes]
    try:
        ax = axes[0]
        series: dict[tuple, list] = {}
        for r in rs:
            series.setdefault(_series_key(r), []).append(r)
        colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
        all_streams = sorted({r.streams for r in rs})
        for i, (key, items) in enumerate(sorted(series.items())):
            items = sorted(items, key=lambda r: r.streams)
            mem, order, iters, chunks, h2d = key
            c = colors[i % len(colors)]
            xs = [r.streams for r in items]
            ax.plot(xs, [r.speedup for r in items], "o-", color=c,
                    label=f"{mem} {order} iters={iters} C={chunks}" + ("" if h2d else " kernel+D2H"))
            ax.plot(xs, [r.max_speedup for r in items], "--", color=c, alpha=0.6, linewidth=1)
        ax.axhline(1.0, color="gray", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(all_streams)
        ax.set_xticklabels([str(s) for s in all_streams])
        ax.set_xlabel("streams")
        ax.set_ylabel("speedup over serial")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", ncol=2, frameon=False, title="solid: measured, dashed: bound",
                  title_fontsize=7)
        ax.set_title(title or "stream overlap: H2D -> kernel -> D2H in chunks", fontsize=10, loc="left")
        if gantts:
            x_max = max(tl.span_us()[1] for tl, _ in gantts) / 1e3 * 1.02
            for i, (tl, text) in enumerate(gantts):
                draw_gantt(axes[1 + i], tl, title=text, x_max_ms=x_max, legend=(i == len(gantts) - 1))
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=130)
    finally:
        plt.close(fig)
    return out


def plot_sweep(results, path: "str | os.PathLike", *, title: str | None = None) -> Path:
    """PNG: speedup (measured and bound) against the kernel's share of the serial time, one
    line per stream count: why a tiny kernel (simpleStreams) gains little and a balanced one
    approaches 3x. Needs matplotlib."""
    plt = require_matplotlib()
    rs = _results_of(results)
    if not rs:
        raise ValueError("nothing to plot: no results")
    fig, ax = plt.subplots(figsize=(8, 4.2))
    try:
        colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
        by_s: dict[tuple, list] = {}
        for r in rs:
            by_s.setdefault((r.stages, r.memory, r.streams, r.chunks), []).append(r)
        for i, (key, items) in enumerate(sorted(by_s.items(), reverse=True)):
            items = sorted(items, key=lambda r: r.kernel_share)
            c = colors[i % len(colors)]
            xs = [100 * r.kernel_share for r in items]
            ax.plot(xs, [r.speedup for r in items], "o-", color=c,
                    label=f"{key[0]}, {key[1]} S={key[2]} C={key[3]}: measured")
            ax.plot(xs, [r.max_speedup for r in items], "--", color=c, alpha=0.6, label="bound")
            for r, x in zip(items, xs):
                ax.annotate(str(r.iters), (x, r.speedup), textcoords="offset points", xytext=(0, 5),
                            fontsize=6, ha="center")
        ss = SIMPLESTREAMS
        ss_share = 100 * kernel_share(ss["h2d_ms"], ss["kernel_ms"], ss["d2h_ms"])
        ax.axvline(ss_share, color="gray", linestyle=":", linewidth=1)
        ax.annotate("simpleStreams (kernel+D2H)", (ss_share, 0.2), fontsize=7, color="gray", rotation=90, ha="right")
        ax.axhline(1.0, color="gray", linewidth=0.8)
        ax.set_xlabel("kernel share of the serial time (%), labels: iters")
        ax.set_ylabel("speedup over serial")
        ax.set_xlim(0, 100)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
        ax.set_title(title or "copy-bound -> balanced -> compute-bound", fontsize=10, loc="left")
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=130)
    finally:
        plt.close(fig)
    return out


# ============================================================================================
# Device side
# ============================================================================================

_kernels: dict = {}


def _kernel(name: str):
    k = _kernels.get(name)
    if k is None:
        from ..module import load_kit_module

        k = _kernels[name] = load_kit_module("overlap").kernel(name)
    return k


def _grid_for(n: int) -> int:
    from ..launcher import blocks_for

    return min(blocks_for(n, BLOCK), MAX_GRID)


def fma_loop_f32(x, out, iters: int, *, stream, a: float = FMA_A, b: float = FMA_B, db: float = FMA_DB,
                 timed: bool = False):
    """``out[i]`` = ``iters`` dependent steps ``y = fmaf(y, a, c); c += db`` from ``y = x[i]``,
    ``c = b`` (float32; one launch on ``stream``; asynchronous, faults surface at the next
    sync). The cost per byte is 2 * ``iters`` FP32 operations per 8 bytes moved; numpy
    reproduces the result bit for bit (:func:`fma_loop_reference`) when ``a`` is a power of two.
    Returns the launch's TimingRecord (events when ``timed``).

    Raises DTypeError / ShapeError before anything is queued."""
    from ..errors import DTypeError, ShapeError
    from ..launcher import launch
    from ..memory import asarray
    from ..stream import as_stream

    s = as_stream(stream)
    xa, oa = asarray(x, stream=s), asarray(out, stream=s)
    for what, arr in (("x", xa), ("out", oa)):
        if arr.dtype != np.float32:
            raise DTypeError(f"fma_loop_f32: {what} must be float32, got {arr.dtype}")
        if not arr.c_contiguous:
            raise ShapeError(f"fma_loop_f32: {what} must be contiguous")
    if xa.size != oa.size:
        raise ShapeError(f"fma_loop_f32: x has {xa.size} elements but out has {oa.size}")
    iters = int(iters)
    if not 0 <= iters < 2**31:
        raise ValueError(f"iters must be in 0 .. 2^31-1, got {iters}")
    rec = launch(_kernel("fma_loop_f32"), _grid_for(xa.size), BLOCK, xa, oa, np.uint64(xa.size),
                 np.int32(iters), np.float32(a), np.float32(b), np.float32(db), stream=s, timed=timed)
    rec.meta["iters"] = iters
    return rec


class _DeviceSpan:
    """A contiguous piece of a kit device Array, exported through the CUDA Array Interface so
    copy() and launch() take it as a (borrowed) array; it keeps its parent alive. The parent's
    free is ordered after the worker streams by the caller (record_stream)."""

    __slots__ = ("__cuda_array_interface__", "_parent")

    def __init__(self, parent, lo: int, hi: int):
        self._parent = parent
        self.__cuda_array_interface__ = {
            "shape": (hi - lo,), "typestr": parent.dtype.str, "version": 3, "strides": None,
            "data": (parent.ptr + lo * parent.itemsize, False), "stream": None,
        }


@dataclass
class _Run:
    total_ms: float
    issue_ms: float
    gate_timed_out: bool
    timeline: Timeline


class _Workload:
    """Buffers, streams and prepared launches shared by every configuration of one run."""

    def __init__(self, device, n: int, memory_kinds: Iterable[str], seed: int | None):
        from ..device import get_device
        from ..memory import empty
        from ..stream import Stream

        self.device = get_device(device)
        self.n = n
        self._arrays: list = []
        self._streams: list = []
        self.setup = Stream.create(self.device)
        try:
            rng = np.random.default_rng(seed)
            pin_in = self._keep(empty(n, np.float32, stream=self.setup, kind="pinned"))
            pin_out = self._keep(empty(n, np.float32, stream=self.setup, kind="pinned"))
            self.x = pin_in.numpy()
            rng.standard_normal(out=self.x, dtype=np.float32)
            self.host = {"pinned": (self.x, pin_out.numpy())}
            if "pageable" in memory_kinds:
                self.host["pageable"] = (self.x.copy(), np.empty(n, np.float32))
            self.d_in = self._keep(empty(n, np.float32, stream=self.setup))
            self.d_out = self._keep(empty(n, np.float32, stream=self.setup))
            self.flags_arr = self._keep(empty(2, np.uint32, stream=self.setup, kind="pinned"))
            self.flags = self.flags_arr.numpy()
            self.flags[:] = 0
            self.sample = np.unique(np.concatenate([rng.integers(0, n, size=min(n, 4096)), [0, n - 1]]))
            self.setup.sync()  # buffers exist before any worker stream touches them
        except BaseException:
            self.close()
            raise
        self._spans: dict[int, list] = {}
        self._prepared: dict[tuple, list] = {}
        self._refs: dict[tuple, tuple] = {}
        self._uploaded = False

    def upload(self) -> None:
        """Put the input on the device once (untimed), for workloads without an H2D stage.
        Every H2D stage writes the same values, so it stays valid for the whole run."""
        from ..memory import copy

        if not self._uploaded:
            copy(self.d_in, self.x, stream=self.setup)
            self.setup.sync()  # worker streams read it without any other ordering
            self._uploaded = True

    def _keep(self, arr):
        self._arrays.append(arr)
        return arr

    def streams(self, count: int) -> list:
        from ..stream import Stream

        while len(self._streams) < count:
            s = Stream.create(self.device)
            self._streams.append(s)
            # the buffers are used on every worker stream: their frees must wait for those
            for a in self._arrays:
                a.record_stream(s)
        return self._streams[:count]

    def spans(self, chunks: int) -> list:
        from ..memory import asarray

        sp = self._spans.get(chunks)
        if sp is None:
            sp = self._spans[chunks] = [
                (lo, hi, asarray(_DeviceSpan(self.d_in, lo, hi)), asarray(_DeviceSpan(self.d_out, lo, hi)))
                for lo, hi in chunk_bounds(self.n, chunks)
            ]
        return sp

    def prepared(self, chunks: int, iters: int) -> list:
        from ..launcher import prepare

        key = (chunks, iters)
        p = self._prepared.get(key)
        if p is None:
            k = _kernel("fma_loop_f32")
            p = self._prepared[key] = [
                prepare(k, _grid_for(hi - lo), BLOCK, din, dout, np.uint64(hi - lo), np.int32(iters),
                        np.float32(FMA_A), np.float32(FMA_B), np.float32(FMA_DB), device=self.device)
                for lo, hi, din, dout in self.spans(chunks)
            ]
        return p

    # -- one timed run ---------------------------------------------------------------------------
    def run(self, *, streams: int, chunks: int, iters: int, memory: str, order: str, gate: bool,
            poison: bool, h2d: bool = True) -> _Run:
        """Queue the whole schedule, let it run, wait for it (this synchronizes), resolve its
        timeline. With ``gate``, the GPU holds every stream until everything is queued, so the
        measurement is of the GPU's overlap, not of Python's issue rate."""
        from ..event import Event
        from ..launcher import launch
        from ..memory import copy, memset

        ss = self.streams(streams)
        s0 = ss[0]
        spans = self.spans(chunks)
        kernels = self.prepared(chunks, iters)
        h_in, h_out = self.host[memory]
        phases = PHASES if h2d else PHASES[1:]
        if not h2d:
            self.upload()
        if poison:  # every element must be written by this run: start from NaN on both sides
            h_out.view(np.uint32).fill(0xFFFFFFFF)
            memset(self.d_out, 0xFF, stream=s0)
        if gate:
            self.flags[:] = 0
            launch(_kernel("gate_wait"), 1, 1, self.flags_arr, np.uint64(int(GATE_TIMEOUT_S * 1e9)), stream=s0)
        tl = Timeline(f"S={streams} C={chunks} iters={iters} {memory} {order}")
        for i, s in enumerate(ss):
            tl.name_stream(s, f"stream {i}")
        origin = tl.mark_origin(s0, others=ss[1:])
        t0 = time.perf_counter()
        try:
            for phase, c in issue_order(chunks, streams, order, phases):
                s = ss[c % streams]
                lo, hi, din, dout = spans[c]
                if phase == "H2D":
                    rec = copy(din, h_in[lo:hi], stream=s, timed=True)
                elif phase == "kernel":
                    rec = kernels[c].launch(s, timed=True)
                else:
                    rec = copy(h_out[lo:hi], dout, stream=s, timed=True)
                tl.add(rec, name=f"{phase} c{c}", category=phase,
                       args={"chunk": c, "elements": hi - lo, "bytes": 4 * (hi - lo), "iters": iters}
                       if phase == "kernel" else {"chunk": c, "bytes": 4 * (hi - lo)})
        finally:
            issue_ms = (time.perf_counter() - t0) * 1e3
            if gate:
                self.flags[0] = 1  # open even when queuing failed, or the GPU spins until the timeout
        for s in ss[1:]:
            s0.wait(s)
        end = Event.create(self.device, timing=True).record(s0)
        end.sync()
        total = origin.elapsed_ms(end)
        timed_out = bool(gate and self.flags[1])
        tl.resolve()
        return _Run(total, issue_ms, timed_out, tl)

    # -- verification -------------------------------------------------------------------------------
    def verify(self, memory: str, iters: int, chunks: int) -> dict:
        """Compare the last run's output with numpy (after the run synchronized). Checks that no
        element still holds the NaN poison, then compares bit for bit: every element when the
        numpy loop is cheap, else a fixed random sample plus every chunk's first and last element."""
        h_in, h_out = self.host[memory]
        poisoned = int(np.count_nonzero(np.isnan(h_out)))
        full = self.n * max(1, iters) <= (1 << 26)
        if full:
            idx = None
            ref = fma_loop_reference(h_in, iters)
            got = h_out
        else:
            key = (iters, chunks)
            cached = self._refs.get(key)
            if cached is None:
                edges = np.array([e for lo, hi in chunk_bounds(self.n, chunks) for e in (lo, hi - 1)])
                idx = np.unique(np.concatenate([self.sample, edges]))
                cached = self._refs[key] = (idx, fma_loop_reference(self.x[idx], iters))
            idx, ref = cached
            got = h_out[idx]
        bad = np.flatnonzero(got.view(np.uint32) != ref.view(np.uint32))
        out = {"checked": int(got.size), "full": full, "mismatches": int(bad.size), "unwritten": poisoned}
        if bad.size:
            i = int(bad[0]) if idx is None else int(idx[bad[0]])
            out["first_bad"] = {"index": i, "got": float(h_out[i]),
                                "expected": float(ref[bad[0]])}
        out["ok"] = bad.size == 0 and poisoned == 0
        return out

    def close(self) -> None:
        """Wait for every stream, then free the buffers and destroy the streams (idempotent)."""
        for s in [*self._streams, getattr(self, "setup", None)]:
            if s is not None and not s.is_closed:
                try:
                    s.sync()
                except Exception:  # a faulted context: still release what can be released
                    pass
        self._spans = {}
        self._prepared = {}
        # numpy views of pinned memory must not outlive it: drop them before freeing
        self.x = self.host = self.flags = None
        for a in self._arrays:
            a.close()
        self._arrays = []
        for s in self._streams:
            s.close()
        self._streams = []
        if getattr(self, "setup", None) is not None:
            self.setup.close()


def _phase_ms(tl: Timeline, phase: str) -> float:
    return sum(s.dur_us for s in tl.slices if s.category == phase) / 1e3


def sampling_policy(repeat: int = 5, *, warmup_ms: float = WARMUP_MS, min_time_ms: float = MIN_TIME_MS,
                    max_spread: float = MAX_SPREAD) -> Policy:
    """The bench rules for whole runs: one run per sample (batch 1), at least ``repeat`` runs."""
    repeat = _check_count("repeat", repeat)
    return Policy(warmup_ms=warmup_ms, max_warmup_ms=MAX_WARMUP_MS, stable_tol=STABLE_TOL,
                  min_time_ms=min_time_ms, min_repeat=repeat, max_repeat=max(repeat, MAX_REPEAT),
                  max_spread=max_spread, batch=1, max_wall_ms=MAX_WALL_MS)


class _RunTimer:
    """Adapts whole runs to :func:`cudart_kit.bench.measure_rounds`: a round is one run, its
    sample the run's total time; the measured runs are kept (their timelines are reported)."""

    def __init__(self, run_once: Callable[[], "_Run"]):
        self.run_once = run_once
        self.runs: list = []

    def max_samples(self, _batch: int) -> int:
        return 1

    def time_round(self, _fn, plan) -> Round:
        t0 = time.perf_counter()
        r = self.run_once()
        wall_ms = (time.perf_counter() - t0) * 1e3
        if plan.phase == "measure":
            self.runs.append(r)
        # gate timeouts stay the run's own flag (reported per result), never a discarded sample
        return Round([r.total_ms], wall_ms, r.issue_ms, 1, gated=False, gate_timed_out=False)


def _sample_runs(run_once: Callable[[], "_Run"], policy: Policy, name: str = "") -> tuple:
    """(measured runs, BenchResult): warm-up runs by time until stable, then runs until the
    policy's minimum time and count (more while the spread is high). Each run synchronizes."""
    timer = _RunTimer(run_once)
    res = measure_rounds(None, timer, policy, name=name)
    return timer.runs, res


def _measure_serial(wl: _Workload, *, iters: int, memory: str, repeat: int, gate: bool, verify: bool,
                    h2d: bool = True, policy: Policy | None = None) -> SerialResult:
    policy = policy or sampling_policy(repeat)
    first = wl.run(streams=1, chunks=1, iters=iters, memory=memory, order="depth", gate=gate, poison=verify, h2d=h2d)
    check = wl.verify(memory, iters, 1) if verify else {}
    del first
    runs, res = _sample_runs(lambda: wl.run(streams=1, chunks=1, iters=iters, memory=memory, order="depth",
                                            gate=gate, poison=False, h2d=h2d), policy, f"serial {memory} {iters}")
    med = sorted(runs, key=lambda r: r.total_ms)[len(runs) // 2]
    return SerialResult(
        memory=memory, iters=iters, size_bytes=4 * wl.n, serial_ms=_median([r.total_ms for r in runs]),
        h2d_ms=_median([_phase_ms(r.timeline, "H2D") for r in runs]),
        kernel_ms=_median([_phase_ms(r.timeline, "kernel") for r in runs]),
        d2h_ms=_median([_phase_ms(r.timeline, "D2H") for r in runs]),
        samples_ms=[r.total_ms for r in runs], verified=check.get("ok") if verify else None, verify=check,
        timeline=med.timeline.snapshot(), h2d=h2d, spread=res.spread, noisy=res.noisy,
        warmup_runs=res.warmup_calls, warmup_stable=res.warmup_stable)


def calibrate_balanced_iters(*, size_mib: float = 256, device=0, probe_iters: int = 256, repeat: int = 3,
                             gate: bool = True, seed: int | None = None) -> dict:
    """The ``iters`` that balances the kernel against the copies for ``size_mib`` of data (see
    :func:`_calibrate`). Allocates its own buffers and streams, synchronizes, frees them."""
    n = int(size_mib * (1 << 20)) // 4
    if n < 1:
        raise ValueError(f"size_mib must hold at least one float, got {size_mib!r}")
    wl = _Workload(device, n, ("pinned",), seed)
    try:
        return _calibrate(wl, probe_iters=probe_iters, repeat=repeat, gate=gate)
    finally:
        wl.close()


def _calibrate(wl: "_Workload", *, probe_iters: int = 256, repeat: int = 3, gate: bool = True,
               policy: Policy | None = None) -> dict:
    """Find the ``iters`` at which the kernel takes as long as the slower copy direction, from
    two serial runs (0 and ``probe_iters`` iterations) on pinned memory. The probe doubles until
    the kernel's growth is measurable. Returns the measurements and ``iters``."""
    policy = policy or sampling_policy(repeat)
    base = _measure_serial(wl, iters=0, memory="pinned", repeat=repeat, gate=gate, verify=False, policy=policy)
    target = max(base.h2d_ms, base.d2h_ms)
    probe = int(probe_iters)
    while True:
        hi = _measure_serial(wl, iters=probe, memory="pinned", repeat=repeat, gate=gate, verify=False,
                             policy=policy)
        if hi.kernel_ms - base.kernel_ms > 0.1 * target or probe >= 1 << 16:
            break
        probe *= 4
    iters = balanced_iters(target, base.kernel_ms, hi.kernel_ms, probe)
    return {"iters": iters, "target_ms": target, "h2d_ms": base.h2d_ms, "d2h_ms": base.d2h_ms,
            "kernel0_ms": base.kernel_ms, "probe_iters": probe, "kernel_probe_ms": hi.kernel_ms}


def _device_info(dev) -> dict:
    info = {"index": dev.ordinal, "name": dev.name}
    for key in ("async_engine_count", "concurrent_kernels", "multiprocessor_count"):
        try:
            info[key] = int(dev.attribute(key))
        except Exception:  # an attribute this driver does not know: leave it out
            pass
    info["cuda_device_max_connections"] = os.environ.get("CUDA_DEVICE_MAX_CONNECTIONS")
    return info


def _as_list(v, what: str, allowed: Sequence | None = None) -> list:
    if isinstance(v, str):
        items = [p.strip() for p in v.split(",") if p.strip()]
    elif isinstance(v, Iterable):
        items = list(v)
    else:
        items = [v]
    if not items:
        raise ValueError(f"no {what} given")
    if allowed is not None:
        bad = [i for i in items if i not in allowed]
        if bad:
            raise ValueError(f"unknown {what} {bad[0]!r}: choose from {', '.join(allowed)}")
    return items


def run_overlap(*, size_mib: float = 256, streams: Iterable[int] = (1, 2, 4, 8, 16), chunks: int = 32,
                iters: "Iterable[int] | int | None" = None, memory: "Iterable[str] | str" = ("pinned",),
                order: "Iterable[str] | str" = ORDERS, repeat: int = 5, device=0, gate: bool = True,
                verify: bool = True, h2d: bool = True, seed: int | None = None,
                log: Callable[[str], None] | None = None, warmup_ms: float = WARMUP_MS,
                min_time_ms: float = MIN_TIME_MS, max_spread: float = MAX_SPREAD) -> OverlapReport:
    """Run the experiment on every combination of ``streams`` x ``iters`` x ``memory`` x ``order``.

    ``size_mib`` float32 data go host -> device, through ``fma_loop_f32`` (``iters`` FMAs per
    element; None: calibrated so the kernel takes as long as the slower copy), and back, split
    into ``chunks`` chunks dealt round-robin to the streams. Per workload (memory kind, iters)
    one serial run (one stream, one operation per stage) gives the serial time and the stage
    times alone. Each configuration runs once with poisoned outputs and is verified against
    numpy (``verify``), then untimed until warm (``warmup_ms`` of run time, stable), then timed
    at least ``repeat`` times and for at least ``min_time_ms`` of run time, longer while the
    spread of the runs is above ``max_spread`` (the result is then ``noisy``); times are medians
    (see :func:`sampling_policy`). ``h2d=False`` leaves
    the input on the device (uploaded once, untimed): kernel + D2H per chunk, the workload of
    the CUDA sample simpleStreams.

    ``gate`` (pinned memory only): the GPU holds the streams until the host has queued
    everything (kernel ``gate_wait``), so Python's issue rate is not measured. Pageable copies
    block the host, so they always run ungated. Runs on streams of its own, synchronizes them
    between runs, frees everything before returning. Raises NoDriverError / NoDeviceError
    without a GPU, CudaOutOfMemoryError when the buffers do not fit, ValueError for bad
    parameters."""
    if isinstance(streams, str):
        streams = parse_int_list(streams, minimum=1, what="stream counts")
    streams = [_check_count("streams", s) for s in _as_list(streams, "stream counts")]
    chunks = _check_count("chunks", chunks)
    repeat = _check_count("repeat", repeat)
    policy = sampling_policy(repeat, warmup_ms=warmup_ms, min_time_ms=min_time_ms, max_spread=max_spread)
    memory = _as_list(memory, "host memory kind", MEMORY_KINDS)
    order = _as_list(order, "issue order", ORDERS + ("both",))
    if "both" in order:
        order = list(ORDERS)
    if isinstance(iters, str):
        iters = parse_int_list(iters, what="iters")
    iters_list = None if iters is None else [int(i) for i in _as_list(iters, "iters")]
    if iters_list is not None and any(i < 0 for i in iters_list):
        raise ValueError(f"iters must be >= 0, got {iters_list}")
    if not (isinstance(size_mib, (int, float)) and size_mib > 0):
        raise ValueError(f"size_mib must be > 0, got {size_mib!r}")
    n = int(size_mib * (1 << 20)) // 4
    if n < chunks:
        raise ValueError(f"{size_mib} MiB holds {n} floats: fewer than {chunks} chunks")
    say = log or (lambda _m: None)

    wl = _Workload(device, n, memory, seed)
    try:
        calibration = None
        if iters_list is None:
            calibration = _calibrate(wl, gate=gate, policy=sampling_policy(
                3, warmup_ms=warmup_ms, min_time_ms=min_time_ms, max_spread=max_spread))
            iters_list = [calibration["iters"]]
            say(f"calibrated: kernel ~ {calibration['target_ms']:.3f} ms at iters={calibration['iters']}")
        report = OverlapReport(
            device=_device_info(wl.device),
            params={"size_mib": size_mib, "elements": n, "size_bytes": 4 * n, "streams": streams, "chunks": chunks,
                    "iters": iters_list, "memory": memory, "order": order, "repeat": repeat, "gate": gate,
                    "h2d": h2d, "gate_timeout_s": GATE_TIMEOUT_S, "fma_a": FMA_A, "fma_b": FMA_B, "fma_db": FMA_DB,
                    "verify": verify, "warmup_ms": warmup_ms, "min_time_ms": min_time_ms,
                    "max_spread": max_spread},
            calibration=calibration)
        for mem in memory:
            gated = gate and mem == "pinned"
            for it in iters_list:
                ser = _measure_serial(wl, iters=it, memory=mem, repeat=repeat, gate=gated, verify=verify, h2d=h2d,
                                      policy=policy)
                report.serial.append(ser)
                say(f"serial {mem} iters={it}: {ser.serial_ms:.3f} ms (H2D {ser.h2d_ms:.3f}, kernel "
                    f"{ser.kernel_ms:.3f}, D2H {ser.d2h_ms:.3f})")
                for od in order:
                    for s in streams:
                        first = wl.run(streams=s, chunks=chunks, iters=it, memory=mem, order=od, gate=gated,
                                       poison=verify, h2d=h2d)
                        check = wl.verify(mem, it, chunks) if verify else {}
                        runs, sampled = _sample_runs(
                            lambda s=s, od=od: wl.run(streams=s, chunks=chunks, iters=it, memory=mem, order=od,
                                                      gate=gated, poison=False, h2d=h2d),
                            policy, f"{mem} {od} S={s} iters={it}")
                        med = sorted(runs, key=lambda r: r.total_ms)[len(runs) // 2]
                        res = OverlapResult.build(
                            memory=mem, order=od, streams=s, chunks=chunks, iters=it, size_bytes=4 * n,
                            serial_ms=ser.serial_ms, h2d_ms=ser.h2d_ms, kernel_ms=ser.kernel_ms, d2h_ms=ser.d2h_ms,
                            overlapped_ms=_median([r.total_ms for r in runs]),
                            samples_ms=[r.total_ms for r in runs], issue_ms=_median([r.issue_ms for r in runs]),
                            gated=gated, gate_timed_out=first.gate_timed_out or any(r.gate_timed_out for r in runs),
                            verified=check.get("ok") if verify else None, verify=check,
                            timeline=med.timeline.snapshot(), h2d=h2d, spread=sampled.spread, noisy=sampled.noisy,
                            warmup_runs=sampled.warmup_calls, warmup_stable=sampled.warmup_stable)
                        report.results.append(res)
                        say(f"{res.label}: {res.overlapped_ms:.3f} ms, {res.speedup:.2f}x, "
                            f"efficiency {100 * res.efficiency:.0f}%")
        return report
    finally:
        wl.close()


def sweep_iters(*, iters: Iterable[int] = (0, 1, 4, 16, 64, 256, 1024, 4096), size_mib: float = SIMPLESTREAMS["size_mib"],
                streams: "Iterable[int] | int" = (4,), chunks: int = 16, memory: str = "pinned", order: str = "breadth",
                repeat: int = 5, device=0, gate: bool = True, verify: bool = True, h2d: bool = True,
                seed: int | None = None, log: Callable[[str], None] | None = None, warmup_ms: float = WARMUP_MS,
                min_time_ms: float = MIN_TIME_MS, max_spread: float = MAX_SPREAD) -> OverlapReport:
    """From copy-bound to compute-bound: the same chunked workload (by default the size of the
    CUDA sample simpleStreams, 16M 4-byte elements) with ``iters`` swept. With a tiny kernel the
    copies are nearly all the time and overlap can hide only the kernel (speedup ~ 1 + kernel
    share); near balance the bound approaches 3x; compute-bound, it falls back toward 1. With
    both copies (``h2d=True``) even a plain copy gains up to 2x, H2D and D2H overlapping each
    other; ``h2d=False`` is simpleStreams' own workload (kernel + D2H), where only the kernel can
    hide. See :func:`run_overlap` for the parameters and what is raised."""
    return run_overlap(size_mib=size_mib, streams=streams if not isinstance(streams, int) else [streams],
                       chunks=chunks, iters=list(iters), memory=[memory], order=[order], repeat=repeat,
                       device=device, gate=gate, verify=verify, h2d=h2d, seed=seed, log=log, warmup_ms=warmup_ms,
                       min_time_ms=min_time_ms, max_spread=max_spread)
