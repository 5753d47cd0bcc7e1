"""The bandwidth run: the host<->device and local device-to-device tests (:mod:`.host`) and the
device-to-device matrices (:mod:`.peer`) measured and assembled into one document (schema
cudart-kit/bandwidth/1, see docs/cli.md), a plain dict the CLI formats."""

from __future__ import annotations

from .common import SCHEMA, Options, _device_info
from .host import aggregate, attach_peers, plan_tests, run_host
from .peer import count_cells, run_testcases

__all__ = ["run", "total_tests"]

UNITS = {"bandwidth": "GB/s (1e9 bytes/s); D2D counts bytes read + written", "size": "bytes",
         "time": "milliseconds per copy (median)", "spread": "(p90 - p10) / median of the per-copy samples"}
MATRIX_UNITS = "GB/s (1e9 bytes/s), each byte counted once, as nvbandwidth; null where N/A"


def _check(opts: Options) -> None:
    if opts.repeat < 1 or opts.warmup < 0:
        raise ValueError("repeat must be >= 1 and warmup >= 0")
    if not (opts.warmup_ms >= 0 and opts.min_time_ms >= 0 and opts.max_spread >= 0):
        raise ValueError("warmup_ms, min_time_ms and max_spread must be >= 0")


def run(opts: Options, progress=None) -> dict:
    """Measure and return the bandwidth document (schema cudart-kit/bandwidth/1).

    The host<->device and local D2D tests of ``opts`` first (``results``, and ``aggregate`` in
    a concurrent run), then the device-to-device testcases (``testcases``, present only when
    asked for). ``progress(done, result)`` is called after each measurement (from worker threads
    in a concurrent run). Copies are queued on kit streams, timed with events, and synchronized
    at the end of each figure. Raises NoDriverError / NoDeviceError when the driver or a device
    is missing, SizeError when a test does not fit in device memory, ValueError when there is
    nothing to measure.
    """
    from ..device import get_device

    _check(opts)
    tests = plan_tests(opts.directions, opts.memories, opts.sizes)
    if not tests and not opts.testcases:
        raise ValueError("nothing to measure: choose at least one direction and one host memory kind, or a "
                         "device-to-device testcase")
    devs = [get_device(i) for i in (opts.devices or [0])] if tests else []
    infos = {d.ordinal: _device_info(d) for d in devs}
    results = run_host(opts, devs, tests, progress) if tests else []
    attach_peers(results, list(infos.values()))
    doc = {
        "schema": SCHEMA,
        "mode": opts.mode,
        "concurrent": bool(opts.concurrent and len(devs) > 1),
        "repeat": opts.repeat,
        "warmup": opts.warmup,
        "warmup_ms": opts.warmup_ms,
        "min_time_ms": opts.min_time_ms,
        "max_time_ms": max(opts.max_time_ms, opts.min_time_ms),
        "max_spread": opts.max_spread,
        "units": dict(UNITS),
        "devices": list(infos.values()),
        "results": results,
    }
    if doc["concurrent"]:
        doc["aggregate"] = aggregate(results)
    if opts.testcases:
        ordinals, matrices = run_testcases(opts, progress, done=len(results))
        for o in ordinals:
            if o not in infos:
                infos[o] = _device_info(get_device(o))
        doc["devices"] = [infos[o] for o in sorted(infos)]
        doc["units"]["testcases"] = MATRIX_UNITS
        doc["testcases"] = matrices
    return doc


def total_tests(opts: Options) -> int:
    """How many measurements ``run(opts)`` makes (for progress displays). Host tests are
    counted without a driver; counting the cells of device-to-device testcases asks the driver
    how many devices there are and which pairs have a peer path."""
    n = len(plan_tests(opts.directions, opts.memories, opts.sizes)) * len(opts.devices or [0])
    if opts.testcases:
        from ..device import device_count, get_device

        ordinals = list(opts.peer_devices) if opts.peer_devices is not None else list(range(device_count()))
        n += count_cells(opts, ordinals, lambda a, b: get_device(a).can_access_peer(get_device(b)))
    return n
