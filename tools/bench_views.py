"""Views benchmark: vector ops and copies on strided views against the same bytes contiguous,
all in one run on one stream (cudart_kit.bench.benchmark: warm-up by time, gated batches,
median; ``~`` marks a noisy figure). Bytes counted are the useful bytes each op reads + writes.

    python tools/bench_views.py [--rows 8192] [--cols 4096] [--repeat 10] [--json out.json]

Bars (issue 13): a stepped or transposed 2-D view within 0.8x of the same bytes contiguous
(0.9x the aim); contiguous ops >= 1.0x the driver's D2D memcpy; a pitched 2-D H2D copy >= 0.9x
the contiguous copy.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

import cudart_kit as ck
from cudart_kit import ops
from cudart_kit.bench import benchmark


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=8192)
    p.add_argument("--cols", type=int, default=4096)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--min-time-ms", type=float, default=100.0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    R, C = args.rows, args.cols
    dev = ck.get_device(0)
    s = ck.Stream.create(dev)
    rng = np.random.default_rng()

    def dev_rand(shape):
        return ck.to_device(rng.standard_normal(shape, dtype=np.float32), stream=s)

    nb = R * C * 4
    x, y, o = dev_rand((R, C)), dev_rand((R, C)), ck.empty((R, C), np.float32, stream=s)
    xs, ys, os_ = dev_rand((2 * R, C)), dev_rand((2 * R, C)), ck.empty((2 * R, C), np.float32, stream=s)
    xw, yw, ow = dev_rand((R, 2 * C)), dev_rand((R, 2 * C)), ck.empty((R, 2 * C), np.float32, stream=s)
    xt = dev_rand((C, R))                      # xt.T is (R, C), transposed
    yt, ot = dev_rand((C, R)), ck.empty((C, R), np.float32, stream=s)
    x1, o1 = dev_rand(2 * R * C), ck.empty(2 * R * C, np.float32, stream=s)
    s.sync()

    rows = {}

    def bench(key, label, fn, nbytes, ref=None):
        res = benchmark(fn, stream=s, repeat=args.repeat, min_time_ms=args.min_time_ms, name=label)
        rows[key] = {"label": label, "bytes": nbytes, "median_ms": res.median_ms, "gbps": res.gbps(nbytes),
                     "spread": res.spread, "noisy": res.noisy, "ref": ref}

    bench("memcpy", "driver memcpy D2D (contiguous)", lambda st: ck.copy(o, x, stream=st), 2 * nb)
    bench("add", "add, contiguous (R, C)", lambda st: ops.add(x, y, o, stream=st), 3 * nb, "memcpy")
    bench("add_rowstep", "add, row-stepped views a[::2] (pitched)",
          lambda st: ops.add(xs[::2], ys[::2], os_[::2], stream=st), 3 * nb, "add")
    bench("add_colblock", "add, column blocks a[:, :C] (pitched)",
          lambda st: ops.add(xw[:, :C], yw[:, :C], ow[:, :C], stream=st), 3 * nb, "add")
    bench("add_xT", "add, x transposed (x.T + y -> out)",
          lambda st: ops.add(xt.T, y, o, stream=st), 3 * nb, "add")
    bench("add_allT", "add, all transposed (x.T + y.T -> out.T)",
          lambda st: ops.add(xt.T, yt.T, ot.T, stream=st), 3 * nb, "add")
    bench("add_outT", "add, out transposed (x + y -> out.T)",
          lambda st: ops.add(x, y, ot.T, stream=st), 3 * nb, "add")
    bench("add_step2", "add, element-stepped 1-D a[::2] (reads 2x the lines)",
          lambda st: ops.add(x1[::2], x1[1::2], o1[::2], stream=st), 3 * nb, "add")
    bench("scale_colblock", "scale, column block", lambda st: ops.scale(0.5, xw[:, :C], ow[:, :C], stream=st), 2 * nb, "scale")
    bench("scale", "scale, contiguous", lambda st: ops.scale(0.5, x, o, stream=st), 2 * nb, "memcpy")
    bench("copy_T", "ck.copy transposed -> contiguous (copy kernel)",
          lambda st: ck.copy(o, xt.T, stream=st), 2 * nb, "memcpy")
    bench("copy_colblock", "ck.copy column block -> column block (copy kernel, 16-byte rows)",
          lambda st: ck.copy(ow[:, :C], xw[:, :C], stream=st), 2 * nb, "memcpy")

    # host <-> device: pinned host, contiguous vs pitched device side
    hp = ck.to_device(rng.standard_normal((R, C), dtype=np.float32), stream=s, kind="pinned")
    s.sync()
    bench("h2d", "H2D pinned -> contiguous", lambda st: ck.copy(x, hp, stream=st), nb)
    bench("h2d_pitched", "H2D pinned -> column block (cuMemcpy2D)", lambda st: ck.copy(xw[:, :C], hp, stream=st), nb, "h2d")
    bench("h2d_rowstep", "H2D pinned -> row-stepped view (cuMemcpy2D)", lambda st: ck.copy(xs[::2], hp, stream=st), nb, "h2d")
    bench("d2h", "D2H contiguous -> pinned", lambda st: ck.copy(hp, x, stream=st), nb)
    bench("d2h_pitched", "D2H column block -> pinned (cuMemcpy2D)", lambda st: ck.copy(hp, xw[:, :C], stream=st), nb, "d2h")

    print(f"\nviews on {dev.name}: R={R} C={C} float32, {nb / 2**20:.0f} MiB per operand")
    print(f"{'case':58} {'ms':>8} {'GB/s':>8} {'ratio':>6}  ref")
    for key, r in rows.items():
        ratio = "" if r["ref"] is None else f"{r['gbps'] / rows[r['ref']]['gbps']:6.3f}"
        r["ratio"] = None if r["ref"] is None else r["gbps"] / rows[r["ref"]]["gbps"]
        mark = "~" if r["noisy"] else " "
        print(f"{r['label']:58} {r['median_ms']:8.4f}{mark}{r['gbps']:8.1f} {ratio:>6}  {r['ref'] or ''}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": dev.name, "rows": R, "cols": C, "results": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
