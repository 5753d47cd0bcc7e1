"""What every bandwidth test shares: sizes (the kit's one size parser), units, the measurement
rules, :class:`Options`, a device's identity and ceilings, and one timed figure of back-to-back
copies (:func:`time_copies`, over :func:`cudart_kit.bench.benchmark`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import CudaKitError

__all__ = [
    "SCHEMA", "DIRECTIONS", "HOST_MEMORY", "MODES", "QUICK_SIZE", "KiB", "MiB", "GiB", "SizeError",
    "parse_size", "format_size", "sizes_for", "copies_per_sample", "bandwidth_gbps", "Options",
    "time_copies", "WARMUP_MS", "MAX_WARMUP_MS", "MIN_TIME_MS", "MAX_TIME_MS", "MAX_SPREAD",
]

SCHEMA = "cudart-kit/bandwidth/1"
DIRECTIONS = ("H2D", "D2H", "D2D")
HOST_MEMORY = ("pinned", "pageable", "wc")
MODES = ("quick", "range", "shmoo")
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
QUICK_SIZE = 32 * MiB  # bandwidthTest's default transfer size
SHMOO_START, SHMOO_END = 1 * KiB, 1 * GiB
RANGE_DEFAULTS = (1 * MiB, 64 * MiB, 1 * MiB)  # start, end, step
# The fewest back-to-back copies per timed sample, by size (the benchmark then raises the
# count until a sample lasts >= 0.2 ms, so event resolution and launch gaps do not dominate).
MIN_BYTES_PER_SAMPLE = 8 * MiB
MAX_COPIES_PER_SAMPLE = 100
# Measurement per figure (docs/cli.md "How figures are measured"): a bandwidth run of ten
# figures must still finish in a few seconds, and a copy is steady after a few milliseconds.
WARMUP_MS = 10.0        # GPU time of warm-up, at least
MAX_WARMUP_MS = 200.0   # wall time of warm-up, at most
MIN_TIME_MS = 40.0      # measured GPU time, at least
MAX_TIME_MS = 160.0     # ... extended up to this while the spread is above MAX_SPREAD
MAX_SPREAD = 0.05       # (p90 - p10) / median above this: the figure is flagged noisy


class SizeError(CudaKitError, ValueError):
    """A transfer size that cannot be parsed or does not fit in memory."""


# --- sizes (pure) ------------------------------------------------------------------------------

_UNITS = {"": 1, "b": 1, "k": KiB, "kb": KiB, "kib": KiB, "m": MiB, "mb": MiB, "mib": MiB,
          "g": GiB, "gb": GiB, "gib": GiB}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int) -> int:
    """Bytes from "4096", "64K", "32M", "1.5GiB" (binary units: K = 1024). Raises SizeError."""
    if isinstance(text, int):
        value, unit = float(text), ""
    else:
        m = _SIZE_RE.match(str(text))
        if not m or m.group(2).lower() not in _UNITS:
            raise SizeError(f"not a size: {text!r}; use bytes or a K/M/G suffix, e.g. 4096, 64K, 32M, 1G")
        value, unit = float(m.group(1)), m.group(2).lower()
    n = int(value * _UNITS[unit])
    if n <= 0:
        raise SizeError(f"size must be positive, got {text!r}")
    return n


def format_size(nbytes: int) -> str:
    """1024 -> "1 KiB", 33554432 -> "32 MiB", 1536 -> "1.5 KiB"."""
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if nbytes >= scale:
            value = nbytes / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.3g} {unit}"
    return f"{nbytes} B"


def sizes_for(mode: str, *, size: int | None = None, start: int | None = None,
              end: int | None = None, step: int | None = None) -> list[int]:
    """Transfer sizes of a mode.

    quick: one size (``size``, default 32 MiB). range: ``start``, ``start+step``, ... up to
    ``end`` inclusive (defaults 1 MiB..64 MiB by 1 MiB). shmoo: powers of two from ``start``
    to ``end`` (defaults 1 KiB..1 GiB), ``end`` included even when not a power of two.
    """
    if mode == "quick":
        return [size or QUICK_SIZE]
    if mode == "range":
        s0, e0, st0 = RANGE_DEFAULTS
        start, end, step = start or s0, end or e0, step or st0
        if end < start:
            raise SizeError(f"range end {format_size(end)} is below its start {format_size(start)}")
        count = (end - start) // step + 1
        if count > 10_000:
            raise SizeError(f"range {format_size(start)}..{format_size(end)} by {format_size(step)} "
                            f"is {count} sizes; use a larger --step")
        return [start + i * step for i in range(count)]
    if mode == "shmoo":
        start, end = start or SHMOO_START, end or SHMOO_END
        if end < start:
            raise SizeError(f"shmoo end {format_size(end)} is below its start {format_size(start)}")
        out, n = [], start
        while n <= end:
            out.append(n)
            n *= 2
        if out[-1] != end:
            out.append(end)
        return out
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def copies_per_sample(nbytes: int) -> int:
    """The fewest back-to-back copies one timed sample holds (1 for anything >= 8 MiB): the
    first batch of the benchmark, which then batches more copies while a sample is under 0.2 ms."""
    return max(1, min(MAX_COPIES_PER_SAMPLE, MIN_BYTES_PER_SAMPLE // max(nbytes, 1)))


def bandwidth_gbps(nbytes: int, copies: int, ms: float, direction: str) -> float:
    """GB/s (1e9 bytes/s) of ``copies`` copies of ``nbytes`` in ``ms`` milliseconds.

    Device-to-device on one device ("D2D") counts every byte twice (read and written), as
    bandwidthTest does, so the figure compares with the DRAM bandwidth; every other direction
    (a copy between two devices "P2P" included, as nvbandwidth counts it) counts each byte once."""
    factor = 2 if direction == "D2D" else 1
    if ms <= 0:
        return float("inf")
    return factor * nbytes * copies / (ms * 1e-3) / 1e9


# --- options -----------------------------------------------------------------------------------

@dataclass
class Options:
    """What to measure. ``devices``: ordinals of the host<->device and local D2D tests (None =
    device 0); ``directions`` from DIRECTIONS; ``memories`` from HOST_MEMORY; ``sizes`` in bytes;
    ``concurrent``: those devices all at once (one thread each, started together for every test)
    instead of one after another. ``testcases``: device-to-device matrices by their nvbandwidth
    names (:data:`cudart_kit.bandwidth.TESTCASES`), over ``peer_devices`` (None = every visible
    device), one matrix per testcase and size."""

    devices: list[int] | None = None
    directions: tuple = DIRECTIONS
    memories: tuple = ("pinned", "pageable")
    sizes: list[int] = field(default_factory=lambda: [QUICK_SIZE])
    mode: str = "quick"
    repeat: int = 10          # samples per figure, at least
    warmup: int = 2           # untimed copies first, at least
    concurrent: bool = False
    warmup_ms: float = WARMUP_MS
    min_time_ms: float = MIN_TIME_MS
    max_time_ms: float = MAX_TIME_MS
    max_spread: float = MAX_SPREAD
    testcases: tuple = ()
    peer_devices: list[int] | None = None


def time_copies(issue, stream, nbytes: int, opts: Options, *, name: str, gate: bool = True):
    """One figure: ``issue(stream)`` (one copy, queued) timed with :func:`cudart_kit.bench.benchmark`
    under the measurement rules of ``opts``; returns its BenchResult. The caller has made the
    stream's device current. Synchronizes the stream (once per round)."""
    from .. import bench as kit_bench  # kit_bench.benchmark looked up per call: tests replace it

    return kit_bench.benchmark(
        issue, stream=stream, warmup=opts.warmup, repeat=opts.repeat, warmup_ms=opts.warmup_ms,
        max_warmup_ms=MAX_WARMUP_MS, min_time_ms=opts.min_time_ms,
        max_time_ms=max(opts.max_time_ms, opts.min_time_ms), max_spread=opts.max_spread,
        min_batch=copies_per_sample(nbytes), gate=gate, name=name)


def _device_info(dev) -> dict:
    """Identity and ceilings of a device, for the report and the peers (the ``devices`` of the
    document)."""
    from ..query import nvml_info, pcie_bandwidth_gbps, theoretical_memory_bandwidth_gbps

    attrs = dev.attributes()
    nv = nvml_info(dev)
    gen, width = nv.get("pcie_link_generation"), nv.get("pcie_link_width")
    pcie_gbps = pcie_bandwidth_gbps(gen, width)
    return {
        "index": dev.ordinal,
        "name": dev.name,
        "pci_bus_id": str(dev.pci_bus_id),
        "theoretical_memory_gbps": theoretical_memory_bandwidth_gbps(
            attrs.get("memory_clock_rate"), attrs.get("global_memory_bus_width")),
        "pcie": {"generation": gen, "width": width, "gbps": pcie_gbps} if pcie_gbps else None,
    }
