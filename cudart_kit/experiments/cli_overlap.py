"""The ``cudart-kit overlap`` subcommand: its options and its command function, nothing else.

Argument types, exit codes, error messages and JSON output are the main CLI's
(:mod:`cudart_kit.cli`): :func:`run` raises, ``cli.main`` reports. It lives beside the
experiment it runs; it is a piece of the CLI layer, so it imports :mod:`cudart_kit.cli`.
"""

from __future__ import annotations

import argparse
import sys

from ..cli import (
    EXIT_CODES, EXIT_FAIL, EXIT_OK, UsageError, check_writable, device_index, exit_codes_epilog, positive_float,
    positive_int, to_json, write_json_file,
)

__all__ = ["add_parser", "run", "main"]

COMMAND = "overlap"

DESCRIPTION = (
    "Host-to-device copy, a kernel of tunable cost and device-to-host copy, split into C chunks over S "
    "streams: serial time (one stream, no overlap), overlapped time, speedup, the ideal bound "
    "max(H, K, D) + fill/drain from the stage times alone, and efficiency = ideal / measured. Every "
    "copy and launch is event-timed on its own stream; outputs are verified against numpy. "
    "See docs/overlap.md."
)

EXIT_MEANINGS = {
    0: "measured, and every verified output matched numpy",
    1: "no NVIDIA driver or no visible GPU, a CUDA call failed, an output did not match numpy (the "
       "results are still printed and written), or a file could not be written",
    2: "usage error, or parameters that do not fit (more chunks than --size-mib holds floats, an output "
       "directory that does not exist)",
    130: EXIT_CODES[130],
}


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


def add_parser(subparsers, **kwargs) -> argparse.ArgumentParser:
    """Add the ``overlap`` subcommand to an argparse subparsers object (``kwargs``: the main
    CLI's parents and formatter); returns its parser. Building it touches no driver."""
    p = subparsers.add_parser(COMMAND, help="how copies and kernels overlap across streams",
                              description=DESCRIPTION, epilog=exit_codes_epilog(EXIT_MEANINGS), **kwargs)
    p.add_argument("--streams", type=_int_list(1, "stream counts"), default=[1, 2, 4, 8, 16], metavar="LIST",
                   help="stream counts to try, comma list (default 1,2,4,8,16)")
    p.add_argument("--chunks", type=positive_int, default=32, metavar="C",
                   help="chunks the data is split into, dealt round-robin to the streams (default 32)")
    p.add_argument("--size-mib", type=positive_float, default=256, metavar="MIB",
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
    p.add_argument("--repeat", type=positive_int, default=5, help="timed runs per configuration; medians (default 5)")
    p.add_argument("--device", type=device_index, default=0, metavar="N", help="device index (default 0)")
    p.add_argument("--no-gate", action="store_true",
                   help="let the GPU start while the host is still queuing (measures Python's issue rate too)")
    p.add_argument("--no-verify", action="store_true", help="skip the comparison of the outputs with numpy")
    p.add_argument("--json", action="store_true",
                   help="print the results (schema cudart-kit/overlap/1) on stdout; the table goes to "
                        "stderr. On failure, the JSON error object (schema cudart-kit/error/1)")
    p.add_argument("--json-file", metavar="PATH",
                   help="also write the results (the --json document) to PATH")
    p.add_argument("--trace", metavar="PATH",
                   help="write a Chrome trace / Perfetto JSON (one process per configuration, one track per stream)")
    p.add_argument("--plot", metavar="PATH",
                   help="write a PNG: speedup vs streams and a Gantt chart (needs pip install 'cudart-kit[plot]')")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    """Run the experiment for parsed ``args``: the table on stdout (stderr with ``--json``,
    whose document goes to stdout), then the requested files. Returns 0, or 1 when an output
    did not match numpy; raises for everything else (``cli.main`` reports it)."""
    from . import overlap as ov

    for path, option in ((args.json_file, "--json-file"), (args.trace, "--trace"), (args.plot, "--plot")):
        check_writable(path, option)  # before minutes of measuring, not after
    if args.plot:
        from ..trace import require_matplotlib

        require_matplotlib()
    elements = int(args.size_mib * (1 << 20)) // 4  # float32 elements, as run_overlap counts them
    if elements < args.chunks:
        raise UsageError(f"--size-mib {args.size_mib:g} holds {elements} floats: fewer than --chunks {args.chunks}")
    memory = ["pinned", "pageable"] if args.pageable else ["pinned"]
    order = ["breadth", "depth"] if args.order == "both" else [args.order]

    def progress(msg: str) -> None:
        sys.stderr.write(f"  {msg}\n")
        sys.stderr.flush()

    report = ov.run_overlap(size_mib=args.size_mib, streams=args.streams, chunks=args.chunks, iters=args.iters,
                            memory=memory, order=order, repeat=args.repeat, device=args.device,
                            gate=not args.no_gate, verify=not args.no_verify, h2d=not args.no_h2d,
                            log=progress if sys.stderr.isatty() else None)
    dev = report.device
    title = (f"overlap: {dev.get('name', '?')} (device {dev.get('index')}), {args.size_mib:g} MiB each way, "
             f"C={args.chunks} chunks, repeat {args.repeat}, {'gated' if not args.no_gate else 'ungated'}")
    table = sys.stderr if args.json else sys.stdout
    table.write(ov.format_table(report, title=title) + "\n")
    for line in ov.summary_lines(report):
        table.write(line + "\n")
    doc = report.to_dict()
    if args.json_file:
        write_json_file(args.json_file, doc)
    if args.trace:
        report.save_trace(args.trace)
    if args.plot:
        ov.plot_results(report, args.plot)
    if args.json:  # last: a file that fails to write must not follow a document already on stdout
        sys.stdout.write(to_json(doc) + "\n")
    return EXIT_OK if report.verified else EXIT_FAIL


def main(argv=None) -> int:
    """``python -m cudart_kit.experiments.cli_overlap ARGS`` is ``cudart-kit overlap ARGS``."""
    from ..cli import main as cli_main

    return cli_main([COMMAND, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
