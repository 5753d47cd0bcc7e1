"""The result of one figure: :class:`BenchResult` (per-call samples and their summary) and the
keys of its JSON form."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from .rules import MAX_SPREAD, is_noisy, quantile, relative_spread

# as_dict() keys, in order (documented in docs/benchmarks.md)
AS_DICT_KEYS = ("name", "median_ms", "min_ms", "max_ms", "p10_ms", "p90_ms", "n", "spread", "noisy",
                "max_spread", "batch", "calls", "measured_ms", "wall_ms", "warmup_ms", "warmup_calls",
                "warmup_stable", "stop", "gated", "host_bound", "gate_timeouts")


@dataclass
class BenchResult:
    """Event-timed per-call samples in milliseconds and their summary.

    ``samples_ms`` are per call: each is one timed batch of ``batch`` back-to-back calls divided
    by ``batch``. ``measured_ms`` is the GPU time of all timed samples; ``warmup_ms`` /
    ``warmup_calls`` what the warm-up spent; ``warmup_stable`` whether it ended stable (None:
    not measured by :func:`benchmark`); ``stop`` why measuring stopped ("min_time": enough
    samples, time and a low spread; "max_time": the extension ran out with the spread still
    high; "max_repeat"; "max_wall"); ``gated`` whether every timed round ran behind the gate;
    ``host_bound`` whether ungated rounds were paced by the host (the GPU waited for the
    launches, so the figure is the issue rate, not the GPU's); ``gate_timeouts`` rounds
    discarded because their gate opened by timeout."""

    name: str
    samples_ms: list = field(default_factory=list)
    batch: int = 1
    measured_ms: "float | None" = None
    warmup_ms: float = 0.0
    warmup_calls: int = 0
    warmup_stable: "bool | None" = None
    max_spread: "float | None" = MAX_SPREAD
    stop: str = ""
    gated: bool = False
    host_bound: bool = False
    wall_ms: float = float("nan")
    gate_timeouts: int = 0

    def __post_init__(self):
        if self.measured_ms is None:
            self.measured_ms = float(sum(self.samples_ms)) * self.batch

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def min_ms(self) -> float:
        return min(self.samples_ms)

    @property
    def max_ms(self) -> float:
        return max(self.samples_ms)

    def quantile_ms(self, q: float) -> float:
        return quantile(self.samples_ms, q)

    @property
    def spread(self) -> float:
        """(p90 - p10) / median: relative spread of the samples."""
        return relative_spread(self.samples_ms)

    @property
    def noisy(self) -> bool:
        """The spread is above ``max_spread``: the median is less trustworthy than usual."""
        return is_noisy(self.spread, self.max_spread)

    @property
    def calls(self) -> int:
        """Timed calls in all (samples x batch)."""
        return len(self.samples_ms) * self.batch

    def gbps(self, nbytes: int) -> float:
        return nbytes / (self.median_ms * 1e-3) / 1e9

    def tflops(self, flops: float) -> float:
        return flops / (self.median_ms * 1e-3) / 1e12

    def as_dict(self) -> dict:
        """JSON-ready summary; keys are :data:`AS_DICT_KEYS` (times in ms, per call)."""
        return {"name": self.name, "median_ms": self.median_ms, "min_ms": self.min_ms, "max_ms": self.max_ms,
                "p10_ms": self.quantile_ms(0.1), "p90_ms": self.quantile_ms(0.9), "n": len(self.samples_ms),
                "spread": self.spread, "noisy": self.noisy, "max_spread": self.max_spread,
                "batch": self.batch, "calls": self.calls, "measured_ms": self.measured_ms,
                "wall_ms": None if not math.isfinite(self.wall_ms) else self.wall_ms,
                "warmup_ms": self.warmup_ms, "warmup_calls": self.warmup_calls,
                "warmup_stable": self.warmup_stable, "stop": self.stop, "gated": self.gated,
                "host_bound": self.host_bound, "gate_timeouts": self.gate_timeouts}
