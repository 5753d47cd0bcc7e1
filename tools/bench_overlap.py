"""Stream-overlap benchmark for the device machine: a balanced workload (kernel calibrated to take
as long as a copy) over 1..16 streams, pinned and pageable, both issue orders; then an ``iters``
sweep at the size of the CUDA sample simpleStreams, from copy-bound to compute-bound, for the
full workload (H2D + kernel + D2H) and for simpleStreams' own (kernel + D2H).

    python tools/bench_overlap.py [--size-mib 256] [--chunks 32] [--streams 1,2,4,8,16] [--repeat 5]
        [--warmup-ms 5] [--min-time-ms 25] [--json out.json] [--trace trace.json.gz] [--plot overlap.png]
        [--device 0]

Each configuration is sampled by cudart_kit.bench's rules, one whole run per sample: untimed
runs until warm (--warmup-ms of run time, three runs within 5 %), then at least --repeat runs
and --min-time-ms of run time, more while the spread is above 5 % (then marked ``~``, noisy).

Prints a table whose first line starts with ``overlap``. With ``--json`` and no ``--trace`` /
``--plot``, the trace and the PNGs are written next to the JSON file (tools/device_run.sh passes
only ``--json`` and keeps the PNGs). The targets of the issue (>= 90% of the ideal bound with 4+
streams, speedup near 3x when balanced) are reported, not asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cudart_kit.experiments import overlap as ov
from cudart_kit.trace import chrome_trace, save_chrome_trace

SCHEMA = "cudart-kit/bench-overlap/1"


def _ints(text: str) -> list[int]:
    return ov.parse_int_list(text, minimum=0, what="list")


def _siblings(args) -> None:
    """Default the trace and plot paths to files next to --json."""
    if not args.json:
        return
    base = Path(args.json)
    stem = base.name[:-5] if base.name.endswith(".json") else base.name
    if args.trace is None:
        args.trace = str(base.with_name(stem + "_trace.json.gz"))
    if args.plot is None:
        args.plot = str(base.with_name(stem + ".png"))


def _targets(report: ov.OverlapReport) -> dict:
    """The issue's targets, checked on the pinned results with 4+ streams."""
    cand = [r for r in report.results if r.memory == "pinned" and r.streams >= 4]
    if not cand:
        return {}
    best = max(cand, key=lambda r: r.efficiency)
    fastest = max(cand, key=lambda r: r.speedup)
    return {
        "efficiency_4plus_streams": best.efficiency, "efficiency_config": best.label,
        "efficiency_target": 0.90, "efficiency_met": best.efficiency >= 0.90,
        "speedup_4plus_streams": fastest.speedup, "speedup_config": fastest.label,
        "speedup_bound": fastest.max_speedup, "kernel_share": fastest.kernel_share,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mib", type=float, default=256, help="data each way, balanced run (default 256)")
    p.add_argument("--chunks", type=int, default=32)
    p.add_argument("--streams", type=_ints, default=[1, 2, 4, 8, 16])
    p.add_argument("--repeat", type=int, default=5, help="timed runs per configuration, at least")
    p.add_argument("--warmup-ms", type=float, default=ov.WARMUP_MS, help="run time of untimed runs first, at least")
    p.add_argument("--min-time-ms", type=float, default=ov.MIN_TIME_MS, help="run time measured per configuration, at least")
    p.add_argument("--no-pageable", action="store_true", help="skip the pageable comparison")
    p.add_argument("--sweep-mib", type=float, default=ov.SIMPLESTREAMS["size_mib"],
                   help="data each way in the iters sweep (default 64 MiB = simpleStreams' 16M ints)")
    p.add_argument("--sweep-iters", type=_ints, default=[0, 1, 4, 16, 64, 256, 1024, 4096])
    p.add_argument("--sweep-streams", type=_ints, default=[4])
    p.add_argument("--sweep-chunks", type=int, default=16)
    p.add_argument("--device", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--trace", default=None)
    p.add_argument("--plot", default=None)
    args = p.parse_args(argv)
    _siblings(args)

    def log(msg: str) -> None:
        print(f"  {msg}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    memory = ["pinned"] if args.no_pageable else ["pinned", "pageable"]
    timing = {"warmup_ms": args.warmup_ms, "min_time_ms": args.min_time_ms}
    main_rep = ov.run_overlap(size_mib=args.size_mib, streams=args.streams, chunks=args.chunks, iters=None,
                              memory=memory, order=ov.ORDERS, repeat=args.repeat, device=args.device, log=log,
                              **timing)
    t_main = time.perf_counter() - t0
    sweep = ov.sweep_iters(iters=args.sweep_iters, size_mib=args.sweep_mib, streams=args.sweep_streams,
                           chunks=args.sweep_chunks, repeat=args.repeat, device=args.device, log=log, **timing)
    sweep_kd = ov.sweep_iters(iters=args.sweep_iters, size_mib=args.sweep_mib, streams=args.sweep_streams,
                              chunks=args.sweep_chunks, repeat=args.repeat, device=args.device, h2d=False, log=log,
                              **timing)
    t_all = time.perf_counter() - t0

    dev = main_rep.device
    cal = main_rep.calibration or {}
    print(f"overlap: {dev.get('name')} (device {dev.get('index')}, {dev.get('async_engine_count')} copy engines), "
          f"{args.size_mib:g} MiB each way, C={args.chunks}, balanced iters={cal.get('iters')} "
          f"(kernel {cal.get('target_ms', float('nan')):.3f} ms target), >= {args.repeat} runs and >= "
          f"{args.min_time_ms:g} ms per configuration after warm-up, gated")
    print(ov.format_table(main_rep))
    for line in ov.summary_lines(main_rep):
        print(line)
    print()
    print(f"overlap sweep: {args.sweep_mib:g} MiB each way (simpleStreams size), S={','.join(map(str, args.sweep_streams))}, "
          f"C={args.sweep_chunks}, iters from copy-bound to compute-bound; H-K-D: H2D + kernel + D2H, "
          f"K-D: kernel + D2H (simpleStreams' workload)")
    print(ov.format_table(sweep.results + sweep_kd.results))
    for line in ov.summary_lines(sweep.results + sweep_kd.results):
        if line.startswith("noisy"):
            print(line)
    ss = ov.SIMPLESTREAMS
    ss_bound = ov.bound_ideal_ms(ss["h2d_ms"], ss["kernel_ms"], ss["d2h_ms"], chunks=ss["chunks"], streams=ss["streams"])
    print(f"simpleStreams on this GPU (anchors): kernel {ss['kernel_ms']} ms + D2H {ss['d2h_ms']} ms, "
          f"{100 * ov.kernel_share(ss['h2d_ms'], ss['kernel_ms'], ss['d2h_ms']):.0f}% kernel: bound "
          f"{ss_bound:.3f} ms with 4 streams, measured {ss['non_streamed_ms']} -> {ss['streamed_ms']} ms")
    targets = _targets(main_rep)
    if targets:
        print(f"target >= 90% of ideal with 4+ streams: {100 * targets['efficiency_4plus_streams']:.0f}% "
              f"({targets['efficiency_config']}) -> {'met' if targets['efficiency_met'] else 'NOT met'}")
        print(f"speedup with 4+ streams: {targets['speedup_4plus_streams']:.2f}x (bound {targets['speedup_bound']:.2f}x, "
              f"kernel share {100 * targets['kernel_share']:.0f}%; 3x needs three equal stages)")
    ok = main_rep.verified and sweep.verified and sweep_kd.verified
    print(f"verified against numpy: {'yes' if ok else 'NO'}; {t_main:.1f} s balanced run, {t_all:.1f} s in all")

    if args.json:
        doc = {"schema": SCHEMA, "main": main_rep.to_dict(), "sweep": sweep.to_dict(),
               "sweep_no_h2d": sweep_kd.to_dict(), "targets": targets,
               "timing": {"repeat_min": args.repeat, **timing, "max_spread": ov.MAX_SPREAD},
               "seconds": {"main": t_main, "total": t_all}}
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    if args.trace:
        tls = {}
        for rep, prefix in ((main_rep, ""), (sweep, "sweep "), (sweep_kd, "sweep ")):
            for x in [*rep.serial, *rep.results]:
                if x.timeline is not None:
                    tls[prefix + x.label] = x.timeline
        save_chrome_trace(chrome_trace(tls), args.trace)
    if args.plot:
        try:
            ov.plot_results(main_rep, args.plot)
            plot = Path(args.plot)
            ov.plot_sweep(sweep.results + sweep_kd.results, plot.with_name(plot.stem + "_sweep" + (plot.suffix or ".png")))
        except ImportError as exc:
            print(f"no plot: {exc}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
