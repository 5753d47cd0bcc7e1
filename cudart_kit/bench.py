"""Event-timed benchmarking, the kit's one measurement helper: warm up by time until the figure
is stable, time batches of back-to-back calls between CUDA events (behind a GPU-side gate so the
host's issue rate is not what is measured), measure for a minimum time, report the spread and
flag a figure whose spread stays high.

The rules (batch size, warm-up stability, when to stop, spread, noisy) are small pure functions
over numbers, tested on the CPU with fake timings; everything that touches CUDA is one class,
:class:`_EventTimer`, created by :func:`_open_timer`. Importing this module touches no driver
and imports no other kit module that does (``launcher`` re-exports :func:`benchmark`).

How one figure is measured (defaults in brackets; docs/benchmarks.md says why):

1. **Probe.** One call, timed alone: the first estimate of the per-call time (it may include
   lazy loading, JIT, pool growth; it is warm-up, never a sample).
2. **Warm-up by time.** Rounds of samples, each sample a batch of ``k`` back-to-back calls
   between one pair of events, ``k`` chosen from the latest estimate (rule 3); a round lasts
   max(``warmup_ms`` / 4, ``min_time_ms`` / 10) of GPU time. Warm-up ends when
   it has run at least ``warmup_ms`` [25] of GPU time and ``warmup`` calls, *and* the per-call
   medians of the last ``stable_rounds`` [3] rounds (same ``k``) agree within ``stable_tol``
   [2 %] (max - min over their median): the figure no longer drifts over about a third of the
   measurement time. Or, unstable, after ``max_warmup_ms`` [500] of wall time
   (``warmup_stable`` is then False).
3. **Batch.** ``k = ceil(sample_ms / per_call_ms)`` clamped to [``min_batch``, ``max_batch``]
   ([0.2 ms], [1, 250]), so a sample lasts at least ~0.2 ms: the ~0.5 µs event resolution and the
   gaps between launches stop mattering. Once chosen, ``k`` changes only when the new choice
   differs by more than 25 % (hysteresis: a per-call time near a boundary must not flip ``k``
   forever). A sample's per-call time is its batch time / ``k``.
4. **Measure.** Rounds of samples (at most ``round_ms`` [10] of GPU time each) until at least
   ``min_repeat`` [10] samples and ``min_time_ms`` [100] of measured GPU time. If the spread is
   then above ``max_spread`` [5 %], measuring continues up to ``max_time_ms`` [4 x
   min_time_ms]; the figure is ``noisy`` if the spread is still above ``max_spread`` at the end.
   ``max_repeat`` [10 000] samples and ``max_wall_ms`` [10 000] of wall time bound everything.
5. **Spread** = (p90 - p10) / median of the per-call samples (linear-interpolated quantiles):
   the relative width of the central 80 % of the samples. Unlike min/max or the standard
   deviation, a few preempted samples do not move it.

Each round is queued behind a one-thread ``gate_wait`` kernel that spins until the host has
queued the whole round (or 1 s passes), then every event and call of the round runs back to
back, as nvbench's blocking kernel does. Events are chained: sample ``i`` runs from event ``i``
to event ``i + 1``, so no GPU idle time falls between samples. Rounds stay under ~256 queued
operations so the launch queue cannot fill while the gate is closed; a round whose gate timed
out (the host blocked while queuing, e.g. a pageable copy or a sync inside ``fn``) is discarded
and the rest of the measurement runs ungated. Ungated rounds start with a short untimed lead-in
of calls so the GPU is already busy when the first event is recorded.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

__all__ = [
    "benchmark", "BenchResult", "Policy", "Plan", "Round", "measure_rounds",
    "choose_batch", "next_batch", "relative_spread", "quantile", "is_stable", "warmup_done",
    "warmup_round_ms", "samples_for", "measure_stop", "lead_calls", "is_noisy", "AS_DICT_KEYS",
    "WARMUP_MS", "MAX_WARMUP_MS", "MIN_TIME_MS", "MIN_REPEAT", "MAX_REPEAT", "MAX_SPREAD",
    "STABLE_TOL", "STABLE_ROUNDS", "SAMPLE_MS", "MAX_BATCH", "ROUND_MS", "MAX_WALL_MS",
]

# defaults of benchmark(); see the module docstring and docs/benchmarks.md
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

# as_dict() keys, in order (documented in docs/benchmarks.md)
AS_DICT_KEYS = ("name", "median_ms", "min_ms", "max_ms", "p10_ms", "p90_ms", "n", "spread", "noisy",
                "max_spread", "batch", "calls", "measured_ms", "wall_ms", "warmup_ms", "warmup_calls",
                "warmup_stable", "stop", "gated", "host_bound", "gate_timeouts")


# --- results ----------------------------------------------------------------------------------

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


# --- the loop ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """One round to run: ``samples`` timed samples of ``batch`` calls each. ``est_ms``: the
    current per-call estimate (None before the probe). ``phase``: "probe", "warmup", "measure"."""

    batch: int
    samples: int
    est_ms: "float | None"
    phase: str


@dataclass
class Round:
    """What a timer measured for one Plan: ``batch_ms`` one GPU time per sample (a whole batch);
    ``wall_ms`` the round's host wall time (queuing + synchronization); ``enqueue_ms`` the host
    time spent queuing the timed part; ``calls`` how many times ``fn`` ran (lead-in included);
    ``gated`` whether the round ran behind the gate; ``gate_timed_out`` whether the gate opened
    by timeout (the round is then discarded)."""

    batch_ms: list
    wall_ms: float
    enqueue_ms: float = float("nan")
    calls: int = 0
    gated: bool = False
    gate_timed_out: bool = False


def measure_rounds(fn, timer, policy: Policy, *, name: str = "") -> BenchResult:
    """Drive ``timer`` through probe, warm-up and measurement by ``policy``; return the result.

    ``timer`` has ``max_samples(batch) -> int`` (samples one round may hold) and
    ``time_round(fn, plan) -> Round``. :func:`benchmark` passes an event timer on a stream;
    other sources of timings (a whole multi-stream run, a fake in the tests) implement the same
    two methods. Raises CudaKitError when no round completed within ``max_wall_ms``."""
    # warm-up: the probe, then rounds until warm (time + count + stable) or out of time
    history: list[tuple[int, float]] = []
    est = None
    batch = None
    w_gpu = w_wall = 0.0
    w_calls = timeouts = 0
    stable = False
    while True:
        if est is None:
            plan = Plan(policy.batch or policy.min_batch, 1, None, "probe")
        else:
            batch = next_batch(batch, est, policy)
            cap = min(timer.max_samples(batch), MAX_ROUND_SAMPLES)
            plan = Plan(batch, samples_for(batch * est, warmup_round_ms(policy), 1, cap), est, "warmup")
        r = timer.time_round(fn, plan)
        w_wall += r.wall_ms
        w_calls += r.calls
        if r.gate_timed_out:
            timeouts += 1
        elif r.batch_ms:
            w_gpu += float(sum(r.batch_ms))
            est = statistics.median(r.batch_ms) / plan.batch
            if plan.phase == "warmup":
                history.append((plan.batch, est))
            stable = is_stable(history, tol=policy.stable_tol, rounds=policy.stable_rounds)
        if est is not None and warmup_done(gpu_ms=w_gpu, wall_ms=w_wall, calls=w_calls, stable=stable,
                                           policy=policy):
            break
        if est is None and w_wall >= policy.max_wall_ms:
            break
    # measurement
    batch = next_batch(batch, est, policy)
    samples: list[float] = []
    measured = 0.0
    wall = w_wall
    rounds = host_paced = ungated = 0
    while True:
        have = len(samples)
        cap = min(timer.max_samples(batch), MAX_ROUND_SAMPLES, policy.max_repeat - have)
        need = max(policy.min_repeat - have, 0)
        want = policy.min_time_ms - measured
        if want <= 0 and need == 0:  # the extension, a quarter of the minimum at a time
            want = policy.min_time_ms / 4.0
        want = min(want, policy.round_ms)
        plan = Plan(batch, samples_for(None if est is None else batch * est, want, need, cap), est, "measure")
        r = timer.time_round(fn, plan)
        wall += r.wall_ms
        if r.gate_timed_out:
            timeouts += 1
        elif r.batch_ms:
            samples.extend(b / plan.batch for b in r.batch_ms)
            gpu = float(sum(r.batch_ms))
            measured += gpu
            rounds += 1
            if not r.gated:
                ungated += 1
                if math.isfinite(r.enqueue_ms) and r.enqueue_ms >= HOST_BOUND_RATIO * gpu:
                    host_paced += 1
            est = statistics.median(samples)
        stop = measure_stop(samples, measured, wall, policy)
        if stop is None and not samples and wall >= policy.max_wall_ms:
            from .errors import CudaKitError

            raise CudaKitError(f"benchmark {name or 'fn'}: no round completed in {policy.max_wall_ms:.0f} ms "
                               f"({timeouts} gate timeouts): does fn synchronize or block the host?")
        if stop is not None:
            break
    return BenchResult(name=name, samples_ms=samples, batch=batch, measured_ms=measured, warmup_ms=w_gpu,
                       warmup_calls=w_calls, warmup_stable=stable, max_spread=policy.max_spread, stop=stop,
                       gated=rounds > 0 and ungated == 0, host_bound=ungated > 0 and 2 * host_paced > ungated,
                       wall_ms=wall, gate_timeouts=timeouts)


# --- the CUDA part ----------------------------------------------------------------------------

def _create_event(device):
    """A timing event of the kit (replaced by a fake in the CPU tests)."""
    from .event import Event

    return Event.create(device, timing=True)


class _Gate:
    """``launch(stream)`` queues the gate kernel (a small seam the CPU tests replace)."""

    __slots__ = ("launch",)

    def __init__(self, launch):
        self.launch = launch


class _EventTimer:
    """Times rounds on one kit stream with kit events: owns the events (reused), the L2 flush
    buffer and the gate (kernel ``gate_wait`` of the kit's "overlap" artifact and two flags in
    pinned memory). ``close()`` synchronizes the stream, then frees them."""

    def __init__(self, stream, *, flush_l2: bool = False, gate: bool = True):
        self.stream = stream
        self.device = stream.device
        self._events: list = []
        self._flush = None
        self._flags_arr = self._flags = self._gate = None
        self.gate_error: "str | None" = None
        try:
            if flush_l2:
                import numpy as np

                from .memory import empty

                l2 = int(self.device.attribute("l2_cache_size"))
                self._flush = empty(max(2 * l2, 1 << 20), np.uint8, stream=stream)
            if gate:
                self._open_gate()
        except BaseException:
            self.close()
            raise

    def _open_gate(self) -> None:
        import numpy as np

        try:
            from ._launch import LaunchPlan  # lazy like every import here: bench imports standalone
            from .memory import empty
            from .module import kit_kernel

            kernel = kit_kernel("overlap", "gate_wait")
            self._flags_arr = empty(2, np.uint32, stream=self.stream, kind="pinned")
            self._flags = self._flags_arr.numpy()
            self._flags[:] = 0
            timeout_ns = np.uint64(int(GATE_TIMEOUT_S * 1e9))
            flags_arr = self._flags_arr
            # the same kernel as the overlap experiment's gate (experiments/overlap/workload.py)
            plan = LaunchPlan(kernel, self.device, 1, 1, (flags_arr.ptr, timeout_ns))
            self._gate = _Gate(plan.launch)
        except Exception as exc:  # no gate (artifact missing, ...): rounds run ungated, still chained
            self.gate_error = f"{type(exc).__name__}: {exc}"
            self._gate = None

    def _ops_per_sample(self, batch: int) -> int:
        return batch + 1 if self._flush is None else 4  # calls + event; memset + 2 events + call

    def _fits_gate(self, batch: int, samples: int) -> bool:
        return self._gate is not None and samples * self._ops_per_sample(batch) + 2 <= GATE_MAX_OPS

    def max_samples(self, batch: int) -> int:
        if self._gate is not None:
            n = (GATE_MAX_OPS - 2) // self._ops_per_sample(batch)
            if n >= 1:
                return n
        return MAX_ROUND_SAMPLES

    def _event_pool(self, count: int) -> list:
        while len(self._events) < count:
            self._events.append(_create_event(self.device))
        return self._events[:count]

    def time_round(self, fn, plan: Plan) -> Round:
        s = self.stream
        n, k = plan.samples, plan.batch
        flush = self._flush
        gated = self._fits_gate(k, n)
        lead = 0 if (gated or flush is not None) else lead_calls(plan.est_ms, k)
        evs = self._event_pool(n + 1 if flush is None else 2 * n)
        if flush is not None:
            from .memory import memset
        t0 = time.perf_counter()
        if gated:
            self._flags[:] = 0
            self._gate.launch(s)
        try:
            t1 = time.perf_counter()
            for _ in range(lead):
                fn(s)
            if flush is None:
                evs[0].record(s)
                for i in range(n):
                    for _ in range(k):
                        fn(s)
                    evs[i + 1].record(s)
            else:
                for i in range(n):
                    memset(flush, 0x5A, stream=s)
                    evs[2 * i].record(s)
                    fn(s)
                    evs[2 * i + 1].record(s)
            enqueue_ms = (time.perf_counter() - t1) * 1e3
        finally:
            if gated:
                self._flags[0] = 1  # open even when queuing failed, or the GPU spins until the timeout
        s.sync()
        timed_out = bool(gated and self._flags[1])
        if timed_out:  # the host blocked while the gate was closed: the rest runs ungated
            self._gate = None
            self.gate_error = "gate timed out"
        if flush is None:
            batch_ms = [evs[i].elapsed_ms(evs[i + 1]) for i in range(n)]
        else:
            batch_ms = [evs[2 * i].elapsed_ms(evs[2 * i + 1]) for i in range(n)]
        wall_ms = (time.perf_counter() - t0) * 1e3
        return Round(batch_ms, wall_ms, enqueue_ms, lead + n * k, gated, timed_out)

    def close(self) -> None:
        """Wait for the stream (the gate and the flush read these buffers), then free. Idempotent."""
        try:
            if not getattr(self.stream, "is_closed", False):
                self.stream.sync()
        finally:
            for e in self._events:
                e.close()
            self._events = []
            self._gate = None
            self._flags = None  # the numpy view must not outlive the pinned memory
            for buf in (self._flush, self._flags_arr):
                if buf is not None:
                    buf.close()
            self._flush = self._flags_arr = None


def _open_timer(stream, *, flush_l2: bool, gate: bool):
    """The timer :func:`benchmark` uses (the CPU tests replace this function by a fake)."""
    from .stream import as_stream

    s = as_stream(stream)
    if s.is_capturing:
        from .errors import StreamError

        raise StreamError("benchmark synchronizes its stream: it cannot run on a stream being captured")
    return _EventTimer(s, flush_l2=flush_l2, gate=gate)


def benchmark(fn, *, stream, warmup_ms: float = WARMUP_MS, min_time_ms: float = MIN_TIME_MS,
              min_repeat: "int | None" = None, max_repeat: int = MAX_REPEAT, batch: "int | None" = None,
              flush_l2: bool = False, name: str = "", max_spread: "float | None" = MAX_SPREAD,
              warmup: "int | None" = None, repeat: "int | None" = None, max_warmup_ms: float = MAX_WARMUP_MS,
              max_time_ms: "float | None" = None, gate: bool = True, min_batch: int = 1,
              max_batch: int = MAX_BATCH, sample_ms: float = SAMPLE_MS, stable_tol: float = STABLE_TOL,
              max_wall_ms: float = MAX_WALL_MS) -> BenchResult:
    """Time ``fn(stream)`` with CUDA events on ``stream``; **synchronizes** ``stream`` (once per
    round) and returns when done.

    ``fn`` must queue its work on the stream it is given and must not synchronize (a sync, or a
    pageable copy, while the gate is closed stalls the round until the gate's 1 s timeout; the
    round is then discarded and the rest runs ungated: pass ``gate=False`` for such ``fn``).
    Warms up by time until stable, times batches of back-to-back calls (``batch`` None: chosen
    so a sample lasts ``sample_ms``), measures for at least ``min_time_ms`` of GPU time and
    ``min_repeat`` samples, extends up to ``max_time_ms`` while the spread is above
    ``max_spread`` and flags the result ``noisy`` if it stays there: see the module docstring.
    ``warmup`` / ``repeat`` (the old counts) are minimums: at least ``warmup`` untimed calls,
    at least ``repeat`` samples (``min_repeat`` wins when larger; default 10). With
    ``flush_l2``, a buffer twice the L2 size is overwritten before every sample (outside the
    events) so inputs do not come from cache; each sample is then one call (``batch`` > 1 with
    ``flush_l2`` raises ValueError). Asynchronous faults of ``fn`` surface at the round's sync.
    Raises ValueError for inconsistent parameters, StreamError for a capturing stream."""
    if flush_l2:
        if batch not in (None, 1):
            raise ValueError("flush_l2 times every call cold, one per sample: batch must be 1 or None")
        batch = 1
    if repeat is not None and repeat < 1:
        raise ValueError("repeat must be >= 1")
    if warmup is not None and warmup < 0:
        raise ValueError("warmup must be >= 0")
    reps = [x for x in (min_repeat, repeat) if x is not None]
    policy = Policy(warmup_ms=warmup_ms, max_warmup_ms=max_warmup_ms, min_warmup=warmup or 0,
                    stable_tol=stable_tol, min_time_ms=min_time_ms, max_time_ms=max_time_ms,
                    min_repeat=max(reps) if reps else MIN_REPEAT, max_repeat=max([max_repeat, *reps]),
                    max_spread=max_spread, sample_ms=sample_ms, batch=batch, min_batch=min_batch,
                    max_batch=max(max_batch, min_batch), max_wall_ms=max_wall_ms)
    timer = _open_timer(stream, flush_l2=flush_l2, gate=gate)
    try:
        return measure_rounds(fn, timer, policy, name=name or getattr(fn, "__name__", "fn"))
    finally:
        timer.close()
