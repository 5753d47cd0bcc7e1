"""``cudart-kit devices`` (a short table of every visible device) and ``cudart-kit query``
(alias ``info``: everything deviceQuery printed, and more); data from :mod:`cudart_kit.query`."""

from __future__ import annotations

import sys

from ..arguments import add_json, device_index
from ..exits import EXIT_OK, NO_GPU, exit_codes, exit_codes_epilog
from ..output import Printer, to_json
from ..render.info import print_devices, print_query

__all__ = ["add_parsers", "cmd_devices", "cmd_query"]


def add_parsers(subparsers, **kwargs) -> None:
    p = subparsers.add_parser(
        "devices", help="a short table of every visible device",
        description="One row per visible device: index, name, compute capability, memory free/total, SMs, "
                    "clocks, PCI bus id, UUID.",
        epilog=exit_codes_epilog(exit_codes("the table (or document) was printed", NO_GPU)), **kwargs)
    add_json(p, "cudart-kit/devices/1", " instead of the table")
    p.set_defaults(func=cmd_devices)

    p = subparsers.add_parser(
        "query", aliases=["info"], help="everything deviceQuery printed, and more",
        description="Per device: every field the CUDA sample deviceQuery printed (from driver attributes), "
                    "derived figures (theoretical memory bandwidth, FP32 peak), NVML extras (live clocks, PCIe "
                    "link, power, temperature, MIG mode) and the peer-access matrix.",
        epilog=exit_codes_epilog(exit_codes("the report was printed", NO_GPU + ", or --device N does not exist")),
        **kwargs)
    p.add_argument("--device", type=device_index, metavar="N", help="only device N (default: every device)")
    p.add_argument("--all", action="store_true", dest="all_attributes",
                   help="also every attribute the driver reports, by name")
    p.add_argument("--no-nvml", action="store_true", help="skip NVML (live clocks, power, PCIe link)")
    add_json(p, "cudart-kit/query/1")
    p.set_defaults(func=cmd_query)


def cmd_devices(args) -> int:
    from ...query import devices_report

    doc = devices_report()
    if args.json:
        sys.stdout.write(to_json(doc) + "\n")
    else:
        print_devices(doc, Printer())
    return EXIT_OK


def cmd_query(args) -> int:
    from ...query import query_report

    doc = query_report(args.device, all_attributes=args.all_attributes, nvml=not args.no_nvml)
    if args.json:
        sys.stdout.write(to_json(doc) + "\n")
    else:
        print_query(doc, Printer())
    return EXIT_OK
