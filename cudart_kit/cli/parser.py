"""The argument parser of ``cudart-kit``: argparse that raises instead of exiting, a help
formatter that keeps the exit-code list one row per code, and the tree of subcommands (each
added by its module in :mod:`cudart_kit.cli.commands`). Building it touches no driver."""

from __future__ import annotations

import argparse
import textwrap

from . import visible
from .commands import COMMANDS
from .exits import EXIT_CODES, UsageError, exit_codes_epilog
from .output import PROG

__all__ = ["ArgumentParser", "HelpFormatter", "build_parser", "subcommands"]


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing and exiting, so :func:`cudart_kit.cli.main`
    reports every failure in one place (and as JSON with ``--json``)."""

    def error(self, message):
        raise UsageError(message, usage=self.format_usage())


class HelpFormatter(argparse.HelpFormatter):
    """Wraps each line of a description or epilog on its own, so the exit-code list keeps
    one row per code."""

    def _fill_text(self, text, width, indent):
        def fill(line):  # an indented row ("  1    failure: ...") continues under its text
            more = indent + " " * 7 if line.startswith("  ") else indent
            return textwrap.fill(line, width, initial_indent=indent, subsequent_indent=more)

        return "\n".join(fill(line) if line.strip() else "" for line in text.splitlines())


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (building it touches no driver)."""
    from .. import __version__

    parser = ArgumentParser(
        prog=PROG, formatter_class=HelpFormatter,
        description="cudart_kit: device query, bandwidth test, environment check, stream-overlap "
                    "experiment and kernel build.",
        epilog=visible.HELP + " --json means the same everywhere: the document on stdout (an error object "
               "on failure). Schemas: docs/cli.md.\n\n" + exit_codes_epilog(EXIT_CODES),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true",
                        help="on failure, also print what a dependency reported (e.g. the driver "
                             "loader's search notes)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in COMMANDS:
        command.add_parsers(sub, parents=[common], formatter_class=HelpFormatter)
    return parser


def subcommands(parser: argparse.ArgumentParser | None = None) -> dict[str, argparse.ArgumentParser]:
    """Every subcommand name (aliases included) of ``parser`` (default: :func:`build_parser`)
    and its parser."""
    parser = parser or build_parser()
    for action in parser._actions:  # argparse keeps no public list of its subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}
