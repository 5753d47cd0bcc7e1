"""The device-to-device testcases of NVIDIA's nvbandwidth, under its names, as pure data: which
copy each cell of a testcase's matrix measures (source, destination, the GPU that issues it),
which cells are N/A and why, and the matrix's part of the bandwidth document. No driver here:
:mod:`.peer` measures the cells.

A matrix has a row and a column per device (labelled by ordinal). Cell [r][c] of a *read*
testcase is a copy from GPU c into GPU r issued on GPU r (r pulls); of a *write* testcase, a
copy from GPU r into GPU c issued on GPU r (r pushes). The bidirectional variants time the same
copy while the mirror copy (the same kind, issued by the other GPU) runs at the same time. The
diagonal is N/A (a device's copy to itself is the local D2D test), and so is every pair without
a peer path, as in nvbandwidth; a testcase with no measurable cell is "waived". GB/s count each
byte once (1e9 bytes/s), as nvbandwidth does.
"""

from __future__ import annotations

from dataclasses import dataclass

from .common import bandwidth_gbps

__all__ = ["Testcase", "TESTCASES", "TESTCASE_NAMES", "resolve_testcases", "plan_matrix", "matrix_cell",
           "matrix_document", "NA_SAME_DEVICE", "NA_NO_PEER"]

NA_SAME_DEVICE = "same device"
NA_NO_PEER = "no peer path"


@dataclass(frozen=True)
class Copy:
    """One copy of a cell: from device ``src`` to device ``dst``, queued on a stream of ``issuer``."""

    src: int
    dst: int
    issuer: int


@dataclass(frozen=True)
class Testcase:
    """One nvbandwidth device-to-device copy-engine testcase. ``write``: the row GPU pushes to the
    column GPU (else it pulls from it); ``bidirectional``: the mirror copy runs meanwhile."""

    name: str
    write: bool
    bidirectional: bool

    def copy(self, row: int, column: int) -> Copy:
        """The measured copy of cell [row][column]."""
        return Copy(row, column, row) if self.write else Copy(column, row, row)

    def mirror(self, row: int, column: int) -> "Copy | None":
        """The copy that runs during the measurement in a bidirectional testcase (not timed):
        the same kind of copy issued by the column GPU, so data flows both ways at once."""
        if not self.bidirectional:
            return None
        return Copy(column, row, column) if self.write else Copy(row, column, column)

    def accesses(self, row: int, column: int) -> tuple[tuple[int, int], ...]:
        """(accessing device, owning device) pairs the cell needs peer access for: the issuer of
        each copy reaches the memory of the other device."""
        out = [(row, column)]
        if self.bidirectional:
            out.append((column, row))
        return tuple(out)

    @property
    def flow(self) -> str:
        """Where the data of a cell goes, in the matrix's terms."""
        return "row -> column" if self.write else "column -> row"

    @property
    def title(self) -> str:
        """The line above the matrix: the testcase, the data flow and who issues the copy."""
        arrow = "GPU(row) -> GPU(column)" if self.write else "GPU(row) <- GPU(column)"
        verb = "pushes to" if self.write else "pulls from"
        both = ", the mirror copy running meanwhile" if self.bidirectional else ""
        return f"copy-engine memcpy {arrow}: the row GPU {verb} the column GPU{both}; GB/s"

    @property
    def description(self) -> str:
        what = ("a copy from the row GPU into the column GPU" if self.write
                else "a copy from the column GPU into the row GPU")
        text = f"cuMemcpyPeerAsync between each pair of GPUs with a peer path: {what}, issued on the row GPU"
        if self.bidirectional:
            text += ("; a copy of the same size in the other direction, issued on the column GPU, runs at the "
                     "same time and is not timed")
        return text


TESTCASES: dict[str, Testcase] = {tc.name: tc for tc in (
    Testcase("device_to_device_memcpy_read_ce", write=False, bidirectional=False),
    Testcase("device_to_device_memcpy_write_ce", write=True, bidirectional=False),
    Testcase("device_to_device_bidirectional_memcpy_read_ce", write=False, bidirectional=True),
    Testcase("device_to_device_bidirectional_memcpy_write_ce", write=True, bidirectional=True),
)}
TESTCASE_NAMES = tuple(TESTCASES)


def resolve_testcases(names) -> tuple[str, ...]:
    """Testcase names in the order of :data:`TESTCASES`, duplicates dropped; ``"all"`` is every
    one, and a comma list counts as several names. ValueError naming the known ones otherwise."""
    wanted: list[str] = []
    for name in names:
        for part in str(name).split(","):
            part = part.strip().lower()
            if part:
                wanted.extend(TESTCASE_NAMES if part == "all" else [part])
    unknown = [n for n in wanted if n not in TESTCASES]
    if unknown:
        raise ValueError(f"unknown testcase {', '.join(unknown)}: choose from {', '.join(TESTCASE_NAMES)} or all")
    return tuple(n for n in TESTCASE_NAMES if n in wanted)


def plan_matrix(tc: Testcase, ordinals: list[int], can_access) -> dict[tuple[int, int], "str | None"]:
    """Every cell [row][column] of ``tc`` over ``ordinals``: None when it is measured, else why it
    is N/A. ``can_access(a, b)``: whether device a can access device b's memory directly."""
    plan: dict[tuple[int, int], str | None] = {}
    for r in ordinals:
        for c in ordinals:
            if r == c:
                plan[(r, c)] = NA_SAME_DEVICE
            elif not all(can_access(a, b) for a, b in tc.accesses(r, c)):
                plan[(r, c)] = NA_NO_PEER
            else:
                plan[(r, c)] = None
    return plan


def matrix_cell(tc: Testcase, row: int, column: int, nbytes: int, result) -> dict:
    """The measured cell [row][column] from a :class:`cudart_kit.bench.BenchResult` of single
    copies (times per copy, ms)."""
    cp = tc.copy(row, column)
    median = result.median_ms
    return {
        "row": row,
        "column": column,
        "src": cp.src,
        "dst": cp.dst,
        "issued_on": cp.issuer,
        "bytes": nbytes,
        "gbps": bandwidth_gbps(nbytes, 1, median, "P2P"),
        "copies_per_sample": result.batch,
        "samples": len(result.samples_ms),
        "median_ms": median,
        "min_ms": result.min_ms,
        "max_ms": result.max_ms,
        "p10_ms": result.quantile_ms(0.1),
        "p90_ms": result.quantile_ms(0.9),
        "spread": result.spread,
        "noisy": result.noisy,
        "measured_ms": result.measured_ms,
        "warmup_stable": result.warmup_stable,
        "gated": result.gated,
        "stop": result.stop,
    }


def _waiver(ordinals: list[int], plan: dict) -> "str | None":
    if any(reason is None for reason in plan.values()):
        return None
    if len(ordinals) < 2:
        return (f"peer tests need 2+ GPUs: {len(ordinals)} device{'' if len(ordinals) == 1 else 's'} "
                "in this run (the matrices take every visible GPU unless --device names them)")
    return f"no pair of devices {ordinals} has a peer path (cuDeviceCanAccessPeer is 0 for every pair)"


def matrix_document(tc: Testcase, ordinals: list[int], nbytes: int, plan: dict, cells: dict) -> dict:
    """One ``testcases[]`` entry of the bandwidth document: ``gbps`` is the matrix (rows and
    columns in the order of ``devices``, null where N/A), ``na`` why each N/A cell is one (null
    where measured), ``sum_gbps`` the sum of the measured cells (nvbandwidth's SUM line),
    ``cells`` the measured cells with their timing, ``status`` "passed" or "waived" (no cell
    measurable; ``note`` says why)."""
    note = _waiver(ordinals, plan)
    matrix = [[cells[(r, c)]["gbps"] if (r, c) in cells else None for c in ordinals] for r in ordinals]
    na = [[None if (r, c) in cells else (plan[(r, c)] or "not measured") for c in ordinals] for r in ordinals]
    return {
        "name": tc.name,
        "status": "waived" if note else "passed",
        "note": note,
        "bytes": nbytes,
        "title": tc.title,
        "description": tc.description,
        "flow": tc.flow,
        "issued_on": "row",
        "bidirectional": tc.bidirectional,
        "devices": list(ordinals),
        "gbps": matrix,
        "na": na,
        "sum_gbps": sum(cell["gbps"] for cell in cells.values()),
        "cells": [cells[(r, c)] for r in ordinals for c in ordinals if (r, c) in cells],
    }
