"""Fused matmul epilogues (bias=, activation=) against the plain kernel and against cuBLAS followed
by the framework's separate bias + activation (PyTorch addmm + relu / gelu(approximate="tanh")),
all measured in the same run on the same stream.

    python tools/bench_epilogue.py [--shapes 4096x4096x4096,4096x4096x256] [--json out.json]

For each shape and dtype (bfloat16 on the kit's Hopper kernel where the device has one, float32
on the kit's SIMT kernel): the plain kit call, the kit call with a per-column bias, with bias +
relu, with bias + gelu, with a per-row (M, 1) bias and with gelu alone, and torch's addmm (+ relu /
gelu) and matmul + gelu on the same data. Columns: ms
(median, cudart_kit.bench.benchmark), ``vs plain`` = plain kit ms / this row's ms (the bar for a
fused call is >= 0.97), ``vs torch`` = torch's ms for the same work / the kit's ms (> 1: the kit
is faster).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

import cudart_kit as ck
from cudart_kit.bench import benchmark
from cudart_kit.memory import bfloat16
from cudart_kit.ops.gemm import matmul


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default="4096x4096x4096,8192x8192x8192,4096x4096x256")
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--min-time-ms", type=float, default=100.0)
    p.add_argument("--dtypes", default="bfloat16,float32", help="which of bfloat16 (the Hopper / WMMA kernel) "
                   "and float32 (simt) to run")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    import torch
    import torch.nn.functional as F

    dev = ck.get_device(0)
    s = ck.Stream.create(dev)
    tstream = torch.cuda.ExternalStream(s.handle)
    rng = np.random.default_rng()
    hopper = dev.compute_capability == (9, 0)
    rows = []
    for shape in args.shapes.split(","):
        M, N, K = map(int, shape.split("x"))
        for dt, algo in ((bfloat16, "bf16_sm90" if hopper else "bf16"), (np.float32, "simt")):
            if dt is None or str(np.dtype(dt)) not in args.dtypes.split(","):
                continue
            a = ck.to_device(rng.uniform(-1, 1, (M, K)).astype(dt), stream=s)
            b = ck.to_device(rng.uniform(-1, 1, (K, N)).astype(dt), stream=s)
            bias = ck.to_device(rng.uniform(-1, 1, N).astype(dt), stream=s)
            rbias = ck.to_device(rng.uniform(-1, 1, (M, 1)).astype(dt), stream=s)
            out = ck.empty((M, N), dt, stream=s)
            ta, tb, tbias, trbias, tout = (torch.from_dlpack(x) for x in (a, b, bias, rbias, out))
            s.sync()

            def t(fn, name):
                with torch.cuda.stream(tstream):
                    r = benchmark(fn, stream=s, repeat=args.repeat, min_time_ms=args.min_time_ms, name=name)
                return r.median_ms, r.noisy

            kit = {
                "plain": lambda st: matmul(a, b, out, algo=algo, stream=st),
                "bias": lambda st: matmul(a, b, out, bias=bias, algo=algo, stream=st),
                "bias+relu": lambda st: matmul(a, b, out, bias=bias, activation="relu", algo=algo, stream=st),
                "bias+gelu": lambda st: matmul(a, b, out, bias=bias, activation="gelu", algo=algo, stream=st),
                "row bias": lambda st: matmul(a, b, out, bias=rbias, algo=algo, stream=st),
                "gelu": lambda st: matmul(a, b, out, activation="gelu", algo=algo, stream=st),
            }
            peer = {
                "plain": lambda st: torch.matmul(ta, tb, out=tout),
                "bias": lambda st: torch.addmm(tbias, ta, tb, out=tout),
                "bias+relu": lambda st: torch.relu_(torch.addmm(tbias, ta, tb, out=tout)),
                "bias+gelu": lambda st: tout.copy_(F.gelu(torch.addmm(tbias, ta, tb), approximate="tanh")),
                "row bias": lambda st: torch.addmm(trbias, ta, tb, out=tout),
                "gelu": lambda st: tout.copy_(F.gelu(torch.matmul(ta, tb), approximate="tanh")),
            }
            plain_ms = None
            for what in kit:
                ms, noisy = t(kit[what], f"kit {algo} {what}")
                pms, pnoisy = t(peer[what], f"torch {what}")
                plain_ms = ms if what == "plain" else plain_ms
                rows.append({"M": M, "N": N, "K": K, "dtype": str(np.dtype(dt)), "algo": algo, "epilogue": what,
                             "ms": ms, "noisy": noisy, "torch_ms": pms, "torch_noisy": pnoisy,
                             "vs_plain": plain_ms / ms, "vs_torch": pms / ms})
            for x in (a, b, bias, rbias, out):
                x.close()
    print(f"\nmatmul epilogues on {dev.name}: median ms (~: noisy); vs plain = plain kit ms / this ms; "
          "vs torch = torch ms / kit ms (torch: matmul, addmm, addmm + relu_, addmm + gelu(tanh), addmm with an (M, 1) bias, "
          "matmul + gelu(tanh))")
    print(f"{'M x N x K':>18} {'dtype':9} {'algo':10} {'epilogue':10} {'kit ms':>9} {'vs plain':>8} "
          f"{'torch ms':>9} {'vs torch':>8}")
    for r in rows:
        print(f"{r['M']:>6}x{r['N']:>5}x{r['K']:>5} {r['dtype']:9} {r['algo']:10} {r['epilogue']:10} "
              f"{r['ms']:8.3f}{'~' if r['noisy'] else ' '} {r['vs_plain']:8.3f} "
              f"{r['torch_ms']:8.3f}{'~' if r['torch_noisy'] else ' '} {r['vs_torch']:8.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": dev.name, "date": time.strftime("%Y-%m-%d"), "rows": rows}, f, indent=2)
    s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
