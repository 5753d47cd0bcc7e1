"""The CUDA part of the benchmark: :class:`_EventTimer` times rounds on one kit stream with kit
events behind the ``gate_wait`` kernel, :func:`_open_timer` makes one (the CPU tests replace
it), and :func:`benchmark` measures a figure with it by :func:`~.loop.measure_rounds`. Every
kit import here is lazy (inside the functions), so importing the package touches no driver."""

from __future__ import annotations

import time

from .loop import Plan, Round, measure_rounds
from .result import BenchResult
from .rules import (
    GATE_MAX_OPS, GATE_TIMEOUT_S, MAX_BATCH, MAX_REPEAT, MAX_ROUND_SAMPLES, MAX_SPREAD, MAX_WALL_MS,
    MAX_WARMUP_MS, MIN_REPEAT, MIN_TIME_MS, SAMPLE_MS, STABLE_TOL, WARMUP_MS, Policy, lead_calls,
)


def _create_event(device):
    """A timing event of the kit (replaced by a fake in the CPU tests)."""
    from ..event import Event

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

                from ..memory import empty

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
            from .._launch import LaunchPlan  # lazy like every import here: bench imports standalone
            from ..memory import empty
            from ..module import kit_kernel

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
            from ..memory import memset
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
    from ..stream import as_stream

    s = as_stream(stream)
    if s.is_capturing:
        from ..errors import StreamError

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
