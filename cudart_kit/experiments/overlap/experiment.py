"""The overlap experiment as a whole: how each configuration is sampled (cudart_kit.bench's
rules, one whole run per sample), the serial run of each workload, the calibration of a
balanced kernel, :func:`run_overlap` over every combination of the parameters and
:func:`sweep_iters` from copy-bound to compute-bound. Runs on streams of its own and frees
everything before returning.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Iterable, Sequence

from ... import profiling as _prof
from ...bench import Policy, Round, measure_rounds
from .model import (
    FMA_A, FMA_B, FMA_DB, MEMORY_KINDS, ORDERS, SIMPLESTREAMS, balanced_iters, check_count, elements_for,
    parse_int_list,
)
from .results import OverlapReport, OverlapResult, SerialResult, median
from .workload import GATE_TIMEOUT_S, RANGES, Run, Workload, phase_ms

__all__ = ["run_overlap", "sweep_iters", "calibrate_balanced_iters", "sampling_policy", "sample_runs",
           "WARMUP_MS", "MAX_WARMUP_MS", "STABLE_TOL", "MIN_TIME_MS", "MAX_SPREAD", "MAX_REPEAT", "MAX_WALL_MS"]

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


def sampling_policy(repeat: int = 5, *, warmup_ms: float = WARMUP_MS, min_time_ms: float = MIN_TIME_MS,
                    max_spread: float = MAX_SPREAD) -> Policy:
    """The bench rules for whole runs: one run per sample (batch 1), at least ``repeat`` runs."""
    repeat = check_count("repeat", repeat)
    return Policy(warmup_ms=warmup_ms, max_warmup_ms=MAX_WARMUP_MS, stable_tol=STABLE_TOL,
                  min_time_ms=min_time_ms, min_repeat=repeat, max_repeat=max(repeat, MAX_REPEAT),
                  max_spread=max_spread, batch=1, max_wall_ms=MAX_WALL_MS)


class _RunTimer:
    """Adapts whole runs to :func:`cudart_kit.bench.measure_rounds`: a round is one run, its
    sample the run's total time; the measured runs are kept (their timelines are reported)."""

    def __init__(self, run_once: Callable[[], Run]):
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


def sample_runs(run_once: Callable[[], Run], policy: Policy, name: str = "") -> tuple:
    """(measured runs, BenchResult): warm-up runs by time until stable, then runs until the
    policy's minimum time and count (more while the spread is high). ``run_once()`` returns
    an object with ``total_ms`` and ``issue_ms`` (a :class:`Run`); each run synchronizes."""
    timer = _RunTimer(run_once)
    res = measure_rounds(None, timer, policy, name=name)
    return timer.runs, res


def _median_run(runs: list) -> Run:
    return sorted(runs, key=lambda r: r.total_ms)[len(runs) // 2]


def _measure_serial(wl: Workload, *, iters: int, memory: str, repeat: int, gate: bool, verify: bool,
                    h2d: bool = True, policy: Policy | None = None) -> SerialResult:
    """The serial run of one workload (one stream, one chunk): verified once, then sampled."""
    policy = policy or sampling_policy(repeat)
    with _prof.range(RANGES["serial"]):
        wl.run(streams=1, chunks=1, iters=iters, memory=memory, order="depth", gate=gate, poison=verify, h2d=h2d)
        check = wl.verify(memory, iters, 1) if verify else {}
        runs, res = sample_runs(lambda: wl.run(streams=1, chunks=1, iters=iters, memory=memory, order="depth",
                                               gate=gate, poison=False, h2d=h2d), policy, f"serial {memory} {iters}")
    return SerialResult(
        memory=memory, iters=iters, size_bytes=4 * wl.n, serial_ms=median([r.total_ms for r in runs]),
        h2d_ms=median([phase_ms(r.timeline, "H2D") for r in runs]),
        kernel_ms=median([phase_ms(r.timeline, "kernel") for r in runs]),
        d2h_ms=median([phase_ms(r.timeline, "D2H") for r in runs]),
        samples_ms=[r.total_ms for r in runs], verified=check.get("ok") if verify else None, verify=check,
        timeline=_median_run(runs).timeline.snapshot(), h2d=h2d, spread=res.spread, noisy=res.noisy,
        warmup_runs=res.warmup_calls, warmup_stable=res.warmup_stable)


def _measure_configuration(wl: Workload, ser: SerialResult, *, streams: int, chunks: int, iters: int, memory: str,
                           order: str, gate: bool, verify: bool, h2d: bool, policy: Policy) -> OverlapResult:
    """One overlapped configuration: a poisoned run verified against numpy, then sampled runs."""
    def once(poison: bool = False) -> Run:
        return wl.run(streams=streams, chunks=chunks, iters=iters, memory=memory, order=order, gate=gate,
                      poison=poison, h2d=h2d)

    with _prof.range(RANGES["configuration"]):
        first = once(poison=verify)
        check = wl.verify(memory, iters, chunks) if verify else {}
        runs, sampled = sample_runs(once, policy, f"{memory} {order} S={streams} iters={iters}")
    return OverlapResult.build(
        memory=memory, order=order, streams=streams, chunks=chunks, iters=iters, size_bytes=4 * wl.n,
        serial_ms=ser.serial_ms, h2d_ms=ser.h2d_ms, kernel_ms=ser.kernel_ms, d2h_ms=ser.d2h_ms,
        overlapped_ms=median([r.total_ms for r in runs]),
        samples_ms=[r.total_ms for r in runs], issue_ms=median([r.issue_ms for r in runs]),
        gated=gate, gate_timed_out=first.gate_timed_out or any(r.gate_timed_out for r in runs),
        verified=check.get("ok") if verify else None, verify=check,
        timeline=_median_run(runs).timeline.snapshot(), h2d=h2d, spread=sampled.spread, noisy=sampled.noisy,
        warmup_runs=sampled.warmup_calls, warmup_stable=sampled.warmup_stable)


def calibrate_balanced_iters(*, size_mib: float = 256, device=0, probe_iters: int = 256, repeat: int = 3,
                             gate: bool = True, seed: int | None = None) -> dict:
    """The ``iters`` that balances the kernel against the copies for ``size_mib`` of data (see
    :func:`_calibrate`). Allocates its own buffers and streams, synchronizes, frees them."""
    n = elements_for(size_mib)
    if n < 1:
        raise ValueError(f"size_mib must hold at least one float, got {size_mib!r}")
    wl = Workload(device, n, ("pinned",), seed)
    try:
        return _calibrate(wl, probe_iters=probe_iters, repeat=repeat, gate=gate)
    finally:
        wl.close()


def _calibrate(wl: Workload, *, probe_iters: int = 256, repeat: int = 3, gate: bool = True,
               policy: Policy | None = None) -> dict:
    """Find the ``iters`` at which the kernel takes as long as the slower copy direction, from
    two serial runs (0 and ``probe_iters`` iterations) on pinned memory. The probe doubles until
    the kernel's growth is measurable. Returns the measurements and ``iters``."""
    policy = policy or sampling_policy(repeat)
    with _prof.range(RANGES["calibrate"]):
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
    between runs, frees everything before returning. With NVTX ranges on
    (:mod:`cudart_kit.profiling`), every stage runs in an ``overlap:<stage>`` range (docs/overlap.md).
    Raises NoDriverError / NoDeviceError
    without a GPU, CudaOutOfMemoryError when the buffers do not fit, ValueError for bad
    parameters."""
    if isinstance(streams, str):
        streams = parse_int_list(streams, minimum=1, what="stream counts")
    streams = [check_count("streams", s) for s in _as_list(streams, "stream counts")]
    chunks = check_count("chunks", chunks)
    repeat = check_count("repeat", repeat)
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
    n = elements_for(size_mib)
    if n < chunks:
        raise ValueError(f"{size_mib} MiB holds {n} floats: fewer than {chunks} chunks")
    say = log or (lambda _m: None)

    wl = Workload(device, n, memory, seed)
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
                        res = _measure_configuration(wl, ser, streams=s, chunks=chunks, iters=it, memory=mem,
                                                     order=od, gate=gated, verify=verify, h2d=h2d, policy=policy)
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
