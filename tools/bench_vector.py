"""Vector-op benchmark: the kit's kernels against the driver's device-to-device memcpy and CuPy,
all measured in the same run on the same stream. Every byte read and written is counted.

    python tools/bench_vector.py [--log2n 28] [--repeat 10] [--min-time-ms 100] [--json out.json]

Every figure comes from cudart_kit.bench.benchmark (warm-up by time until stable, batched and
gated samples, at least --repeat samples and --min-time-ms of GPU time; docs/benchmarks.md);
a ``~`` after a figure marks it noisy (spread (p90 - p10) / median above 5 %).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

import cudart_kit as ck
from cudart_kit import ops
from cudart_kit.bench import benchmark


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--log2n", type=int, default=28)
    p.add_argument("--repeat", type=int, default=10, help="samples per figure, at least (default 10)")
    p.add_argument("--min-time-ms", type=float, default=100.0, help="measured GPU time per figure, at least")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    dev = ck.get_device(0)
    s = ck.Stream.create(dev)
    n = 1 << args.log2n
    rng = np.random.default_rng()
    x = ck.to_device(rng.standard_normal(n, dtype=np.float32), stream=s)
    y = ck.to_device(rng.standard_normal(n, dtype=np.float32), stream=s)
    o = ck.empty(n, np.float32, stream=s)
    r = ck.empty((), np.float32, stream=s)
    nb = x.nbytes
    s.sync()

    def bench(name, fn, nbytes):
        res = benchmark(fn, stream=s, repeat=args.repeat, min_time_ms=args.min_time_ms, name=name)
        return {"name": name, "bytes": nbytes, "median_ms": res.median_ms, "gbps": res.gbps(nbytes),
                "spread": res.spread, "noisy": res.noisy, "min_ms": res.min_ms, "max_ms": res.max_ms,
                "batch": res.batch, "samples": len(res.samples_ms), "measured_ms": res.measured_ms,
                "warmup_stable": res.warmup_stable}

    rows = {}
    # the ceiling: the driver's own device-to-device copy (cuMemcpyAsync), bytes read + written
    rows["memcpy"] = bench("driver memcpy D2D", lambda st: ck.copy(o, x, stream=st), 2 * nb)
    rows["add"] = bench("kit add", lambda st: ops.add(x, y, o, stream=st), 3 * nb)
    rows["sub"] = bench("kit sub", lambda st: ops.sub(x, y, o, stream=st), 3 * nb)
    rows["mul"] = bench("kit mul", lambda st: ops.mul(x, y, o, stream=st), 3 * nb)
    rows["axpy"] = bench("kit axpy", lambda st: ops.axpy(0.5, x, y, o, stream=st), 3 * nb)
    rows["scale"] = bench("kit scale", lambda st: ops.scale(0.5, x, o, stream=st), 2 * nb)
    rows["copy"] = bench("kit copy", lambda st: ops.copy(x, o, stream=st), 2 * nb)
    rows["fill"] = bench("kit fill", lambda st: ops.fill(o, 1.5, stream=st), nb)
    rows["dot"] = bench("kit dot", lambda st: ops.dot(x, y, r, stream=st), 2 * nb)

    peers = {}
    try:
        import cupy as cp

        cx, cy, co = (cp.asarray(a) for a in (x, y, o))  # zero-copy views of the kit's arrays
        ext = cp.cuda.ExternalStream(s.handle)
        axpy_k = cp.ElementwiseKernel("float32 a, float32 x, float32 y", "float32 z", "z = a * x + y", "kit_axpy_peer")

        def on_stream(fn):
            def run(_st):
                with ext:
                    fn()
            return run

        peers["add"] = bench("cupy add", on_stream(lambda: cp.add(cx, cy, out=co)), 3 * nb)
        peers["sub"] = bench("cupy subtract", on_stream(lambda: cp.subtract(cx, cy, out=co)), 3 * nb)
        peers["mul"] = bench("cupy multiply", on_stream(lambda: cp.multiply(cx, cy, out=co)), 3 * nb)
        peers["axpy"] = bench("cupy elementwise a*x+y", on_stream(lambda: axpy_k(np.float32(0.5), cx, cy, co)), 3 * nb)
        peers["scale"] = bench("cupy multiply scalar", on_stream(lambda: cp.multiply(cx, np.float32(0.5), out=co)), 2 * nb)
        peers["copy"] = bench("cupy copyto", on_stream(lambda: cp.copyto(co, cx)), 2 * nb)
        peers["fill"] = bench("cupy fill", on_stream(lambda: co.fill(1.5)), nb)
        peers["dot"] = bench("cupy dot (cuBLAS)", on_stream(lambda: cp.dot(cx, cy)), 2 * nb)
    except ImportError:
        print("CuPy not installed: no CuPy peer column", file=sys.stderr)

    ceiling = rows["memcpy"]["gbps"]
    table = []
    for key, row in rows.items():
        peer = peers.get(key)
        table.append({
            **row, "op": key,
            "vs_memcpy": row["gbps"] / ceiling,
            "cupy_gbps": peer["gbps"] if peer else None,
            "vs_cupy": row["gbps"] / peer["gbps"] if peer else None,
            "cupy_noisy": peer["noisy"] if peer else None,
        })

    print(f"\nvector ops, {n} float32 elements (2^{args.log2n}), {dev.name}, median of >= {args.repeat} "
          f"event-timed samples and >= {args.min_time_ms:g} ms per figure (~: noisy, spread > 5 %)")
    print(f"{'op':8} {'ms':>8} {'GB/s':>8} {'x memcpy':>9} {'CuPy GB/s':>10} {'x CuPy':>7} {'spread':>7}")
    for t in table:
        cg = (f"{t['cupy_gbps']:9.0f}" + ("~" if t["cupy_noisy"] else " ")) if t["cupy_gbps"] else f"{'-':>10}"
        vc = f"{t['vs_cupy']:7.3f}" if t["vs_cupy"] else f"{'-':>7}"
        mark = "~" if t["noisy"] else " "
        print(f"{t['op']:8} {t['median_ms']:8.3f} {t['gbps']:7.0f}{mark} {t['vs_memcpy']:9.3f} {cg} {vc} {t['spread']:7.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": dev.name, "n": n, "dtype": "float32", "date": time.strftime("%Y-%m-%d"),
                       "rows": table, "peers": peers}, f, indent=2)
    s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
