"""The arithmetic and the text of the collectives benchmark (:mod:`.bench` runs it): the
options, nccl-tests' element counts per op, bus-bandwidth factors, the size sweep, the table
in nccl-tests' columns and the JSON document (schema ``cudart-kit/collectives/1``). Pure: no
driver, no NCCL, so every line is tested on a CPU.

Bus bandwidth is nccl-tests' (its docs/PERFORMANCE.md): algbw = bytes / time, busbw = algbw x
2(n-1)/n for all_reduce, (n-1)/n for all_gather and reduce_scatter, 1 for broadcast and
sendrecv; all_gather and reduce_scatter count the n-rank total as their bytes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..bandwidth import SizeError, parse_size
from ..memory import bfloat16
from .backend import DTYPE_NAMES, NCCL_DTYPES, REDOPS

__all__ = ["SCHEMA", "OPS", "Options", "Counts", "bus_factor", "counts", "bandwidths", "sweep", "dtype_for",
           "shown_redop", "shown_root", "time_str", "table_header", "row_line", "header_lines", "footer_lines",
           "report_lines", "document", "validate", "ONE_RANK_NOTE"]

SCHEMA = "cudart-kit/collectives/1"
OPS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "sendrecv")
MAX_SIZES = 1000

_DTYPE_ALIASES = {"float": "float32", "half": "float16", "double": "float64", "char": "int8", "int": "int32",
                  "bf16": "bfloat16", "fp16": "float16", "fp32": "float32", "fp64": "float64"}


@dataclass(frozen=True)
class Options:
    """What to measure (nccl-tests' flags in brackets): ``op``, sizes ``min_bytes`` [-b] to
    ``max_bytes`` [-e] times ``step_factor`` [-f] (or plus ``step_bytes`` [-i] when the factor
    is 1), ``iters`` [-n], ``warmup`` [-w], ``dtype`` [-d], ``redop`` [-o], ``root`` [-r],
    ``check`` [-c]."""

    op: str = "all_reduce"
    min_bytes: int = 8
    max_bytes: int = 128 << 20
    step_factor: int = 2
    step_bytes: int = 1 << 20
    iters: int = 20
    warmup: int = 5
    dtype: str = "float32"
    redop: str = "sum"
    root: int = 0
    check: bool = True


@dataclass(frozen=True)
class Counts:
    """Elements of one size for one op (nccl-tests' getCollByteCount): ``send`` and ``recv`` per
    rank, ``param`` (the count NCCL is given, the table's count column), and the in-place
    offsets, in elements times the rank: of the send inside recv (all_gather), of the recv
    inside send (reduce_scatter)."""

    send: int
    recv: int
    param: int
    send_in_place: int = 0
    recv_in_place: int = 0

    def nbytes(self, itemsize: int) -> int:
        """The table's size column: the larger of the send and receive buffers."""
        return max(self.send, self.recv) * itemsize


def dtype_for(name) -> np.dtype:
    """A numpy dtype from the kit's or nccl-tests' name (float32/float, float16/half,
    float64/double, bfloat16 with ml_dtypes, int8, uint8, int32, uint32, int64, uint64)."""
    text = str(name).strip().lower()
    text = _DTYPE_ALIASES.get(text, text)
    if text == "bfloat16":
        if bfloat16 is None:
            raise ValueError("bfloat16 needs ml_dtypes: pip install 'cudart-kit[bf16]'")
        return bfloat16
    try:
        dt = np.dtype(text)
    except TypeError:
        dt = None
    if dt is None or dt not in NCCL_DTYPES:
        names = ", ".join(sorted(DTYPE_NAMES))
        raise ValueError(f"unknown dtype {name!r}: NCCL moves {names} (or nccl-tests' float, half, double)")
    return dt


def bus_factor(op: str, nranks: int) -> float:
    """busbw / algbw: 2(n-1)/n for all_reduce, (n-1)/n for all_gather and reduce_scatter, 1 for
    broadcast and sendrecv (nccl-tests' getBw)."""
    n = int(nranks)
    if n < 1:
        raise ValueError(f"nranks must be >= 1, got {nranks}")
    if op == "all_reduce":
        return 2.0 * (n - 1) / n
    if op in ("all_gather", "reduce_scatter"):
        return (n - 1) / n
    if op in ("broadcast", "sendrecv"):
        return 1.0
    raise ValueError(f"unknown collective {op!r}: one of {', '.join(OPS)}")


def counts(op: str, nbytes: int, itemsize: int, nranks: int) -> Counts:
    count = nbytes // itemsize
    if op in ("all_reduce", "broadcast", "sendrecv"):
        return Counts(count, count, count)
    per = count // nranks
    if op == "all_gather":
        return Counts(per, per * nranks, per, send_in_place=per)
    if op == "reduce_scatter":
        return Counts(per * nranks, per, per, recv_in_place=per)
    raise ValueError(f"unknown collective {op!r}: one of {', '.join(OPS)}")


def bandwidths(op: str, param: int, itemsize: int, seconds: float, nranks: int) -> tuple[float, float]:
    """(algbw, busbw) in GB/s (1e9 bytes/s) of one operation of ``seconds``."""
    moved = param * itemsize * (nranks if op in ("all_gather", "reduce_scatter") else 1)
    alg = moved / 1e9 / seconds if seconds > 0 else 0.0
    return alg, alg * bus_factor(op, nranks)


def sweep(min_bytes, max_bytes, factor: int = 2, step_bytes=1 << 20) -> list[int]:
    """nccl-tests' sizes: from ``min_bytes`` to ``max_bytes`` (inclusive when reached), times
    ``factor``, or plus ``step_bytes`` when the factor is 1. Sizes may be strings ("128M", by
    the kit's one size parser). Raises SizeError (a usage error) for min > max, a factor
    below 1, or more than 1000 sizes."""
    lo, hi = parse_size(min_bytes), parse_size(max_bytes)
    if lo > hi:
        raise SizeError(f"minimum size {lo} is above the maximum {hi} (-b must not exceed -e)")
    if int(factor) < 1:
        raise SizeError(f"step factor must be >= 1, got {factor}")
    step = parse_size(step_bytes)
    out, size = [], lo
    while size <= hi:
        out.append(size)
        if len(out) > MAX_SIZES:
            raise SizeError(f"more than {MAX_SIZES} sizes from {lo} to {hi}: use a factor (-f 2) or a larger step")
        size = size * int(factor) if int(factor) > 1 else size + step
    return out


def shown_redop(op: str, redop: str) -> str:
    """The table's redop column: the operator, or "none" for all_gather and broadcast."""
    return "none" if op in ("all_gather", "broadcast") else redop


def shown_root(op: str, root: int) -> int:
    return root if op == "broadcast" else -1


# --- text, in nccl-tests' columns ------------------------------------------------------------

ONE_RANK_NOTE = ("# Note: one rank: bus bandwidth needs more than one rank (busbw = algbw x {factor}); the "
                 "times measure NCCL's local copy")


def time_str(us: float) -> str:
    """nccl-tests' time column: 2 decimals below 100 us, 1 below 10 ms, none above."""
    if us >= 10000.0:
        return f"{us:7.0f}"
    if us >= 100.0:
        return f"{us:7.1f}"
    return f"{us:7.2f}"


def table_header() -> list[str]:
    return [
        f"# {'':>10}  {'':>12}  {'':>8}  {'':>6}  {'':>6}           out-of-place                       in-place          ",
        f"# {'size':>10}  {'count':>12}  {'type':>8}  {'redop':>6}  {'root':>6}  {'time':>7}  {'algbw':>6}  "
        f"{'busbw':>6} {'#wrong':>6}  {'time':>7}  {'algbw':>6}  {'busbw':>6} {'#wrong':>6}",
        f"# {'(B)':>10}  {'(elements)':>12}  {'':>8}  {'':>6}  {'':>6}  {'(us)':>7}  {'(GB/s)':>6}  "
        f"{'(GB/s)':>6}  {'':>5}  {'(us)':>7}  {'(GB/s)':>6}  {'(GB/s)':>6}  {'':>5}",
    ]


def _cell(c: dict) -> str:
    wrong = "N/A" if c.get("wrong") is None else str(c["wrong"])
    return f"  {time_str(c['time_us'])}  {c['algbw_gbps']:6.2f}  {c['busbw_gbps']:6.2f}  {wrong:>5}"


def row_line(r: dict) -> str:
    """One result as nccl-tests prints it ("%12li  %12li  %8s  %6s  %6i" then per column
    "  %7s  %6.2f  %6.2f  %5li")."""
    return (f"{r['size']:12d}  {r['count']:12d}  {r['type']:>8}  {r['redop']:>6}  {r['root']:6d}"
            + _cell(r["out_of_place"]) + _cell(r["in_place"]))


def header_lines(doc: dict) -> list[str]:
    v = doc.get("versions") or {}
    o = doc["options"]
    step = f"{o['step_factor']}(factor)" if o["step_factor"] > 1 else f"{o['step_bytes']}(bytes)"
    lines = [
        f"# cudart-kit collectives {doc['op']}: {doc['nranks']} rank(s) in {doc['nprocs']} process(es); "
        f"nccl4py {v.get('nccl4py') or '?'}, NCCL {v.get('nccl') or '?'}",
        f"# nThread 1 nGpus {doc['local_ranks']} minBytes {o['min_bytes']} maxBytes {o['max_bytes']} step: {step} "
        f"warmup iters: {o['warmup']} iters: {o['iters']} agg iters: 1 validation: {int(o['check'])} graph: 0",
        "#",
        "# Using devices",
    ]
    for r in doc["ranks"]:
        lines.append(f"#  Rank {r['rank']:2d} Group  0 Pid {r['pid']:6d} on {r['host']:>10} device {r['device']:2d} "
                     f"[0x{_bus(r['pci_bus_id']):02x}] {r['name']}")
    lines += [f"# {n}" if not n.startswith("#") else n for n in doc.get("notes", [])]
    return lines


def _bus(pci_bus_id: str) -> int:
    try:
        return int(str(pci_bus_id).split(":")[-2], 16)
    except (IndexError, ValueError):
        return 0


def footer_lines(doc: dict) -> list[str]:
    errors = doc["errors"]
    return [f"# Out of bounds values : {errors} {'FAILED' if errors else 'OK'}",
            f"# Avg bus bandwidth    : {doc['avg_busbw_gbps']:g} ", "#"]


def report_lines(doc: dict) -> list[str]:
    """The whole text report of a document: header, table, footer."""
    return header_lines(doc) + ["#"] + table_header() + [row_line(r) for r in doc["results"]] + footer_lines(doc)


def document(opts: Options, *, nranks: int, nprocs: int, local_ranks: int, ranks: list[dict], results: list[dict],
             versions: dict | None = None, notes: list[str] | None = None) -> dict:
    """The cudart-kit/collectives/1 document (keys documented in docs/cli.md)."""
    cells = [r[k] for r in results for k in ("out_of_place", "in_place")]
    bus = [c["busbw_gbps"] for c in cells]
    dtype = dtype_for(opts.dtype)
    return {
        "schema": SCHEMA, "op": opts.op, "dtype": dtype.name, "type": DTYPE_NAMES[dtype.name],
        "redop": shown_redop(opts.op, opts.redop), "root": shown_root(opts.op, opts.root),
        "nranks": nranks, "nprocs": nprocs, "local_ranks": local_ranks, "bus_factor": bus_factor(opts.op, nranks),
        "options": asdict(opts), "versions": versions or {}, "ranks": ranks,
        "units": {"size": "bytes", "count": "elements", "time_us": "microseconds per operation, mean over ranks",
                  "algbw_gbps": "1e9 bytes/s", "busbw_gbps": "1e9 bytes/s"},
        "results": results,
        "avg_busbw_gbps": sum(bus) / len(bus) if bus else 0.0,
        "wrong_total": sum(c["wrong"] or 0 for c in cells),
        "errors": sum(1 for c in cells if c["wrong"]),
        "notes": list(notes or []),
    }


def validate(opts: Options) -> None:
    """ValueError for an op, dtype or reduction the benchmark does not know, iterations < 1."""
    if opts.op not in OPS:
        raise ValueError(f"unknown collective {opts.op!r}: one of {', '.join(OPS)}")
    if opts.redop not in REDOPS:
        raise ValueError(f"unknown reduction {opts.redop!r}: one of {', '.join(REDOPS)}")
    dtype_for(opts.dtype)
    if opts.iters < 1 or opts.warmup < 0:
        raise ValueError(f"iters must be >= 1 and warmup >= 0, got {opts.iters} and {opts.warmup}")

