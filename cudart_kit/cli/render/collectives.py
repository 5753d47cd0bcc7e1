"""Text of ``cudart-kit collectives``: nccl-tests' report (the header naming ranks and devices,
one line per size, the footer with ``# Avg bus bandwidth``) from the cudart-kit/collectives/1
document, or line by line as the benchmark measures (:class:`LineSink`). The lines themselves
are made by :mod:`cudart_kit.collectives.report` (pure, tested without a GPU)."""

from __future__ import annotations

import sys

from ..output import Printer

__all__ = ["collectives_lines", "print_collectives", "LineSink"]


def collectives_lines(doc: dict) -> list[str]:
    """The whole report of a document, as nccl-tests prints it."""
    from ...collectives.report import report_lines

    return report_lines(doc)


def print_collectives(doc: dict, out: Printer) -> None:
    for line in collectives_lines(doc):
        out.line(line)


class LineSink:
    """Writes each line as it comes, flushed: rows appear while the sweep runs, as nccl-tests'
    do. Plain text even in a terminal (rich would wrap the fixed-width columns)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        self.stream.write(line + "\n")
        self.stream.flush()
