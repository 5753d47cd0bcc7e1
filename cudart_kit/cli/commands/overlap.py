"""``cudart-kit overlap``: how copies and kernels overlap across streams, the experiment of
:mod:`cudart_kit.experiments.overlap` (its table on stdout, or on stderr under ``--json``,
whose document goes to stdout; then the requested files)."""

from __future__ import annotations

import sys

from ..arguments import device_index, int_list, iters_list, positive_float, positive_int
from ..exits import EXIT_FAIL, EXIT_OK, UsageError, exit_codes, exit_codes_epilog
from ..output import check_writable, to_json, write_json_file

__all__ = ["add_parsers", "cmd_overlap", "DESCRIPTION", "EXIT_MEANINGS"]

DESCRIPTION = (
    "Host-to-device copy, a kernel of tunable cost and device-to-host copy, split into C chunks over S "
    "streams: serial time (one stream, no overlap), overlapped time, speedup, the ideal bound "
    "max(H, K, D) + fill/drain from the stage times alone, and efficiency = ideal / measured. Every "
    "copy and launch is event-timed on its own stream; outputs are verified against numpy. "
    "With CUDART_KIT_NVTX=1 (and the nvtx extra) each stage runs in an NVTX range (overlap:h2d, "
    "overlap:kernel, overlap:d2h, ...) for Nsight. See docs/overlap.md."
)

EXIT_MEANINGS = exit_codes(
    "measured, and every verified output matched numpy",
    "no NVIDIA driver or no visible GPU, a CUDA call failed, an output did not match numpy (the results are "
    "still printed and written), or a file could not be written",
    "usage error, or parameters that do not fit (more chunks than --size-mib holds floats, an output "
    "directory that does not exist)")


def add_parsers(subparsers, **kwargs) -> None:
    p = subparsers.add_parser("overlap", help="how copies and kernels overlap across streams",
                              description=DESCRIPTION, epilog=exit_codes_epilog(EXIT_MEANINGS), **kwargs)
    p.add_argument("--streams", type=int_list(1, "stream counts"), default=[1, 2, 4, 8, 16], metavar="LIST",
                   help="stream counts to try, comma list (default 1,2,4,8,16)")
    p.add_argument("--chunks", type=positive_int, default=32, metavar="C",
                   help="chunks the data is split into, dealt round-robin to the streams (default 32)")
    p.add_argument("--size-mib", type=positive_float, default=256, metavar="MIB",
                   help="float32 data moved each way per configuration, in MiB (default 256)")
    p.add_argument("--iters", type=iters_list, default=None, metavar="LIST|auto",
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
    p.set_defaults(func=cmd_overlap)


def cmd_overlap(args) -> int:
    """Run the experiment for parsed ``args``: the table on stdout (stderr with ``--json``,
    whose document goes to stdout), then the requested files. Returns 0, or 1 when an output
    did not match numpy; raises for everything else (:func:`cudart_kit.cli.main` reports it)."""
    from ...experiments import overlap as ov

    for path, option in ((args.json_file, "--json-file"), (args.trace, "--trace"), (args.plot, "--plot")):
        check_writable(path, option)  # before minutes of measuring, not after
    if args.plot:
        from ...trace import require_matplotlib

        require_matplotlib()
    elements = ov.elements_for(args.size_mib)
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
