"""The measurement loop: :func:`measure_rounds` drives any timer (``max_samples`` /
``time_round``) through probe, warm-up and measurement by a :class:`~.rules.Policy`, one
:class:`Plan` per round, each answered by a :class:`Round`. No CUDA: :mod:`.timer` supplies the
event timer, the overlap experiment and the CPU tests their own."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from .result import BenchResult
from .rules import (
    HOST_BOUND_RATIO, MAX_ROUND_SAMPLES, Policy, is_stable, measure_stop, next_batch, samples_for, warmup_done,
    warmup_round_ms,
)


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
            from ..errors import CudaKitError

            raise CudaKitError(f"benchmark {name or 'fn'}: no round completed in {policy.max_wall_ms:.0f} ms "
                               f"({timeouts} gate timeouts): does fn synchronize or block the host?")
        if stop is not None:
            break
    return BenchResult(name=name, samples_ms=samples, batch=batch, measured_ms=measured, warmup_ms=w_gpu,
                       warmup_calls=w_calls, warmup_stable=stable, max_spread=policy.max_spread, stop=stop,
                       gated=rounds > 0 and ungated == 0, host_bound=ungated > 0 and 2 * host_paced > ungated,
                       wall_ms=wall, gate_timeouts=timeouts)
