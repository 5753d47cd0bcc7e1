"""``cudart-kit build``: ``python -m cudart_kit.build`` under the kit's front end. Its options
are parsed by :func:`cudart_kit.build.main` itself; its usage errors still come out as the
CLI's (with ``--json``: the error object)."""

from __future__ import annotations

import contextlib
import io
import sys

from ..exits import EXIT_OK, UsageError

__all__ = ["add_parsers", "cmd_build"]


def add_parsers(subparsers, **_kwargs) -> None:
    """A placeholder subcommand for ``--help``: :func:`cudart_kit.cli.main` hands everything
    after ``build`` to :func:`cmd_build` before parsing."""
    subparsers.add_parser("build", add_help=False,
                          help="build the kit's kernels with nvcc ([--force] [--list] [names]; see build --help)")


class _Tee(io.StringIO):
    """Keeps a copy of what a delegated command writes to stderr while still showing it."""

    def __init__(self, stream):
        super().__init__()
        self._stream = stream

    def write(self, text):
        self._stream.write(text)
        return super().write(text)


def cmd_build(argv: list[str]) -> int:
    """``cudart-kit build ...`` is ``python -m cudart_kit.build ...``. Its parser is build's
    own; a usage error it printed is re-raised as a UsageError (for --json's error object)."""
    from ... import build

    tee = _Tee(sys.stderr)
    try:
        with contextlib.redirect_stderr(tee):
            rc = build.main(argv)
    except SystemExit as exc:  # build's own argparse: --help (0) or a usage error, already printed
        if exc.code in (None, 0):
            return EXIT_OK
        lines = [ln for ln in tee.getvalue().splitlines() if ": error: " in ln]
        message = lines[-1].split(": error: ", 1)[1] if lines else "usage error (see cudart-kit build --help)"
        raise UsageError(message, reported=True) from None
    return EXIT_OK if rc is None else int(rc)
