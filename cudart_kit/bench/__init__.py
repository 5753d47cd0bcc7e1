"""Event-timed benchmarking, the kit's one measurement helper: warm up by time until the figure
is stable, time batches of back-to-back calls between CUDA events (behind a GPU-side gate so the
host's issue rate is not what is measured), measure for a minimum time, report the spread and
flag a figure whose spread stays high.

The rules (batch size, warm-up stability, when to stop, spread, noisy) are small pure functions
over numbers, tested on the CPU with fake timings; everything that touches CUDA is one class,
:class:`.timer._EventTimer`, created by :func:`.timer._open_timer`. Importing this package
touches no driver and imports no other kit module that does (``launcher`` re-exports
:func:`benchmark`).

The package, by concern: :mod:`.rules` (the defaults, :class:`Policy` and the pure rules),
:mod:`.result` (:class:`BenchResult`), :mod:`.loop` (:func:`measure_rounds`, driving any
timer through probe, warm-up and measurement), :mod:`.timer` (the CUDA event timer, the gate,
and :func:`benchmark` over them; every kit import there is lazy).

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

from .loop import Plan, Round, measure_rounds
from .result import AS_DICT_KEYS, BenchResult
from .rules import (  # every default, as before the split (tests read GATE_MAX_OPS...)
    BATCH_HYSTERESIS, EXTEND_FACTOR, GATE_MAX_OPS, GATE_TIMEOUT_S, HOST_BOUND_RATIO, LEAD_MAX_CALL_MS, LEAD_MS,
    MAX_BATCH, MAX_REPEAT, MAX_ROUND_SAMPLES, MAX_SPREAD, MAX_WALL_MS, MAX_WARMUP_MS, MIN_REPEAT, MIN_TIME_MS,
    ROUND_MS, SAMPLE_MS, STABLE_ROUNDS, STABLE_TOL, WARMUP_MS, Policy, choose_batch, is_noisy, is_stable,
    lead_calls, measure_stop, next_batch, quantile, relative_spread, samples_for, warmup_done, warmup_round_ms,
)
from .timer import benchmark

__all__ = [
    "benchmark", "BenchResult", "Policy", "Plan", "Round", "measure_rounds",
    "choose_batch", "next_batch", "relative_spread", "quantile", "is_stable", "warmup_done",
    "warmup_round_ms", "samples_for", "measure_stop", "lead_calls", "is_noisy", "AS_DICT_KEYS",
    "WARMUP_MS", "MAX_WARMUP_MS", "MIN_TIME_MS", "MIN_REPEAT", "MAX_REPEAT", "MAX_SPREAD",
    "STABLE_TOL", "STABLE_ROUNDS", "SAMPLE_MS", "MAX_BATCH", "ROUND_MS", "MAX_WALL_MS",
]
