"""The ``cudart-kit`` command: argument parsing, dispatch and the one place failures become
exit codes, stderr lines and JSON error objects. No logic of its own.

Subcommands: ``build`` (delegates to :func:`cudart_kit.build.main`), ``devices``, ``query``
(alias ``info``), ``bandwidth``, ``doctor`` and ``overlap`` (its options and command function
are in :mod:`cudart_kit.experiments.cli_overlap`, on the argument types defined here). The data
come from :mod:`cudart_kit.query`, :mod:`cudart_kit.bandwidth`, :mod:`cudart_kit.doctor` and the
overlap experiment as plain dicts; :mod:`cudart_kit.cli_format` turns them into text.

A command fails by raising; :func:`main` alone turns the exception into one line on stderr
(``cudart-kit COMMAND: error: ...``), the exit code (:data:`EXIT_CODES`) and, when ``--json``
was asked for, the JSON error object on stdout (schema cudart-kit/error/1, docs/cli.md).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import textwrap
from pathlib import Path

from .cli_format import (  # noqa: F401 - the formatting helpers are part of this module's API
    BANDWIDTH_CSV_FIELDS, BANDWIDTH_HEADERS, DEVICE_HEADERS, ERROR_SCHEMA, Printer, Progress,
    bandwidth_csv, bandwidth_rows, bandwidth_sweep, device_line, devices_header, devices_rows,
    doctor_rows, doctor_summary, error_document, peer_rows, print_bandwidth, print_devices,
    print_doctor, print_query, query_sections, render_pairs, render_table, rich_available,
    to_json, use_rich,
)

__all__ = ["main", "build_parser", "subcommands", "UsageError", "EXIT_CODES", "exit_codes_epilog",
           "write_json_file", "check_writable", "parse_device_list", "parse_memory_kinds", "device_index",
           "positive_int", "non_negative_int", "positive_float", "size_bytes", "bandwidth_options"]

PROG = "cudart-kit"
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAIL: "failure: no NVIDIA driver or no visible GPU, a CUDA call failed, a required package is "
               "missing, a file could not be written, an internal error; or the command's own verdict "
               "failed (a doctor check, overlap's comparison with numpy, a build)",
    EXIT_USAGE: "usage error: unknown option, bad value, options that do not fit together or do not fit "
                "the machine (e.g. a transfer size larger than free device memory)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}
TRACEBACK_ENV = "CUDART_KIT_TRACEBACK"


class UsageError(Exception):
    """A command line that cannot be run as given (exit code 2). ``usage`` is the usage text
    to print above the message (argparse errors carry it); ``reported``: the message is
    already on stderr (a delegated parser printed it)."""

    def __init__(self, message: str, *, usage: str = "", reported: bool = False):
        super().__init__(message)
        self.usage = usage
        self.reported = reported


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing and exiting, so :func:`main`
    reports every failure in one place (and as JSON with ``--json``)."""

    def error(self, message):
        raise UsageError(message, usage=self.format_usage())


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps each line of a description or epilog on its own, so the exit-code list keeps
    one row per code."""

    def _fill_text(self, text, width, indent):
        def fill(line):  # an indented row ("  1    failure: ...") continues under its text
            more = indent + " " * 7 if line.startswith("  ") else indent
            return textwrap.fill(line, width, initial_indent=indent, subsequent_indent=more)

        return "\n".join(fill(line) if line.strip() else "" for line in text.splitlines())


def exit_codes_epilog(meanings: dict[int, str]) -> str:
    """The ``--help`` epilog listing the exit codes a command uses."""
    return "exit codes:\n" + "\n".join(f"  {code:<3}  {text}" for code, text in meanings.items())


def _exit_codes(ok: str, fail: str, usage: str = EXIT_CODES[EXIT_USAGE]) -> dict[int, str]:
    return {EXIT_OK: ok, EXIT_FAIL: fail, EXIT_USAGE: usage, EXIT_INTERRUPTED: EXIT_CODES[EXIT_INTERRUPTED]}


_NO_GPU = "no NVIDIA driver or no visible GPU, a CUDA call failed, or a required package is missing"


# --- argument types: the one set, for every subcommand (overlap's included) -------------------

def parse_device_list(text: str):
    """``"all"`` -> "all"; ``"0"`` -> [0]; ``"0,2"`` -> [0, 2]."""
    t = text.strip().lower()
    if t == "all":
        return "all"
    try:
        out = [int(p) for p in t.split(",") if p.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a device index, a comma list (0,1) or 'all', got {text!r}") from None
    if not out or any(i < 0 for i in out):
        raise argparse.ArgumentTypeError(f"expected device indices >= 0, got {text!r}")
    return sorted(set(out))


def size_bytes(text: str) -> int:
    """``32M`` -> 33554432 (K/M/G are binary)."""
    from .bandwidth import SizeError, parse_size

    try:
        return parse_size(text)
    except SizeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_memory_kinds(text: str) -> tuple:
    """``"pinned,pageable"`` -> ("pinned", "pageable"); ``"all"`` -> every host memory kind."""
    from .bandwidth import HOST_MEMORY

    aliases = {"write-combined": "wc", "writecombined": "wc", "page-locked": "pinned"}
    t = text.strip().lower()
    if t == "all":
        return HOST_MEMORY
    kinds = [aliases.get(p.strip(), p.strip()) for p in t.split(",") if p.strip()]
    bad = [k for k in kinds if k not in HOST_MEMORY]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown host memory {', '.join(bad) or text!r}: choose from {', '.join(HOST_MEMORY)} or all")
    return tuple(k for k in HOST_MEMORY if k in kinds)


def _whole_number(minimum: int, expected: str = "a whole number"):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
        return value

    return parse


device_index = _whole_number(0, "a device index (0, 1, ...)")
positive_int = _whole_number(1)
non_negative_int = _whole_number(0)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number (e.g. 256 or 0.5), got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


# --- parser ------------------------------------------------------------------------------------

def _add_json(parser_or_group, schema: str, what: str = "") -> None:
    parser_or_group.add_argument(
        "--json", action="store_true",
        help=f"print the JSON document (schema {schema}) on stdout{what}; on failure, the JSON error "
             "object (schema cudart-kit/error/1)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (building it touches no driver)."""
    from . import __version__
    from .experiments import cli_overlap  # stdlib-only at import; GPU work happens in its command

    parser = _ArgumentParser(
        prog=PROG, formatter_class=_HelpFormatter,
        description="cudart_kit: device query, bandwidth test, environment check, stream-overlap "
                    "experiment and kernel build.",
        epilog="Every command honours CUDA_VISIBLE_DEVICES. --json means the same everywhere: the "
               "document on stdout (an error object on failure). Schemas: docs/cli.md.\n\n"
               + exit_codes_epilog(EXIT_CODES),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = _ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true",
                        help="on failure, also print what a dependency reported (e.g. the driver "
                             "loader's search notes)")
    kw = {"parents": [common], "formatter_class": _HelpFormatter}
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    sub.add_parser("build", add_help=False,
                   help="build the kit's kernels with nvcc ([--force] [--list] [names]; see build --help)")

    p = sub.add_parser("devices", help="a short table of every visible device",
                       description="One row per visible device: index, name, compute capability, memory "
                                   "free/total, SMs, clocks, PCI bus id, UUID.",
                       epilog=exit_codes_epilog(_exit_codes("the table (or document) was printed", _NO_GPU)), **kw)
    _add_json(p, "cudart-kit/devices/1", " instead of the table")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("query", aliases=["info"], help="everything deviceQuery printed, and more",
                       description="Per device: every field the CUDA sample deviceQuery printed (from driver "
                                   "attributes), derived figures (theoretical memory bandwidth, FP32 peak), "
                                   "NVML extras (live clocks, PCIe link, power, temperature, MIG mode) and "
                                   "the peer-access matrix.",
                       epilog=exit_codes_epilog(_exit_codes(
                           "the report was printed", _NO_GPU + ", or --device N does not exist")), **kw)
    p.add_argument("--device", type=device_index, metavar="N", help="only device N (default: every device)")
    p.add_argument("--all", action="store_true", dest="all_attributes",
                   help="also every attribute the driver reports, by name")
    p.add_argument("--no-nvml", action="store_true", help="skip NVML (live clocks, power, PCIe link)")
    _add_json(p, "cudart-kit/query/1")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("bandwidth", help="host<->device and device<->device copy bandwidth",
                       description="Copy bandwidth in GB/s (1e9 bytes/s): host->device, device->host, "
                                   "device->device; pinned, pageable and write-combined host memory. Each "
                                   "figure is the median of event-timed samples after warm-up, shown next "
                                   "to its peer from the same run. D2D counts bytes read + written.",
                       epilog=exit_codes_epilog(_exit_codes(
                           "every figure was measured and printed", _NO_GPU + ", or --device N does not exist",
                           "usage error, or sizes that do not fit: options of another mode (--size with "
                           "--shmoo), a range of too many sizes, a test larger than free device memory")), **kw)
    modes = p.add_mutually_exclusive_group()
    modes.add_argument("--mode", choices=("quick", "range", "shmoo"),
                       help="quick: one size; range: --start..--end by --step; shmoo: powers of two "
                            "from --start (1K) to --end (1G). Default: quick, or range when --start/--end/--step are given")
    modes.add_argument("--quick", action="store_const", const="quick", dest="mode", help="same as --mode quick")
    modes.add_argument("--range", action="store_const", const="range", dest="mode", help="same as --mode range")
    modes.add_argument("--shmoo", action="store_const", const="shmoo", dest="mode", help="same as --mode shmoo")
    p.add_argument("--size", type=size_bytes, help="transfer size of quick mode (default 32M); K/M/G suffixes")
    p.add_argument("--start", type=size_bytes, help="first size of range/shmoo (range default 1M, shmoo 1K)")
    p.add_argument("--end", type=size_bytes, help="last size of range/shmoo (range default 64M, shmoo 1G)")
    p.add_argument("--step", type=size_bytes, help="range increment (default 1M)")
    p.add_argument("--htod", action="append_const", const="H2D", dest="directions", help="host to device")
    p.add_argument("--dtoh", action="append_const", const="D2H", dest="directions", help="device to host")
    p.add_argument("--dtod", action="append_const", const="D2D", dest="directions", help="device to device")
    p.add_argument("--memory", type=parse_memory_kinds, default=("pinned", "pageable"), metavar="KINDS",
                   help="host memory: comma list of pinned, pageable, wc (write-combined), or all "
                        "(default pinned,pageable)")
    p.add_argument("--device", type=parse_device_list, default=[0], metavar="N|N,M|all",
                   help="device(s) to test (default 0)")
    p.add_argument("--concurrent", action="store_true",
                   help="test the devices all at once instead of one after another (adds per-test sums)")
    p.add_argument("--repeat", type=positive_int, default=10, help="timed samples per figure (default 10)")
    p.add_argument("--warmup", type=non_negative_int, default=2, help="untimed samples first (default 2)")
    out = p.add_mutually_exclusive_group()
    _add_json(out, "cudart-kit/bandwidth/1")
    out.add_argument("--csv", action="store_true", help="CSV on stdout, one row per figure")
    p.set_defaults(func=cmd_bandwidth)

    p = sub.add_parser("doctor", help="diagnose the environment and say what to fix",
                       description="Checks the driver and its version, visible GPUs, cuda-core / "
                                   "cuda-bindings against the driver, nvcc, the kit's kernel artifacts, "
                                   "and a tiny launch. Exit code 0 only when nothing failed.",
                       epilog=exit_codes_epilog(_exit_codes(
                           "no check failed (warnings allowed)",
                           "a check failed (the report, or --json's document with \"ok\": false, says "
                           "which and how to fix it)")), **kw)
    p.add_argument("--device", type=device_index, default=0, metavar="N", help="device for the tiny launch (default 0)")
    _add_json(p, "cudart-kit/doctor/1", " (also when a check fails: \"ok\" is false)")
    p.set_defaults(func=cmd_doctor)

    cli_overlap.add_parser(sub, **kw)
    return parser


def subcommands(parser: argparse.ArgumentParser | None = None) -> dict[str, argparse.ArgumentParser]:
    """Every subcommand name (aliases included) of ``parser`` (default: :func:`build_parser`)
    and its parser."""
    parser = parser or build_parser()
    for action in parser._actions:  # argparse keeps no public list of its subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


# --- files -------------------------------------------------------------------------------------

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


# --- commands ----------------------------------------------------------------------------------

def cmd_devices(args) -> int:
    from .query import devices_report

    doc = devices_report()
    if args.json:
        sys.stdout.write(to_json(doc) + "\n")
    else:
        print_devices(doc, Printer())
    return EXIT_OK


def cmd_query(args) -> int:
    from .query import query_report

    doc = query_report(args.device, all_attributes=args.all_attributes, nvml=not args.no_nvml)
    if args.json:
        sys.stdout.write(to_json(doc) + "\n")
    else:
        print_query(doc, Printer())
    return EXIT_OK


def bandwidth_options(args):
    """Options for bandwidth.run from parsed arguments (resolves "all" devices, infers the mode)."""
    from .bandwidth import DIRECTIONS, Options, SizeError, sizes_for

    mode = args.mode
    if mode is None:
        mode = "range" if any(v is not None for v in (args.start, args.end, args.step)) else "quick"
    if mode == "quick" and any(v is not None for v in (args.start, args.end, args.step)):
        raise SizeError("--start/--end/--step belong to --range or --shmoo; quick mode takes --size")
    if mode != "quick" and args.size is not None:
        raise SizeError("--size belongs to quick mode; range and shmoo take --start/--end/--step")
    if mode == "shmoo" and args.step is not None:
        raise SizeError("shmoo doubles the size each step; --step belongs to --range")
    sizes = sizes_for(mode, size=args.size, start=args.start, end=args.end, step=args.step)
    devices = args.device
    if devices == "all":
        from .device import device_count

        devices = list(range(device_count()))
    directions = tuple(d for d in DIRECTIONS if d in (args.directions or DIRECTIONS))
    return Options(devices=devices, directions=directions, memories=tuple(args.memory), sizes=sizes,
                   mode=mode, repeat=args.repeat, warmup=args.warmup, concurrent=args.concurrent)


def cmd_bandwidth(args) -> int:
    from .bandwidth import run, total_tests

    opts = bandwidth_options(args)
    progress = Progress(total_tests(opts))
    try:
        doc = run(opts, progress=progress)
    finally:
        progress.close()
    if args.json:
        sys.stdout.write(to_json(doc) + "\n")
    elif args.csv:
        sys.stdout.write(bandwidth_csv(doc))
    else:
        print_bandwidth(doc, Printer())
    return EXIT_OK


def cmd_doctor(args) -> int:
    """The report on stdout (text or --json); when a check failed, the verdict on stderr and
    exit code 1. Failed checks are the report's content, not an error of the command."""
    from .doctor import run_checks

    doc = run_checks(args.device)
    if args.json:
        sys.stdout.write(to_json(doc) + "\n")
    else:
        print_doctor(doc, Printer())
    if not doc["ok"]:
        _error_line("doctor", doctor_summary(doc, os.environ.get("CUDA_VISIBLE_DEVICES")))
        return EXIT_FAIL
    return EXIT_OK


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
    from . import build

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


# --- failures ----------------------------------------------------------------------------------

def _error_line(command: str | None, message: str, label: str = "error") -> None:
    """One line on stderr: the command, then what is wrong (whitespace collapsed to one line)."""
    text = " ".join(str(message).split())
    prefix = f"{PROG} {command}" if command else PROG
    with contextlib.suppress(OSError, ValueError):  # what the command printed comes first, also in one pipe
        sys.stdout.flush()
    sys.stderr.write(f"{prefix}: {label}: {text}\n")
    sys.stderr.flush()


def _explain(exc: BaseException) -> str:
    """The message for a kit error, with CUDA_VISIBLE_DEVICES named when it may be the cause."""
    from .errors import NoDeviceError

    text = str(exc)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if isinstance(exc, NoDeviceError) and visible is not None and repr(visible) not in text:
        text += f" (CUDA_VISIBLE_DEVICES={visible!r})"
    return text


def _detail(exc: BaseException, message: str) -> str | None:
    """What a dependency added to a failure: the error's ``detail``, else its cause's text."""
    detail = getattr(exc, "detail", None)
    if not detail and exc.__cause__ is not None:
        detail = f"{type(exc.__cause__).__name__}: {exc.__cause__}"
    detail = " ".join(str(detail).split()) if detail else None
    return detail if detail and detail not in message else None


def _classify(exc: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) of a failure; re-raises a bug when tracebacks are asked for."""
    from .bandwidth import SizeError
    from .errors import CudaKitError

    if isinstance(exc, UsageError):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, SizeError):  # a transfer size that does not fit: a usage problem
        return EXIT_USAGE, str(exc)
    if isinstance(exc, CudaKitError):
        return EXIT_FAIL, _explain(exc)
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"
    if isinstance(exc, ImportError):
        return EXIT_FAIL, (f"a required package is missing ({exc}); install cudart-kit with its "
                           "dependencies: pip install cuda-core cuda-bindings numpy")
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
        _error_line(command, message)
        if verbose and detail:
            _error_line(command, detail, label="detail")
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


if __name__ == "__main__":
    sys.exit(main())
