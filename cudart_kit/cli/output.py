"""Output helpers of the ``cudart-kit`` command: plain aligned tables and key/value lines, a
printer that uses ``rich`` in a terminal, JSON (documents and the error object, schema
cudart-kit/error/1) and output files. Pure formatting and file checks: nothing
here parses arguments, touches the driver or exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

from .exits import UsageError

__all__ = ["ERROR_SCHEMA", "rich_available", "use_rich", "render_table", "render_pairs", "Printer", "to_json",
           "error_document", "error_line", "check_writable", "write_json_file", "PROG"]

PROG = "cudart-kit"
from ..errors import ERROR_SCHEMA, error_document  # the error object lives with the errors


def rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def use_rich(stream) -> bool:
    """Rich tables only for a terminal, and only when rich is installed (the ``cli`` extra)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and rich_available()


def render_table(headers: list[str], rows: list[list], *, right: set | None = None) -> str:
    """Plain aligned text: a header, a rule, the rows. Columns in ``right`` are right-aligned
    (numbers), the others left-aligned. Cells are converted with str(); None shows as "-"."""
    right = right or set()
    cells = [[("-" if c is None else str(c)) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))

    def fmt(row):
        parts = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(row)]
        return "  ".join(parts).rstrip()

    lines = [fmt(headers), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in cells]
    return "\n".join(lines)


def render_pairs(pairs: list[tuple[str, str]], indent: int = 2) -> str:
    """``label: value`` lines with the values aligned."""
    if not pairs:
        return ""
    width = max(len(label) for label, _ in pairs) + 1
    return "\n".join(" " * indent + f"{label + ':':<{width}} {value}" for label, value in pairs)


class Printer:
    """Writes tables and key/value sections to stdout, through rich in a terminal."""

    def __init__(self, stream=None, rich: bool | None = None):
        self.stream = stream or sys.stdout
        self.rich = use_rich(self.stream) if rich is None else rich
        self._console = None
        if self.rich:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)

    def line(self, text: str = "") -> None:
        if self._console is not None:
            self._console.print(text, markup=False)
        else:
            self.stream.write(text + "\n")

    def rich_print(self, renderable) -> None:
        """Print a rich renderable (a Table); only when ``self.rich``."""
        self._console.print(renderable)

    def title(self, text: str) -> None:
        if self._console is not None:
            from rich.text import Text

            self._console.print(Text(text, style="bold"))
        else:
            self.stream.write(text + "\n")

    def table(self, headers, rows, *, right=None, title: str | None = None) -> None:
        right = right or set()
        if self._console is not None:
            from rich.table import Table
            from rich.text import Text

            # Text() cells: data such as "[pinned]" must not be read as rich markup
            t = Table(title=None if title is None else Text(title), title_justify="left", header_style="bold")
            for i, h in enumerate(headers):
                # fold, not crop: a UUID or bus id cut short with an ellipsis is useless
                t.add_column(Text(h), justify="right" if i in right else "left", overflow="fold")
            for row in rows:
                t.add_row(*[Text("-" if c is None else str(c)) for c in row])
            self._console.print(t)
            return
        if title:
            self.stream.write(title + "\n")
        self.stream.write(render_table(headers, rows, right=right) + "\n")

    def pairs(self, pairs, *, title: str | None = None) -> None:
        if self._console is not None:
            from rich.table import Table
            from rich.text import Text

            t = Table(title=None if title is None else Text(title), title_justify="left", show_header=False,
                      box=None, pad_edge=False)
            t.add_column(style="dim")
            t.add_column()
            for label, value in pairs:
                t.add_row(Text(label), Text(str(value)))
            self._console.print(t)
            return
        if title:
            self.stream.write(title + "\n")
        self.stream.write(render_pairs(pairs) + "\n")


def to_json(doc: dict) -> str:
    """Stable JSON: keys in the order the gatherers build them, 2-space indent."""
    return json.dumps(doc, indent=2, default=str)


def error_line(command: str | None, message: str, label: str = "error") -> None:
    """One line on stderr, ``cudart-kit COMMAND: LABEL: message`` (whitespace collapsed to one
    line), after flushing what the command printed on stdout."""
    text = " ".join(str(message).split())
    prefix = f"{PROG} {command}" if command else PROG
    with contextlib.suppress(OSError, ValueError):  # what the command printed comes first, also in one pipe
        sys.stdout.flush()
    sys.stderr.write(f"{prefix}: {label}: {text}\n")
    sys.stderr.flush()


def check_writable(path, option: str) -> None:
    """Refuse (UsageError) an output path whose directory is missing or read-only, before
    minutes of measuring rather than after."""
    if path is None:
        return
    parent = Path(path).parent
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{option} {path}: directory {str(parent)!r} is not writable")


def write_json_file(path, doc: dict) -> Path:
    """Write ``doc`` to ``path`` exactly as ``--json`` prints it."""
    out = Path(path)
    out.write_text(to_json(doc) + "\n")
    return out
