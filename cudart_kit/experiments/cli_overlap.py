"""The ``cudart-kit overlap`` subcommand: parse options, run :func:`run_overlap`, print the table,
write the JSON / trace / plot files. Self-contained: the main CLI only calls :func:`add_parser`
and dispatches to :func:`run` (through ``set_defaults(func=run)``).

Exit codes: 0 success, 1 a CUDA / environment failure or a verification failure, 2 a usage
error. Without a driver or a GPU, one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "run", "build_parser"]

COMMAND = "overlap"
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _int_list(minimum: int, what: str):
    def parse(text: str) -> list[int]:
        from .overlap import parse_int_list

        try:
            return parse_int_list(text, minimum=minimum, what=what)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = what  # argparse names the type in its error messages
    return parse


def _iters(text: str):
    """``auto`` (calibrated balance) or a comma list of iteration counts."""
    if text.strip().lower() == "auto":
        return None
    return _int_list(0, "iters")(text)


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {v}")
    return v


def _non_negative(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a device index (0, 1, ...), got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {v}")
    return v


def _size_mib(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size in MiB (e.g. 256 or 0.5), got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"size must be > 0 MiB, got {text}")
    return v


def _configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--streams", type=_int_list(1, "stream counts"), default=[1, 2, 4, 8, 16], metavar="LIST",
                   help="stream counts to try, comma list (default 1,2,4,8,16)")
    p.add_argument("--chunks", type=_positive, default=32, metavar="C",
                   help="chunks the data is split into, dealt round-robin to the streams (default 32)")
    p.add_argument("--size-mib", type=_size_mib, default=256, metavar="MIB",
                   help="float32 data moved each way per configuration, in MiB (default 256)")
    p.add_argument("--iters", type=_iters, default=None, metavar="LIST|auto",
                   help="kernel cost: FMA steps per element, comma list (e.g. 0,16,256,4096); 'auto' "
                        "(default) calibrates the kernel to take as long as the slower copy")
    p.add_argument("--pageable", action="store_true",
                   help="also run with pageable (ordinary) host memory for comparison")
    p.add_argument("--no-h2d", action="store_true",
                   help="leave the input on the device: kernel + D2H per chunk, the workload of the CUDA "
                        "sample simpleStreams (default: H2D + kernel + D2H)")
    p.add_argument("--order", choices=("breadth", "depth", "both"), default="both",
                   help="issue order: breadth (per wave of S chunks: all H2D, then kernels, then D2H), "
                        "depth (chunk by chunk), or both (default)")
    p.add_argument("--repeat", type=_positive, default=5, help="timed runs per configuration; medians (default 5)")
    p.add_argument("--device", type=_non_negative, default=0, metavar="N", help="device index (default 0)")
    p.add_argument("--no-gate", action="store_true",
                   help="let the GPU start while the host is still queuing (measures Python's issue rate too)")
    p.add_argument("--no-verify", action="store_true", help="skip the comparison of the outputs with numpy")
    p.add_argument("--json", metavar="PATH", help="write the results (schema cudart-kit/overlap/1) to PATH ('-': stdout)")
    p.add_argument("--trace", metavar="PATH",
                   help="write a Chrome trace / Perfetto JSON (one process per configuration, one track per stream)")
    p.add_argument("--plot", metavar="PATH",
                   help="write a PNG: speedup vs streams and a Gantt chart (needs pip install 'cudart-kit[plot]')")
    p.set_defaults(func=run)
    return p


DESCRIPTION = (
    "Host-to-device copy, a kernel of tunable cost and device-to-host copy, split into C chunks over S "
    "streams: serial time (one stream, no overlap), overlapped time, speedup, the ideal bound "
    "max(H, K, D) + fill/drain from the stage times alone, and efficiency = ideal / measured. Every "
    "copy and launch is event-timed on its own stream; outputs are verified against numpy. "
    "See docs/overlap.md."
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``overlap`` subcommand to an argparse subparsers object; returns its parser.
    Building it touches no driver."""
    p = subparsers.add_parser(COMMAND, help="how copies and kernels overlap across streams",
                              description=DESCRIPTION)
    return _configure(p)


def build_parser(prog: str = "cudart-kit overlap") -> argparse.ArgumentParser:
    """A standalone parser (``python -m cudart_kit.experiments.cli_overlap``)."""
    return _configure(argparse.ArgumentParser(prog=prog, description=DESCRIPTION))


def _error(message: str) -> None:
    text = " ".join(str(message).split())
    sys.stderr.write(f"cudart-kit {COMMAND}: error: {text}\n")
    sys.stderr.flush()


def run(args) -> int:
    """Run the experiment for parsed ``args``; print the table; write the requested files."""
    from ..errors import CudaKitError

    try:
        from . import overlap as ov

        if args.plot:
            from ..trace import require_matplotlib

            require_matplotlib()  # fail before minutes of measuring, not after
        memory = ["pinned", "pageable"] if args.pageable else ["pinned"]
        order = ["breadth", "depth"] if args.order == "both" else [args.order]

        def progress(msg: str) -> None:
            sys.stderr.write(f"  {msg}\n")
            sys.stderr.flush()

        report = ov.run_overlap(size_mib=args.size_mib, streams=args.streams, chunks=args.chunks, iters=args.iters,
                                memory=memory, order=order, repeat=args.repeat, device=args.device,
                                gate=not args.no_gate, verify=not args.no_verify, h2d=not args.no_h2d,
                                log=progress if sys.stderr.isatty() else None)
    except CudaKitError as exc:
        _error(str(exc))
        return EXIT_FAIL
    except ValueError as exc:  # parameters that parse but do not fit (e.g. more chunks than elements)
        _error(str(exc))
        return EXIT_USAGE
    except ImportError as exc:
        _error(str(exc))
        return EXIT_FAIL

    dev = report.device
    title = (f"overlap: {dev.get('name', '?')} (device {dev.get('index')}), {args.size_mib:g} MiB each way, "
             f"C={args.chunks} chunks, repeat {args.repeat}, {'gated' if not args.no_gate else 'ungated'}")
    to_stdout_json = args.json == "-"
    out = sys.stderr if to_stdout_json else sys.stdout
    out.write(ov.format_table(report, title=title) + "\n")
    for line in ov.summary_lines(report):
        out.write(line + "\n")
    try:
        if args.json:
            if to_stdout_json:
                import json

                sys.stdout.write(json.dumps(report.to_dict(), indent=1) + "\n")
            else:
                report.save_json(args.json)
        if args.trace:
            report.save_trace(args.trace)
        if args.plot:
            ov.plot_results(report, args.plot)
    except OSError as exc:
        _error(f"could not write {exc.filename}: {exc.strerror}")
        return EXIT_FAIL
    return EXIT_OK if report.verified else EXIT_FAIL


def main(argv=None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
