"""The benchmark's rules: the defaults of :func:`~cudart_kit.bench.benchmark`, the measurement
:class:`Policy` and the small pure functions over numbers that decide batch size, warm-up
stability, when to stop, the spread and the noisy flag (see the package docstring and
docs/benchmarks.md). No CUDA, no kit import: tested on the CPU with fake timings."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

# defaults of benchmark(); see the package docstring and docs/benchmarks.md
WARMUP_MS = 25.0          # GPU time of warm-up, at least
MAX_WARMUP_MS = 500.0     # wall time of warm-up, at most (unless the `warmup` count needs more)
MIN_TIME_MS = 100.0       # measured GPU time per figure, at least
MIN_REPEAT = 10           # samples per figure, at least
MAX_REPEAT = 10_000       # samples per figure, at most
MAX_SPREAD = 0.05         # above this (p90 - p10) / median the figure is noisy
STABLE_TOL = 0.02         # warm-up rounds agree within this
STABLE_ROUNDS = 3         # ... over this many consecutive rounds
SAMPLE_MS = 0.2           # a timed sample lasts at least this long (batching)
MAX_BATCH = 250           # calls per sample, at most (and it must fit behind the gate)
ROUND_MS = 10.0           # GPU time per measurement round, at most (one sync per round)
MAX_WALL_MS = 10_000.0    # wall time of one benchmark call, at most (once it has a sample)
EXTEND_FACTOR = 4.0       # max_time_ms defaults to EXTEND_FACTOR * min_time_ms
BATCH_HYSTERESIS = 1.25   # keep the current batch while the new choice is within this factor

MAX_ROUND_SAMPLES = 64    # events per round, at most
GATE_MAX_OPS = 256        # operations queued behind the closed gate, at most
GATE_TIMEOUT_S = 1.0      # the gate kernel opens by itself after this (flags[1] then says so)
LEAD_MS = 0.05            # ungated rounds: GPU time of untimed calls before the first event
LEAD_MAX_CALL_MS = 1.0    # ... only for calls shorter than this (longer ones hide the gap)
HOST_BOUND_RATIO = 0.8    # ungated: host enqueue >= this x GPU time means the host paced the GPU


# --- spread ----------------------------------------------------------------------------------

def quantile(xs, q: float) -> float:
    """Linear-interpolated quantile ``q`` (0..1) of ``xs`` (any order, at least one value)."""
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo, hi = int(math.floor(pos)), int(math.ceil(pos))
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def relative_spread(samples) -> float:
    """(p90 - p10) / median: the relative width of the central 80 % of ``samples``; 0.0 for fewer
    than two samples or a zero median."""
    if len(samples) < 2:
        return 0.0
    med = statistics.median(samples)
    if med == 0:
        return 0.0
    return (quantile(samples, 0.9) - quantile(samples, 0.1)) / med


def is_noisy(spread: float, max_spread: "float | None") -> bool:
    """True when ``spread`` is above ``max_spread`` (None: never noisy)."""
    return max_spread is not None and spread > max_spread



# --- the rules (pure) -----------------------------------------------------------------------

@dataclass(frozen=True)
class Policy:
    """The measurement rules of one figure (see the module docstring). ``batch``: fixed calls
    per sample, or None to choose by time. ``max_time_ms`` None means EXTEND_FACTOR x
    ``min_time_ms``; set it to ``min_time_ms`` for no extension. ``stable_rounds`` 0 skips the
    stability test (warm-up then ends on time and count alone)."""

    warmup_ms: float = WARMUP_MS
    max_warmup_ms: float = MAX_WARMUP_MS
    min_warmup: int = 0
    stable_tol: float = STABLE_TOL
    stable_rounds: int = STABLE_ROUNDS
    min_time_ms: float = MIN_TIME_MS
    max_time_ms: "float | None" = None
    min_repeat: int = MIN_REPEAT
    max_repeat: int = MAX_REPEAT
    max_spread: "float | None" = MAX_SPREAD
    sample_ms: float = SAMPLE_MS
    batch: "int | None" = None
    min_batch: int = 1
    max_batch: int = MAX_BATCH
    round_ms: float = ROUND_MS
    max_wall_ms: float = MAX_WALL_MS

    def __post_init__(self):
        def bad(msg):
            raise ValueError(msg)

        for name in ("warmup_ms", "max_warmup_ms", "min_time_ms", "stable_tol", "sample_ms"):
            if not getattr(self, name) >= 0:
                bad(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.round_ms <= 0 or self.max_wall_ms <= 0:
            bad("round_ms and max_wall_ms must be > 0")
        if self.min_warmup < 0 or self.stable_rounds < 0:
            bad("warmup (calls) and stable_rounds must be >= 0")
        if self.min_repeat < 1:
            bad(f"repeat must be >= 1, got {self.min_repeat}")
        if self.max_repeat < self.min_repeat:
            bad(f"max_repeat ({self.max_repeat}) is below min_repeat ({self.min_repeat})")
        if self.max_time_ms is not None and self.max_time_ms < self.min_time_ms:
            bad(f"max_time_ms ({self.max_time_ms}) is below min_time_ms ({self.min_time_ms})")
        if self.max_spread is not None and self.max_spread < 0:
            bad(f"max_spread must be >= 0 or None, got {self.max_spread}")
        if not 1 <= self.min_batch <= self.max_batch:
            bad(f"need 1 <= min_batch ({self.min_batch}) <= max_batch ({self.max_batch})")
        if self.batch is not None and self.batch < 1:
            bad(f"batch must be >= 1 or None, got {self.batch}")

    @property
    def max_time(self) -> float:
        return EXTEND_FACTOR * self.min_time_ms if self.max_time_ms is None else self.max_time_ms


def choose_batch(per_call_ms: "float | None", *, sample_ms: float = SAMPLE_MS, min_batch: int = 1,
                 max_batch: int = MAX_BATCH) -> int:
    """Calls per sample so one sample lasts at least ``sample_ms``: ceil(sample_ms / per_call_ms),
    clamped to [min_batch, max_batch]. Unknown (None) -> min_batch; zero time -> max_batch."""
    if per_call_ms is None or not math.isfinite(per_call_ms):
        return min_batch
    if per_call_ms <= 0:
        return max_batch
    return max(min_batch, min(max_batch, math.ceil(sample_ms / per_call_ms - 1e-9)))


def next_batch(current: "int | None", per_call_ms: "float | None", policy: Policy) -> int:
    """The batch for the next round: ``policy.batch`` when fixed; else :func:`choose_batch`,
    keeping ``current`` while the new choice is within BATCH_HYSTERESIS of it."""
    if policy.batch is not None:
        return policy.batch
    k = choose_batch(per_call_ms, sample_ms=policy.sample_ms, min_batch=policy.min_batch,
                     max_batch=policy.max_batch)
    if current is not None and current / BATCH_HYSTERESIS <= k <= current * BATCH_HYSTERESIS:
        return current
    return k


def is_stable(history, *, tol: float = STABLE_TOL, rounds: int = STABLE_ROUNDS) -> bool:
    """``history``: (batch, per-call ms) of the warm-up rounds so far. Stable when the last
    ``rounds`` have the same batch and (max - min) / median of their per-call times <= ``tol``.
    ``rounds`` 0: always stable."""
    if rounds <= 0:
        return True
    last = list(history)[-rounds:]
    if len(last) < rounds or len({b for b, _ in last}) != 1:
        return False
    vals = [v for _, v in last]
    med = statistics.median(vals)
    if med <= 0:
        return max(vals) == min(vals)
    return (max(vals) - min(vals)) / med <= tol


def warmup_done(*, gpu_ms: float, wall_ms: float, calls: int, stable: bool, policy: Policy) -> bool:
    """Warm-up ends when it ran ``warmup_ms`` of GPU time and ``min_warmup`` calls and is stable;
    or, stable or not, once ``max_warmup_ms`` of wall time passed (the ``min_warmup`` count is
    still honoured: the caller asked for it)."""
    if calls < policy.min_warmup:
        return False
    if stable and gpu_ms >= policy.warmup_ms:
        return True
    return wall_ms >= policy.max_warmup_ms


def warmup_round_ms(policy: Policy) -> float:
    """GPU time of one warm-up round: a quarter of ``warmup_ms`` or a tenth of ``min_time_ms``,
    whichever is longer (and at least one sample), so that ``stable_rounds`` agreeing rounds
    mean the figure drifts by less than ``stable_tol`` over a good part of the measurement,
    not just over a few calls."""
    return max(policy.warmup_ms / 4.0, policy.min_time_ms / 10.0, policy.sample_ms)


def samples_for(sample_est_ms: "float | None", want_ms: float, need: int, cap: int) -> int:
    """Samples in the next round: enough for ``want_ms`` of GPU time at ``sample_est_ms`` each,
    and at least ``need``; between 1 and ``cap``."""
    if sample_est_ms is None or not math.isfinite(sample_est_ms) or sample_est_ms <= 0:
        n = cap
    else:
        n = max(need, math.ceil(want_ms / sample_est_ms - 1e-9))
    return max(1, min(cap, n))


def measure_stop(samples, measured_ms: float, wall_ms: float, policy: Policy) -> "str | None":
    """Why measuring stops now, or None to go on (see :class:`BenchResult` ``stop``)."""
    n = len(samples)
    if n >= policy.max_repeat:
        return "max_repeat"
    if n >= 1 and wall_ms >= policy.max_wall_ms:
        return "max_wall"
    if n < policy.min_repeat or measured_ms < policy.min_time_ms:
        return None
    if not is_noisy(relative_spread(samples), policy.max_spread):
        return "min_time"
    if measured_ms >= policy.max_time:
        return "max_time"
    return None


def lead_calls(per_call_ms: "float | None", batch: int) -> int:
    """Untimed calls before the first event of an ungated round: enough to keep the GPU busy
    for LEAD_MS while the host records the event and queues the first timed calls; none for
    calls of LEAD_MAX_CALL_MS or more (the gap is then a negligible part of a sample)."""
    if per_call_ms is None or not math.isfinite(per_call_ms) or per_call_ms >= LEAD_MAX_CALL_MS:
        return 0
    if per_call_ms <= 0:
        return batch
    return max(1, min(batch, math.ceil(LEAD_MS / per_call_ms)))
