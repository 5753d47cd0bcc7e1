"""Copy bandwidth: the host<->device test CUDA samples dropped in 12.9 (host->device,
device->host and device->device on one device; pinned, pageable and write-combined host memory;
one size, a range or a sweep; one device, several one after another or at once) and NVIDIA
nvbandwidth's device-to-device copy-engine testcases, as matrices over the GPUs
(``device_to_device_memcpy_read_ce`` and its write and bidirectional twins).

Every figure is the median of event-timed samples (:func:`cudart_kit.bench.benchmark`) in GB/s
(1e9 bytes/s); host figures are shown next to their peer from the same run. The result is one
plain dict (schema cudart-kit/bandwidth/1, see docs/cli.md) that the CLI formats.

The package, by concern::

    common   sizes (the kit's one size parser), units, the measurement rules, Options,
             a device's identity and ceilings, one timed figure (time_copies)
    host     host<->device and local D2D: the plan, peers, sums, buffers, the timed copies
    matrix   the nvbandwidth testcases as pure data: what each cell measures, N/A, the document
    peer     the matrices on the GPUs: buffers, peer access, the timed peer copies
    runner   run(): both into one document; total_tests()

Every public name the package had as one module (``cudart_kit/bandwidth.py``) is here under the
same name.
"""

from __future__ import annotations

from . import common, host, matrix, peer, runner
from .common import (
    DIRECTIONS, GiB, HOST_MEMORY, KiB, MAX_COPIES_PER_SAMPLE, MAX_SPREAD, MAX_TIME_MS, MAX_WARMUP_MS,
    MIN_BYTES_PER_SAMPLE, MIN_TIME_MS, MODES, MiB, QUICK_SIZE, RANGE_DEFAULTS, SCHEMA, SHMOO_END, SHMOO_START,
    WARMUP_MS, Options, SizeError, bandwidth_gbps, copies_per_sample, format_size, parse_size, sizes_for,
    time_copies,
)
from .host import aggregate, attach_peers, figure, plan_tests, run_host
from .matrix import TESTCASE_NAMES, TESTCASES, Testcase, matrix_cell, matrix_document, plan_matrix, resolve_testcases
from .peer import count_cells, run_testcases
from .runner import run, total_tests

__all__ = [
    "SCHEMA",
    "DIRECTIONS",
    "HOST_MEMORY",
    "MODES",
    "QUICK_SIZE",
    "SizeError",
    "parse_size",
    "format_size",
    "sizes_for",
    "copies_per_sample",
    "bandwidth_gbps",
    "figure",
    "plan_tests",
    "attach_peers",
    "aggregate",
    "Options",
    "run",
    "total_tests",
    # device-to-device matrices (nvbandwidth's testcases)
    "TESTCASES",
    "TESTCASE_NAMES",
    "Testcase",
    "resolve_testcases",
    "plan_matrix",
    "matrix_cell",
    "matrix_document",
    "run_testcases",
]
