"""The entry point of ``cudart-kit``: :func:`main` parses, dispatches to the command, and is
the one place a failure becomes an exit code (:data:`~cudart_kit.cli.exits.EXIT_CODES`), one
line on stderr (``cudart-kit COMMAND: error: ...``) and, when ``--json`` was asked for, the
JSON error object on stdout (schema cudart-kit/error/1, docs/cli.md)."""

from __future__ import annotations

import contextlib
import os
import sys

from . import visible
from .commands.build import cmd_build
from .exits import EXIT_FAIL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError
from .output import error_document, error_line, to_json
from .parser import build_parser, subcommands

__all__ = ["main", "TRACEBACK_ENV"]

TRACEBACK_ENV = "CUDART_KIT_TRACEBACK"


def _explain(exc: BaseException) -> str:
    """The message for a kit error; a missing device's also explains CUDA_VISIBLE_DEVICES
    (once: a message that already does is left as it is)."""
    from ..errors import NoDeviceError

    return visible.explain(str(exc)) if isinstance(exc, NoDeviceError) else str(exc)


def _detail(exc: BaseException, message: str) -> str | None:
    """What a dependency added to a failure: the error's ``detail``, else its cause's text."""
    detail = getattr(exc, "detail", None)
    if not detail and exc.__cause__ is not None:
        detail = f"{type(exc.__cause__).__name__}: {exc.__cause__}"
    detail = " ".join(str(detail).split()) if detail else None
    return detail if detail and detail not in message else None


def _classify(exc: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) of a failure; re-raises a bug when tracebacks are asked for."""
    from ..bandwidth import SizeError
    from ..errors import CudaKitError

    if isinstance(exc, UsageError):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, SizeError):  # a transfer size that does not fit: a usage problem
        return EXIT_USAGE, str(exc)
    if isinstance(exc, CudaKitError):
        return EXIT_FAIL, _explain(exc)
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"
    if isinstance(exc, ImportError):
        core = (getattr(exc, "name", None) or "").split(".")[0] in ("cuda", "numpy")
        if core or "pip install" not in str(exc):
            return EXIT_FAIL, (f"a required package is missing ({exc}); install cudart-kit with its "
                               "dependencies: pip install cuda-core cuda-bindings numpy")
        return EXIT_FAIL, f"a package is missing: {exc}"  # an optional extra: its own message says what to run
    if isinstance(exc, OSError):
        return EXIT_FAIL, (f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))
    if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
        raise exc
    return EXIT_FAIL, (f"internal error ({type(exc).__name__}: {exc}); run again with {TRACEBACK_ENV}=1 "
                       "for the traceback and report it")


def _report(exc: BaseException, command: str | None, *, json: bool, verbose: bool) -> int:
    """Print a failure (stderr line, usage, --verbose detail, --json error object); its exit code."""
    code, message = _classify(exc)
    detail = _detail(exc, message)
    if not getattr(exc, "reported", False):
        if getattr(exc, "usage", ""):
            sys.stderr.write(exc.usage)
        error_line(command, message)
        if verbose and detail:
            error_line(command, detail, label="detail")
    if json:
        sys.stdout.write(to_json(error_document(exc, message=" ".join(message.split()), command=command,
                                                exit_code=code, detail=detail)) + "\n")
    return code


def _flag_given(argv: list[str], *flags: str) -> bool:
    """Whether one of ``flags`` is on the command line (before ``--``): for failures that
    happen before the arguments are parsed."""
    head = argv[:argv.index("--")] if "--" in argv else argv
    return any(f in head for f in flags)


def main(argv: list[str] | None = None) -> int:
    """Run ``cudart-kit`` with ``argv`` (default sys.argv[1:]) and return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and not argv[0].startswith("-") else None
    want_json, verbose = _flag_given(argv, "--json"), _flag_given(argv, "-v", "--verbose")
    try:
        if command == "build":
            return cmd_build(argv[1:])
        parser = build_parser()
        try:
            args, extra = parser.parse_known_args(argv)
        except SystemExit as exc:  # --help / --version print and exit 0
            return EXIT_USAGE if isinstance(exc.code, str) else int(exc.code or 0)
        except UsageError:
            command = command if command in subcommands(parser) else None  # "cudart-kit nonsense"
            raise
        command = args.command
        if extra:  # said with the subcommand's usage, not the top level's
            raise UsageError(f"unrecognized arguments: {' '.join(extra)}",
                             usage=subcommands(parser)[command].format_usage())
        want_json, verbose = bool(getattr(args, "json", False)), args.verbose
        return args.func(args)
    except BrokenPipeError:  # e.g. `cudart-kit query | head`: stop quietly
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")
        return EXIT_OK
    except (Exception, KeyboardInterrupt) as exc:
        return _report(exc, command, json=want_json, verbose=verbose)
