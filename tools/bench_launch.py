"""Launch-overhead and graph-replay benchmark: host microseconds per launch for a bare cuda.core
launch, the kit's launch paths, CuPy RawKernel and PyTorch, all in the same run.

Host cost = wall time of N back-to-back launches on one stream / N (the GPU work is empty or
tiny, so the host is the bottleneck); "wall" adds the final sync. Each path warms up for
--warmup-ms of wall time (at least 1,000 calls: caches, lazy loading, CPU clocks). Then the paths
are timed in interleaved rounds: each round times N calls of every path, in an order rotated
from round to round, so a drift of the machine (clocks, other tenants) falls on all paths alike.
Reported per path: the median over the --rounds rounds and its spread ((p90 - p10) / median;
``~`` marks a spread above 5 %), and the ratio to the bare 4-argument cuda.core launch as the
median of the per-round ratios (each round's two figures taken minutes closer than two paths
timed one after the other). These are host-time figures by design, so they use wall clocks, not
cudart_kit.bench's event timing.

    python tools/bench_launch.py [--n 4000] [--rounds 15] [--warmup-ms 100] [--graph-kernels 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time

import numpy as np

import cudart_kit as ck
from cudart_kit import ops
from cudart_kit.bench import relative_spread

MAX_SPREAD = 0.05


def _warm(fn, n: int, sync, warmup_ms: float) -> None:
    """Untimed calls for ``warmup_ms`` of wall time, at least min(n, 1000) of them."""
    chunk = max(1, min(n, 1000))
    t_end, k = time.perf_counter() + warmup_ms / 1e3, 0
    while k < chunk or time.perf_counter() < t_end:
        fn()
        k += 1
        if k % chunk == 0:
            sync()  # the GPU keeps up with the warm-up: no unbounded queue of work behind it
    sync()


def _batch(fn, n: int, sync) -> tuple[float, float]:
    """(host µs per call, wall µs per call incl. the final sync) of ``n`` calls back to back."""
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    t1 = time.perf_counter()
    sync()
    t2 = time.perf_counter()
    return (t1 - t0) / n * 1e6, (t2 - t0) / n * 1e6


def per_launch_us(fn, n: int, sync, rounds: int = 5, warmup_ms: float = 100.0) -> tuple[float, float, float]:
    """(host µs per call, wall µs per call incl. the final sync, spread of the host figure):
    medians over ``rounds`` rounds of ``n`` calls, after ``warmup_ms`` of wall time of calls
    (at least min(n, 1000) of them)."""
    _warm(fn, n, sync, warmup_ms)
    hosts, walls = zip(*(_batch(fn, n, sync) for _ in range(rounds)))
    return statistics.median(hosts), statistics.median(walls), relative_spread(list(hosts))


def interleaved(paths, n: int, rounds: int, warmup_ms: float) -> dict:
    """{key: (host µs list, wall µs list)} over ``rounds`` rounds, every path timed once per
    round in an order rotated per round; ``paths``: (key, fn, sync)."""
    for _, fn, sync in paths:
        _warm(fn, n, sync, warmup_ms)
    out = {key: ([], []) for key, _, _ in paths}
    for r in range(rounds):
        for key, fn, sync in paths[r % len(paths):] + paths[:r % len(paths)]:
            host, wall = _batch(fn, n, sync)
            out[key][0].append(host)
            out[key][1].append(wall)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4000, help="launches per path per round")
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds (median)")
    p.add_argument("--warmup-ms", type=float, default=100.0, help="wall time of untimed calls first, per path")
    p.add_argument("--graph-kernels", type=int, default=1000)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    from cuda.core import LaunchConfig
    from cuda.core import launch as core_launch

    dev = ck.get_device(0)
    s = ck.Stream.create(dev)
    mod = ck.load_kit_module("bench")
    noop, noop4 = mod.kernel("kit_noop"), mod.kernel("kit_noop4")
    n_el = 1024
    x = ck.to_device(np.ones(n_el, np.float32), stream=s)
    y = ck.to_device(np.ones(n_el, np.float32), stream=s)
    o = ck.empty(n_el, np.float32, stream=s)
    cfg = LaunchConfig(grid=1, block=128)
    sc = s.core
    N = args.n
    rows = {}
    paths, labels = [], {}
    contexts = []  # CuPy's and PyTorch's current-stream contexts, entered while the paths are timed

    def timed(fn, n, sync):
        return per_launch_us(fn, n, sync, rounds=args.rounds, warmup_ms=args.warmup_ms)

    def row(key, label, fn, sync=s.sync):
        paths.append((key, fn, sync))
        labels[key] = label

    row("core_empty", "cuda.core launch, empty kernel", lambda: core_launch(sc, cfg, noop.core))
    xp, yp, op_ = x.ptr, y.ptr, o.ptr
    row("core_4arg", "cuda.core launch, 4 args", lambda: core_launch(sc, cfg, noop4.core, np.uint64(xp), np.uint64(yp), np.uint64(op_), np.uint64(n_el)))
    row("kit_launch", "kit launch (checked), 4 args", lambda: ck.launch(noop4, 1, 128, x, y, o, n_el, stream=s))
    prep = ck.prepare(noop4, 1, 128, x, y, o, n_el, device=dev)
    row("kit_prepared", "kit prepared launch, 4 args", lambda: prep.launch(s))
    prep0 = ck.prepare(noop, 1, 128, device=dev)
    row("kit_prepared_empty", "kit prepared launch, empty kernel", lambda: prep0.launch(s))
    from cuda.bindings import driver as cbd

    f0, cs = cbd.CUfunction(int(noop.core.handle)), cbd.CUstream(s.handle)
    row("bindings_empty", "cuda.bindings cuLaunchKernel, empty kernel",
        lambda: cbd.cuLaunchKernel(f0, 1, 1, 1, 128, 1, 1, 0, cs, 0, 0))
    row("kit_op_add", "kit ops.add (checks + launch), 1024 el", lambda: ops.add(x, y, o, stream=s))

    try:
        import cupy as cp

        raw = cp.RawKernel(r'''extern "C" __global__ void k(const float* x, const float* y, float* o, unsigned long long n) {
            if (n == 0xFFFFFFFFFFFFFFFFull) o[0] = x[0] + y[0]; }''', "k")
        cx, cy, co = cp.asarray(x), cp.asarray(y), cp.asarray(o)
        ext = cp.cuda.ExternalStream(s.handle)
        contexts.append(lambda: ext)
        row("cupy_raw", "CuPy RawKernel, 4 args", lambda: raw((1,), (128,), (cx, cy, co, np.uint64(n_el))))
        row("cupy_add", "CuPy add(out=), 1024 el", lambda: cp.add(cx, cy, out=co))
    except ImportError:
        pass
    try:
        import torch

        tx, ty = torch.from_dlpack(x), torch.from_dlpack(y)
        to = torch.from_dlpack(o)
        tstream = torch.cuda.ExternalStream(s.handle)
        contexts.append(lambda: torch.cuda.stream(tstream))
        row("torch_add", "PyTorch add(out=), 1024 el", lambda: torch.add(tx, ty, out=to))
        # foreign arrays passed to kit ops: wrapped once, raw, raw with a PyTorch stream object
        wx, wy, wo = ck.asarray(tx), ck.asarray(ty), ck.asarray(to)
        row("kit_add_wrapped", "kit ops.add on ck.asarray(tensor)s", lambda: ops.add(wx, wy, wo, stream=s))
        row("kit_add_torch", "kit ops.add on raw PyTorch tensors", lambda: ops.add(tx, ty, to, stream=s))
        row("kit_add_torch_stream", "kit ops.add, raw tensors, stream=torch stream",
            lambda: ops.add(tx, ty, to, stream=tstream), sync=tstream.synchronize)
        # the framework idiom: a new torch Stream object per call (not yet a cached plan: it re-adopts)
        row("kit_add_torch_current", "kit ops.add, raw, stream=torch.cuda.current_stream()",
            lambda: ops.add(tx, ty, to, stream=torch.cuda.current_stream()), sync=tstream.synchronize)
        row("torch_current_stream", "torch.cuda.current_stream() alone", lambda: torch.cuda.current_stream())
        row("kit_asarray", "ck.asarray(tensor) alone", lambda: ck.asarray(tx))
        row("kit_as_stream", "ck.as_stream(torch stream) alone", lambda: ck.as_stream(tstream))
        vx, vy, vo = x[1:], y[1:], o[1:]
        row("kit_add_view", "kit ops.add on 1-D views x[1:]", lambda: ops.add(vx, vy, vo, stream=s))
    except ImportError:
        pass

    with contextlib.ExitStack() as st:
        for ctx in contexts:
            st.enter_context(ctx())
        figures = interleaved(paths, N, args.rounds, args.warmup_ms)
    base_rounds = figures["core_4arg"][0]
    for key, (hosts, walls) in figures.items():
        spread = relative_spread(hosts)
        rows[key] = {"label": labels[key], "host_us": statistics.median(hosts), "wall_us": statistics.median(walls),
                     "spread": spread, "noisy": spread > MAX_SPREAD, "rounds_us": hosts,
                     "x_core_4arg": statistics.median(h / b for h, b in zip(hosts, base_rounds))}
    # issue 13's bars, each its own pair compared round by round (median of the per-round ratios)
    bars = {}
    for name, (a, b, bar) in {"kit ops.add / bare 4-arg cuda.core launch": ("kit_op_add", "core_4arg", 0.93),
                              "prepared empty / bare empty cuda.core launch": ("kit_prepared_empty", "core_empty", 1.0),
                              "ops.add raw tensors / torch.add(out=)": ("kit_add_torch", "torch_add", 1.0),
                              "ops.add stream=torch stream / torch.add(out=)": ("kit_add_torch_stream", "torch_add", 1.0)
                              }.items():
        if a in figures and b in figures:
            ratio = statistics.median(x / y for x, y in zip(figures[a][0], figures[b][0]))
            bars[name] = {"ratio": ratio, "bar": bar, "met": ratio <= bar}

    # graphs: the same small op captured G times, replayed
    G = args.graph_kernels
    with ck.graph.capture(s) as cap:
        for _ in range(G):
            ops.add(x, y, o, stream=cap.stream)
    kit_graph = cap.graph
    kit_graph.upload(s)
    # the bare graph runs the very kernel ops.add launches, with the same geometry
    add_k = ck.load_kit_module("vector").kernel("add_f32")
    add_cfg = LaunchConfig(grid=ck.blocks_for(n_el // 4, 256), block=256)
    gb = sc.create_graph_builder()
    gb.begin_building("thread_local")
    for _ in range(G):
        core_launch(gb, add_cfg, add_k.core, np.uint64(xp), np.uint64(yp), np.uint64(op_), np.uint64(n_el))
    gb.end_building()
    bare_graph = gb.complete()
    bare_graph.upload(sc)
    reps = max(20, N // G)
    host, wall, spread = timed(lambda: kit_graph.replay(s), reps, s.sync)
    rows["kit_graph"] = {"label": f"kit graph replay ({G} ops.add)", "host_us": host / G, "wall_us": wall / G,
                         "spread": spread, "noisy": spread > MAX_SPREAD, "x_core_4arg": None}
    host, wall, spread = timed(lambda: bare_graph.launch(sc), reps, s.sync)
    rows["core_graph"] = {"label": f"bare cuda.core graph ({G} add_f32)", "host_us": host / G, "wall_us": wall / G,
                          "spread": spread, "noisy": spread > MAX_SPREAD, "x_core_4arg": None}
    # kernels per second through each path (wall)
    for r in rows.values():
        r["kernels_per_s"] = 1e6 / r["wall_us"]

    print(f"\nlaunch overhead on {dev.name}: host µs per launch ({N} back-to-back launches per round, "
          f"{args.rounds} interleaved rounds), x core = median of the per-round ratios to a bare 4-arg "
          "cuda.core launch")
    print(f"{'path':52} {'host µs':>8} {'wall µs':>8} {'x core':>7} {'kernels/s':>10} {'spread':>7}")
    for r in rows.values():
        mark = "~" if r["noisy"] else " "
        x = f"{r['x_core_4arg']:7.2f}" if r["x_core_4arg"] is not None else f"{'':7}"
        print(f"{r['label']:52} {r['host_us']:7.3f}{mark} {r['wall_us']:8.3f} {x} "
              f"{r['kernels_per_s']:10.0f} {100 * r['spread']:6.1f}%")
    for name, b in bars.items():
        print(f"bar {name}: {b['ratio']:.2f}x (<= {b['bar']:.2f}: {'met' if b['met'] else 'NOT met'})")
    kg, cg = rows["kit_graph"], rows["core_graph"]
    print(f"graph replay of {G} kernels: host µs per replay kit {kg['host_us'] * G:.2f} vs bare cuda.core "
          f"{cg['host_us'] * G:.2f} ({kg['host_us'] / cg['host_us']:.2f}x); wall per kernel "
          f"{kg['wall_us']:.3f} vs {cg['wall_us']:.3f} µs ({kg['wall_us'] / cg['wall_us']:.2f}x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": dev.name, "n": N, "rounds": args.rounds, "warmup_ms": args.warmup_ms,
                       "graph_kernels": G, "rows": rows, "bars": bars}, f, indent=2)
    s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
