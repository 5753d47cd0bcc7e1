"""Text of ``cudart-kit doctor``: one row per check with its fix, and the one-line verdict,
from the cudart-kit/doctor/1 document :mod:`cudart_kit.doctor` returns."""

from __future__ import annotations

from .. import visible
from ..output import Printer

__all__ = ["doctor_rows", "doctor_summary", "print_doctor"]

_MARK = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "skip": "skip"}
_RICH_MARK = {"ok": "[green]ok[/green]", "warn": "[yellow]WARN[/yellow]", "fail": "[bold red]FAIL[/bold red]",
              "skip": "[dim]skip[/dim]"}


def doctor_rows(doc: dict) -> list[list]:
    """(status, check, detail / fix) rows of a cudart-kit/doctor/1 document."""
    rows = []
    for c in doc["checks"]:
        text = c["detail"] + (f"\n-> fix: {c['fix']}" if c.get("fix") and c["status"] in ("fail", "warn") else "")
        rows.append([_MARK.get(c["status"], c["status"]), c["name"], text])
    return rows


def doctor_summary(doc: dict, visible_devices: str | None = None) -> str:
    """The one-line verdict. After a failure it names the failed checks, and
    ``CUDA_VISIBLE_DEVICES`` when set (``visible_devices``), but repeats neither their details
    nor their fixes: those are in the report, once."""
    failed = [c["name"] for c in doc["checks"] if c["status"] == "fail"]
    if not failed:
        warns = doc["counts"].get("warn", 0)
        return "everything a user needs works" + (f" ({warns} warning(s))" if warns else "")
    return (f"{len(failed)} check(s) failed: {', '.join(failed)}{visible.note(visible_devices)}; "
            "the report says how to fix each")


def print_doctor(doc: dict, out: Printer) -> None:
    """The doctor report: one row per check with its fix under a problem; the verdict line
    too when nothing failed (a failure's verdict goes to stderr, from the command)."""
    if out.rich:
        from rich.table import Table
        from rich.text import Text

        t = Table(header_style="bold")
        for h in ("", "check", "detail"):
            t.add_column(h)
        for c in doc["checks"]:
            text = Text(c["detail"])
            if c.get("fix") and c["status"] in ("fail", "warn"):
                text.append("\nfix: ", style="bold")
                text.append(c["fix"])
            t.add_row(_RICH_MARK.get(c["status"], c["status"]), Text(c["name"]), text)
        out.rich_print(t)
    else:
        for status, name, text in doctor_rows(doc):
            first, *extra = text.split("\n")
            out.line(f"[{status:>4}] {name:<14} {first}")
            for more in extra:
                out.line(f"{'':>6} {'':<14} {more}")
    if doc["ok"]:
        out.line(doctor_summary(doc))
