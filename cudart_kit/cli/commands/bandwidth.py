"""``cudart-kit bandwidth``: host<->device and device<->device copy bandwidth, and nvbandwidth's
device-to-device testcases as matrices over the GPUs, measured by :mod:`cudart_kit.bandwidth`
(sizes parsed by its :func:`~cudart_kit.bandwidth.parse_size`)."""

from __future__ import annotations

import argparse
import sys

from ..arguments import add_json, non_negative_int, parse_device_list, parse_memory_kinds, positive_int, size_bytes
from ..exits import EXIT_OK, NO_GPU, UsageError, exit_codes, exit_codes_epilog
from ..output import Printer, to_json
from ..render.bandwidth import Progress, bandwidth_csv, print_bandwidth

__all__ = ["add_parsers", "bandwidth_options", "cmd_bandwidth", "testcase_names"]


def testcase_names(text: str) -> tuple:
    """``--testcase`` values: a testcase name, a comma list of them, or ``all``."""
    from ...bandwidth import resolve_testcases

    try:
        return resolve_testcases([text])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


testcase_names.__name__ = "testcase"  # argparse names the type in its error messages


def add_parsers(subparsers, **kwargs) -> None:
    p = subparsers.add_parser(
        "bandwidth", help="host<->device and device<->device copy bandwidth",
        description="Copy bandwidth in GB/s (1e9 bytes/s): host->device, device->host, device->device; "
                    "pinned, pageable and write-combined host memory. Each figure is the median of event-timed "
                    "samples after warm-up, shown next to its peer from the same run. D2D counts bytes read + "
                    "written. --testcase / --matrix add nvbandwidth's device-to-device testcases: a matrix "
                    "of GB/s between every pair of GPUs (each byte counted once; N/A on the diagonal and for "
                    "pairs without a peer path; with one GPU the matrix is 1x1 and the testcase is waived).",
        epilog=exit_codes_epilog(exit_codes(
            "every figure was measured and printed", NO_GPU + ", or --device N does not exist",
            "usage error, or sizes that do not fit: options of another mode (--size with --shmoo), a range of "
            "too many sizes, a test larger than free device memory")), **kwargs)
    modes = p.add_mutually_exclusive_group()
    modes.add_argument("--mode", choices=("quick", "range", "shmoo"),
                       help="quick: one size; range: --start..--end by --step; shmoo: powers of two from --start "
                            "(1K) to --end (1G). Default: quick, or range when --start/--end/--step are given")
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
    p.add_argument("--testcase", type=testcase_names, action="append", metavar="NAME",
                   help="a device-to-device testcase by its nvbandwidth name (repeatable, or a comma list, or "
                        "all): device_to_device_memcpy_read_ce (the row GPU pulls from the column GPU), "
                        "device_to_device_memcpy_write_ce (it pushes), and their "
                        "device_to_device_bidirectional_memcpy_*_ce twins (the mirror copy runs meanwhile). "
                        "Alone, only the testcases run; with --htod/--dtoh/--dtod, those too")
    p.add_argument("--matrix", action="store_true", help="every device-to-device testcase (--testcase all)")
    p.add_argument("--device", type=parse_device_list, default=None, metavar="N|N,M|all",
                   help="device(s) to test (default 0; the testcases' matrices default to every visible device)")
    p.add_argument("--concurrent", action="store_true",
                   help="test the devices all at once instead of one after another (adds per-test sums)")
    p.add_argument("--repeat", type=positive_int, default=10, help="timed samples per figure (default 10)")
    p.add_argument("--warmup", type=non_negative_int, default=2, help="untimed samples first (default 2)")
    out = p.add_mutually_exclusive_group()
    add_json(out, "cudart-kit/bandwidth/1")
    out.add_argument("--csv", action="store_true", help="CSV on stdout, one row per figure")
    p.set_defaults(func=cmd_bandwidth)


def bandwidth_options(args):
    """Options for bandwidth.run from parsed arguments (resolves "all" devices, infers the mode,
    gathers the testcases). Raises SizeError (a usage error) for sizes of another mode,
    UsageError for --csv with device-to-device testcases."""
    from ...bandwidth import DIRECTIONS, Options, SizeError, resolve_testcases, sizes_for

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
    asked = [name for names in (args.testcase or ()) for name in names]
    testcases = resolve_testcases(asked + (["all"] if args.matrix else []))
    if testcases and args.csv:
        raise UsageError("--csv has one row per host figure; the device-to-device matrices are in --json "
                         "(or the text output)")
    devices = args.device
    if devices == "all":
        from ...device import device_count

        devices = list(range(device_count()))
    if args.directions is None and testcases:
        directions = ()  # only the testcases were asked for
    else:
        directions = tuple(d for d in DIRECTIONS if d in (args.directions or DIRECTIONS))
    return Options(devices=devices or [0], directions=directions, memories=tuple(args.memory), sizes=sizes,
                   mode=mode, repeat=args.repeat, warmup=args.warmup, concurrent=args.concurrent,
                   testcases=testcases, peer_devices=devices)


def cmd_bandwidth(args) -> int:
    from ...bandwidth import run, total_tests

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
