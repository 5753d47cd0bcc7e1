"""Results of the overlap experiment: the serial run of a workload, one overlapped
configuration, the whole report (the ``--json`` document, schema ``cudart-kit/overlap/1``, and
its round trip), the text table and the summary sentences. Plain data: built on the device
side, read back anywhere (a JSON file from the device machine is tabulated and plotted on a
laptop).
"""

from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping, Sequence

from ...trace import Timeline, chrome_trace, save_chrome_trace
from .model import MEMORY_KINDS, PHASES, bound_ideal_ms, efficiency, kernel_share, speedup

__all__ = ["SCHEMA", "SerialResult", "OverlapResult", "OverlapReport", "TABLE_HEADERS", "table_rows",
           "format_table", "summary_lines", "results_of", "median"]

SCHEMA = "cudart-kit/overlap/1"


def median(xs: Sequence[float]) -> float:
    """The median of ``xs``; NaN for none (JSON then says null)."""
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


def results_of(results) -> list:
    """The OverlapResults of an OverlapReport, or of any iterable of them, as a list."""
    if isinstance(results, OverlapReport):
        return list(results.results)
    return list(results)


TABLE_HEADERS = ["memory", "stages", "order", "iters", "S", "C", "H2D ms", "kernel ms", "D2H ms", "kernel %",
                 "serial ms", "overlap ms", "speedup", "ideal ms", "max speedup", "efficiency", "ok"]


def table_rows(results) -> list[list[str]]:
    """Rows of :func:`format_table` as strings (for other renderers, e.g. rich)."""
    rows = []
    for r in results_of(results):
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
    rs = results_of(results)
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
