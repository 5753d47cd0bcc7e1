"""The stream-overlap experiment: host -> device copy, a kernel of tunable cost, device -> host
copy, split into C chunks over S streams, measured against the serial run and the ideal bound.

Every copy and launch is timed with events on its own stream, so each result carries its real
timeline (:mod:`cudart_kit.trace`). See docs/overlap.md for the bound formula, the NVTX range
names and how to read the results. One module per job, imports pointing one way::

    model       the bound model, chunking, issue order, the numpy reference (pure)
    results     result dataclasses, the JSON document, the table and summary    <- model
    plot        matplotlib figures of results                                  <- results
    workload    the device side: kernels, buffers, one timed run, verification <- model
    experiment  sampling, serial runs, calibration, run_overlap, sweep_iters   <- workload, results

Importing touches no driver and no matplotlib; the names below are this package's API.
"""

from __future__ import annotations

from .experiment import (
    MAX_REPEAT, MAX_SPREAD, MAX_WALL_MS, MAX_WARMUP_MS, MIN_TIME_MS, STABLE_TOL, WARMUP_MS,
    calibrate_balanced_iters, run_overlap, sample_runs, sampling_policy, sweep_iters,
)
from .model import (
    FMA_A, FMA_B, FMA_DB, MEMORY_KINDS, ORDERS, PHASES, SIMPLESTREAMS, balanced_iters, bound_ideal_ms,
    bound_max_speedup, bound_pipeline_ms, bound_serial_ms, bound_streams_ms, chunk_bounds, efficiency,
    elements_for, fma_loop_reference, issue_order, kernel_share, parse_int_list, speedup, stream_of_chunk,
)
from .plot import plot_results, plot_sweep
from .results import (
    SCHEMA, TABLE_HEADERS, OverlapReport, OverlapResult, SerialResult, format_table, summary_lines, table_rows,
)
from .workload import (
    BLOCK, GATE_TIMEOUT_S, MAX_GRID, RANGES, STAGE_RANGES, fma_loop_f32, gate_wait, overlap_kernel,
)

__all__ = [
    # pure arithmetic
    "bound_serial_ms", "bound_pipeline_ms", "bound_streams_ms", "bound_ideal_ms", "bound_max_speedup",
    "speedup", "efficiency", "balanced_iters", "chunk_bounds", "stream_of_chunk", "issue_order",
    "fma_loop_reference", "kernel_share", "elements_for",
    # device side
    "fma_loop_f32", "gate_wait", "overlap_kernel", "run_overlap", "sweep_iters", "calibrate_balanced_iters",
    "sampling_policy", "sample_runs",
    # results
    "OverlapResult", "SerialResult", "OverlapReport", "format_table", "summary_lines",
    "plot_results", "plot_sweep", "parse_int_list", "table_rows", "TABLE_HEADERS", "GATE_TIMEOUT_S",
    "SCHEMA", "ORDERS", "MEMORY_KINDS", "PHASES", "FMA_A", "FMA_B", "FMA_DB", "SIMPLESTREAMS",
    # sampling rules and NVTX range names
    "WARMUP_MS", "MAX_WARMUP_MS", "STABLE_TOL", "MIN_TIME_MS", "MAX_SPREAD", "MAX_REPEAT", "MAX_WALL_MS",
    "RANGES", "STAGE_RANGES",
]
