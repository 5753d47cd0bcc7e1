"""``cudart-kit collectives``: NCCL collectives measured like NVIDIA's nccl-tests
(:mod:`cudart_kit.collectives.bench`), through nccl4py (the optional extra ``nccl``). One
process drives the listed devices (``Communicator.init_all``); with ``--uid-file`` the command
is one rank of a multi-process job started by torchrun, mpirun or srun."""

from __future__ import annotations

import argparse
import sys

from ..arguments import add_json, non_negative_int, parse_device_list, positive_int, size_bytes
from ..exits import EXIT_FAIL, EXIT_OK, UsageError, exit_codes, exit_codes_epilog
from ..output import to_json
from ..render.collectives import LineSink

__all__ = ["add_parsers", "cmd_collectives", "collectives_options", "OPS", "EXIT_MEANINGS"]

OPS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "sendrecv")  # = collectives.bench.OPS
REDOPS = ("sum", "prod", "max", "min", "avg")

EXIT_MEANINGS = exit_codes(
    "measured, and every checked result matched the host reference (#wrong 0)",
    'nccl4py is not installed (pip install "cudart-kit[nccl]"), no NVIDIA driver or no visible GPU, a CUDA or '
    "NCCL call failed, or a result did not match the host reference (#wrong > 0; the report is still printed)",
    "usage error, or a sweep that does not fit (-b above -e, no size holding one element per rank, a broadcast "
    "root that is not a rank, --uid-file without a launcher's environment)")

DESCRIPTION = (
    "NCCL collectives timed like nccl-tests (all_reduce_perf and friends) and printed in its columns: size, "
    "count, type, redop, root, then time (us), algbw and busbw (GB/s) and #wrong out of place and in place. "
    "Sizes from -b to -e times -f; -w warm-up and -n timed iterations per size, timed with events on every "
    "rank's stream and averaged over the ranks; each result is checked against a host reference of "
    "rank-dependent data. busbw = algbw x 2(n-1)/n (all_reduce), (n-1)/n (all_gather, reduce_scatter), 1 "
    "(broadcast, sendrecv). One process drives --devices (default: every visible GPU); for one process per "
    "GPU start it under torchrun / mpirun / srun with --uid-file (docs/cli.md). Needs nccl4py: "
    'pip install "cudart-kit[nccl]".')


def _dtype(text: str) -> str:
    from ...collectives.report import dtype_for

    try:
        return dtype_for(text).name
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parsers(subparsers, **kwargs) -> None:
    p = subparsers.add_parser("collectives", help="NCCL collectives timed like nccl-tests (needs the nccl extra)",
                              description=DESCRIPTION, epilog=exit_codes_epilog(EXIT_MEANINGS), **kwargs)
    p.add_argument("collective", nargs="?", choices=OPS, default="all_reduce",
                   help="the operation (default all_reduce)")
    p.add_argument("-b", "--minbytes", type=size_bytes, default=8, metavar="SIZE",
                   help="smallest size in bytes, K/M/G suffixes (default 8)")
    p.add_argument("-e", "--maxbytes", type=size_bytes, default=128 << 20, metavar="SIZE",
                   help="largest size (default 128M)")
    p.add_argument("-f", "--stepfactor", type=positive_int, default=2, metavar="F",
                   help="multiply the size by F each step (default 2); 1: add -i instead")
    p.add_argument("-i", "--stepbytes", type=size_bytes, default=1 << 20, metavar="SIZE",
                   help="add SIZE each step when -f is 1 (default 1M)")
    p.add_argument("-n", "--iters", type=positive_int, default=20, help="timed iterations per size (default 20)")
    p.add_argument("-w", "--warmup-iters", type=non_negative_int, default=5, metavar="W",
                   help="warm-up iterations at the largest and smallest size (default 5)")
    p.add_argument("-d", "--dtype", type=_dtype, default="float32",
                   help="float32 (float), float16 (half), float64 (double), bfloat16, int8, uint8, int32, "
                        "uint32, int64, uint64 (default float32)")
    p.add_argument("-o", "--op", choices=REDOPS, default="sum", help="reduction (default sum)")
    p.add_argument("-r", "--root", type=non_negative_int, default=0, help="broadcast root rank (default 0)")
    p.add_argument("-c", "--check", type=int, choices=(0, 1), default=1,
                   help="1: check every result against the host reference (#wrong); 0: skip (default 1)")
    p.add_argument("--devices", type=parse_device_list, default=None, metavar="N,M|all",
                   help="devices of this process, one rank each (default all visible; with --uid-file: the "
                        "launcher's LOCAL_RANK)")
    p.add_argument("--uid-file", metavar="PATH",
                   help="one rank per process: rank 0 writes the NCCL unique id to PATH, the others read it; "
                        "ranks from the launcher (RANK/WORLD_SIZE/LOCAL_RANK of torchrun, Open MPI, PMI, Slurm). "
                        "Use a new path per job")
    add_json(p, "cudart-kit/collectives/1", " instead of the table (rank 0 only)")
    p.set_defaults(func=cmd_collectives)


def collectives_options(args):
    """The benchmark's Options from parsed arguments; the sweep is checked here (SizeError, a
    usage error) before anything touches NCCL or the driver."""
    from ...collectives.bench import Options, sweep, validate

    opts = Options(op=args.collective, min_bytes=args.minbytes, max_bytes=args.maxbytes,
                   step_factor=args.stepfactor, step_bytes=args.stepbytes, iters=args.iters,
                   warmup=args.warmup_iters, dtype=args.dtype, redop=args.op, root=args.root, check=bool(args.check))
    try:
        validate(opts)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    sweep(opts.min_bytes, opts.max_bytes, opts.step_factor, opts.step_bytes)
    return opts


def _communicators(args):
    """This process's communicators: init_all over --devices, or one rank of a launched job."""
    from ...collectives import Communicator, exchange_unique_id, launch_env

    if args.uid_file is None:
        devices = args.devices
        if devices in (None, "all"):
            from ...device import device_count

            devices = list(range(device_count()))
        return Communicator.init_all(devices)
    env = launch_env()
    if env is None:
        raise UsageError("--uid-file makes this process one rank of a job, but no launcher set RANK and WORLD_SIZE "
                         "(run it under torchrun, mpirun or srun)")
    if args.devices not in (None, "all") and len(args.devices) != 1:
        raise UsageError(f"--uid-file: one device per process, got --devices {args.devices}")
    device = env.device if args.devices in (None, "all") else args.devices[0]
    uid = exchange_unique_id(args.uid_file, rank=env.rank)
    return Communicator.init(env.world_size, env.rank, uid, device=device)


def cmd_collectives(args) -> int:
    from ...collectives import backend
    from ...collectives.bench import run

    opts = collectives_options(args)
    backend.load()  # the missing extra is said first, before any driver call
    comms = _communicators(args)
    with comms:
        members = list(comms) if isinstance(comms, list) else [comms]
        if opts.op == "broadcast" and opts.root >= members[0].nranks:
            raise UsageError(f"--root {opts.root} is not a rank: {members[0].nranks} rank(s)")
        lead = any(c.rank == 0 for c in members)
        doc = run(members, opts, out=None if args.json else LineSink())
    if args.json and lead:
        sys.stdout.write(to_json(doc) + "\n")
    return EXIT_FAIL if doc["wrong_total"] else EXIT_OK
