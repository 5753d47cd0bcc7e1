"""``cudart-kit doctor``: the environment checks of :mod:`cudart_kit.doctor`, the report and
its verdict."""

from __future__ import annotations

import sys

from .. import visible
from ..arguments import add_json, device_index
from ..exits import EXIT_FAIL, EXIT_OK, exit_codes, exit_codes_epilog
from ..output import Printer, error_line, to_json
from ..render.doctor import doctor_summary, print_doctor

__all__ = ["add_parsers", "cmd_doctor"]


def add_parsers(subparsers, **kwargs) -> None:
    p = subparsers.add_parser(
        "doctor", help="diagnose the environment and say what to fix",
        description="Checks the driver and its version, visible GPUs, cuda-core / cuda-bindings against the "
                    "driver, nvcc, the kit's kernel artifacts, and a tiny launch. Exit code 0 only when nothing "
                    "failed.",
        epilog=exit_codes_epilog(exit_codes(
            "no check failed (warnings allowed)",
            "a check failed (the report, or --json's document with \"ok\": false, says which and how to fix it)")),
        **kwargs)
    p.add_argument("--device", type=device_index, default=0, metavar="N", help="device for the tiny launch (default 0)")
    add_json(p, "cudart-kit/doctor/1", " (also when a check fails: \"ok\" is false)")
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args) -> int:
    """The report on stdout (text or --json); when a check failed, the verdict on stderr and
    exit code 1. Failed checks are the report's content, not an error of the command."""
    from ...doctor import run_checks

    doc = run_checks(args.device)
    if args.json:
        sys.stdout.write(to_json(doc) + "\n")
    else:
        print_doctor(doc, Printer())
    if not doc["ok"]:
        error_line("doctor", doctor_summary(doc, visible.value()))
        return EXIT_FAIL
    return EXIT_OK
