"""Matmul benchmark: each kit algorithm against cuBLAS measured in the same run on the same stream
(CuPy for FP32 SGEMM — CuPy does not use TF32 unless asked —, PyTorch for TF32 and BF16/FP16).

    python tools/bench_gemm.py [--sizes 1024,2048,4096,8192] [--repeat 10] [--min-time-ms 100] [--json out.json]
    python tools/bench_gemm.py --host-only   # only the host cost per call (small shapes, cuBLAS at 256^3)

Rows ``<algo>_p`` / ``<algo>_1t`` run the Hopper kernels' wide tiles with the persistent schedule
forced on / off (one tile per CTA), next to the row of what matmul picks itself; ``<algo>_pt``
the persistent kernel with its threads storing out instead of TMA stores.

GPU figures come from cudart_kit.bench.benchmark (warm-up by time until stable, at least
--repeat samples and --min-time-ms of GPU time, a ``~`` marks a noisy figure); host costs are
wall time per call after a time-based warm-up (median of rounds, spread reported). The 256^3 host
rows (algo="cublas", the direct cuBLASLt path, next to the kit's own kernels at that shape) queue
rounds of 200 calls, fewer than the launch queue holds, so the host never waits for the GPU; each
row also gives the GPU time per call (event-timed) to show which side bounds a back-to-back loop.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

import cudart_kit as ck
from cudart_kit.bench import benchmark, relative_spread
from cudart_kit.memory import bfloat16
from cudart_kit.ops import _gemm_sm90
from cudart_kit.ops.gemm import SIMT, matmul

# which cuBLAS row each algorithm is compared with ("_nt": B stored N x K, i.e. transpose_b=True)
PEER = {"cublas": "sgemm", "cublas_bf16": "bf16", "naive": "sgemm", "tiled": "sgemm",
        **{k: "sgemm" for k in SIMT}, "simt_nt": "sgemm", "tf32": "tf32", "bf16": "bf16", "fp16": "fp16",
        "tf32_sm90": "tf32", "tf32_sm90_nt": "tf32", "bf16_sm90": "bf16", "bf16_sm90_nt": "bf16", "fp16_sm90": "fp16"}
# the Hopper kernels' wide tiles with the persistent schedule forced on (_p; _pt: its threads
# store out instead of the copy engine) or off (_1t: one tile per CTA), next to what matmul picks
# by itself (_gemm_sm90.pick_tile)
FORCED = {f"{k}_{tag}": (k, flag) for k in ("bf16_sm90", "fp16_sm90", "tf32_sm90_nt")
          for tag, flag in (("p", True), ("pt", True), ("1t", False))}
PEER.update({k: PEER[base] for k, (base, _) in FORCED.items()})


def _host_us(call, s, n=2000, rounds=5, warmup_s=0.05) -> tuple[float, float]:
    """(median µs of host time per call, spread over the rounds): ``rounds`` rounds of ``n``
    calls queued back to back, after warming up for ``warmup_s`` of wall time (at least 50 calls)."""
    t_end, k = time.perf_counter() + warmup_s, 0
    while k < 50 or time.perf_counter() < t_end:
        call()
        k += 1
    s.sync()
    per = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            call()
        t1 = time.perf_counter()
        s.sync()
        per.append(1e6 * (t1 - t0) / n)
    return statistics.median(per), relative_spread(per)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1024,2048,4096,8192")
    p.add_argument("--rect", default="8192x1024x8192,1024x8192x4096,4096x4096x256")
    p.add_argument("--repeat", type=int, default=10, help="samples per figure, at least (default 10)")
    p.add_argument("--min-time-ms", type=float, default=100.0, help="measured GPU time per figure, at least")
    p.add_argument("--json", default=None)
    p.add_argument("--algos", default="", help="comma-separated subset of the algorithms (default: all)")
    p.add_argument("--host", action=argparse.BooleanOptionalAction, default=True,
                   help="also time the host cost of one small call (default: on)")
    p.add_argument("--host-only", action="store_true", help="skip the TFLOP/s table: host costs only")
    args = p.parse_args(argv)
    import cupy as cp
    import torch

    dev = ck.get_device(0)
    s = ck.Stream.create(dev)
    rng = np.random.default_rng()
    shapes = [(n, n, n) for n in map(int, filter(None, args.sizes.split(",")))]
    shapes += [tuple(map(int, r.split("x"))) for r in args.rect.split(",") if r]
    if args.host_only:
        shapes, args.host = [], True
    rows = []
    ext = cp.cuda.ExternalStream(s.handle)
    tstream = torch.cuda.ExternalStream(s.handle)

    for (M, N, K) in shapes:
        flops = 2.0 * M * N * K
        a32 = ck.to_device(rng.uniform(-1, 1, (M, K)).astype(np.float32), stream=s)
        b32 = ck.to_device(rng.uniform(-1, 1, (K, N)).astype(np.float32), stream=s)
        c32 = ck.empty((M, N), np.float32, stream=s)
        a16 = ck.to_device(rng.uniform(-1, 1, (M, K)).astype(bfloat16), stream=s)
        b16 = ck.to_device(rng.uniform(-1, 1, (K, N)).astype(bfloat16), stream=s)
        c16 = ck.empty((M, N), bfloat16, stream=s)
        h16a = ck.to_device(rng.uniform(-1, 1, (M, K)).astype(np.float16), stream=s)
        h16b = ck.to_device(rng.uniform(-1, 1, (K, N)).astype(np.float16), stream=s)
        h16c = ck.empty((M, N), np.float16, stream=s)
        b32t = ck.to_device(rng.uniform(-1, 1, (N, K)).astype(np.float32), stream=s)  # B stored N x K ("nt")
        b16t = ck.to_device(rng.uniform(-1, 1, (N, K)).astype(bfloat16), stream=s)
        s.sync()
        peers = {}

        def bench(fn, name):
            r = benchmark(fn, stream=s, repeat=args.repeat, min_time_ms=args.min_time_ms, name=name)
            return r.median_ms, r.tflops(flops), r.noisy, r.spread

        ca, cb, cc = cp.asarray(a32), cp.asarray(b32), cp.asarray(c32)

        def cupy_sgemm(_s):
            with ext:
                cp.matmul(ca, cb, out=cc)
        peers["sgemm"] = bench(cupy_sgemm, "cuBLAS SGEMM (CuPy)")
        ta, tb = torch.from_dlpack(a32), torch.from_dlpack(b32)
        tba, tbb = torch.from_dlpack(a16), torch.from_dlpack(b16)
        tha, thb = torch.from_dlpack(h16a), torch.from_dlpack(h16b)
        with torch.cuda.stream(tstream):
            torch.backends.cuda.matmul.allow_tf32 = True
            peers["tf32"] = bench(lambda _s: torch.matmul(ta, tb), "cuBLAS TF32 (PyTorch)")
            torch.backends.cuda.matmul.allow_tf32 = False
            peers["bf16"] = bench(lambda _s: torch.matmul(tba, tbb), "cuBLAS BF16 (PyTorch)")
            peers["fp16"] = bench(lambda _s: torch.matmul(tha, thb), "cuBLAS FP16 (PyTorch)")
        runs = {
            "tiled": lambda st: matmul(a32, b32, c32, algo="tiled", stream=st),
            **{k: (lambda st, k=k: matmul(a32, b32, c32, algo=k, stream=st)) for k in SIMT},
            "simt_nt": lambda st: matmul(a32, b32t, c32, algo="simt", transpose_b=True, stream=st),
            "tf32": lambda st: matmul(a32, b32, c32, algo="tf32", stream=st),
            "bf16": lambda st: matmul(a16, b16, c16, algo="bf16", stream=st),
            "fp16": lambda st: matmul(h16a, h16b, h16c, algo="fp16", stream=st),
        }
        if dev.compute_capability == (9, 0):
            runs.update({
                "tf32_sm90": lambda st: matmul(a32, b32, c32, algo="tf32_sm90", stream=st),
                "tf32_sm90_nt": lambda st: matmul(a32, b32t, c32, algo="tf32_sm90", transpose_b=True, stream=st),
                "bf16_sm90": lambda st: matmul(a16, b16, c16, algo="bf16_sm90", stream=st),
                "bf16_sm90_nt": lambda st: matmul(a16, b16t, c16, algo="bf16_sm90", transpose_b=True, stream=st),
                "fp16_sm90": lambda st: matmul(h16a, h16b, h16c, algo="fp16_sm90", stream=st),
            })
            runs.update({k: runs[base] for k, (base, _) in FORCED.items()})
        if args.algos:
            runs = {k: v for k, v in runs.items() if k in args.algos.split(",")}
        try:
            import nvmath  # noqa: F401

            runs["cublas"] = lambda st: matmul(a32, b32, c32, algo="cublas", stream=st)
            runs["cublas_bf16"] = lambda st: matmul(a16, b16, c16, algo="cublas", stream=st)
        except ImportError:
            pass
        if M * N * K <= 2048 ** 3:
            runs = {"naive": lambda st: matmul(a32, b32, c32, algo="naive", stream=st), **runs}
        for algo, fn in runs.items():
            _gemm_sm90.FORCE_BN, _gemm_sm90.FORCE_PERSIST = (256, FORCED[algo][1]) if algo in FORCED else (None, None)
            _gemm_sm90.FORCE_THREAD_STORE = algo.endswith("_pt")
            try:
                ms, tf, noisy, spread = bench(fn, algo)
            finally:
                _gemm_sm90.FORCE_BN = _gemm_sm90.FORCE_PERSIST = None
                _gemm_sm90.FORCE_THREAD_STORE = False
            pms, ptf, pnoisy, _ = peers[PEER[algo]]
            rows.append({"M": M, "N": N, "K": K, "algo": algo, "ms": ms, "tflops": tf, "spread": spread,
                         "noisy": noisy, "peer": PEER[algo], "peer_tflops": ptf, "peer_noisy": pnoisy,
                         "ratio": tf / ptf})
        for a in (a32, b32, c32, a16, b16, c16, h16a, h16b, h16c, b32t, b16t):
            a.close()

    # host cost of one call: small problems, where the GPU waits for the host
    host = []  # (label, shape, (median us, spread), GPU us per call or None)
    cublas_plans = None
    if args.host:
        n = 64
        for label, dt, kw in (("kit matmul float32 (auto)", np.float32, {}),
                              ("kit matmul bfloat16 (auto)", bfloat16, {}),
                              ("kit matmul float32 (allow_tf32)", np.float32, {"allow_tf32": True})):
            a, b, c = (ck.to_device(rng.uniform(-1, 1, (n, n)).astype(dt), stream=s) for _ in range(3))
            host.append((label, (n, n, n), _host_us(lambda: matmul(a, b, c, stream=s, **kw), s), None))
        ca, cb, cc = (cp.asarray(ck.to_device(rng.uniform(-1, 1, (n, n)).astype(np.float32), stream=s)) for _ in range(3))
        with ext:
            host.append(("cupy.matmul float32", (n, n, n), _host_us(lambda: cp.matmul(ca, cb, out=cc), s), None))
        ta_, tb_ = torch.from_dlpack(ck.to_device(rng.uniform(-1, 1, (n, n)).astype(bfloat16), stream=s)), \
            torch.from_dlpack(ck.to_device(rng.uniform(-1, 1, (n, n)).astype(bfloat16), stream=s))
        tc_ = torch.empty((n, n), dtype=torch.bfloat16, device="cuda")
        with torch.cuda.stream(tstream):
            host.append(("torch.matmul bfloat16", (n, n, n), _host_us(lambda: torch.matmul(ta_, tb_, out=tc_), s),
                         None))
        # algo="cublas" (one cublasLtMatmul per call through nvmath-python's bindings) at 256^3, a
        # cached shape, next to the kit's own kernels at that shape
        n = 256
        cases = [("kit matmul float32 (auto) 256^3", np.float32, "auto"),
                 ("kit matmul bfloat16 (auto) 256^3", bfloat16, "auto")]
        try:
            import nvmath  # noqa: F401
        except ImportError:
            print("nvmath-python is not installed: no algo='cublas' host rows", file=sys.stderr)
        else:
            cases += [("kit matmul float32 (cublas) 256^3", np.float32, "cublas"),
                      ("kit matmul bfloat16 (cublas) 256^3", bfloat16, "cublas")]
        from cudart_kit.ops import _cublaslt

        for label, dt, algo in cases:
            a, b, c = (ck.to_device(rng.uniform(-1, 1, (n, n)).astype(dt), stream=s) for _ in range(3))

            def call(a=a, b=b, c=c, algo=algo):
                matmul(a, b, c, algo=algo, stream=s)

            call()  # plans the shape: every timed call below is a cached one
            s.sync()
            made = _cublaslt.stats["plans_made"]
            figure = _host_us(call, s, n=200, rounds=15)
            if algo == "cublas":
                cublas_plans = (cublas_plans or 0) + _cublaslt.stats["plans_made"] - made
            gpu = benchmark(lambda _s, call=call: call(), stream=s, repeat=args.repeat, min_time_ms=20, name=label)
            host.append((label, (n, n, n), figure, 1e3 * gpu.median_ms))

    if rows:
        print(f"\nmatmul on {dev.name}: TFLOP/s (median of >= {args.repeat} event-timed samples and >= "
              f"{args.min_time_ms:g} ms per figure, random data; ~: noisy) and ratio to cuBLAS measured in the "
              "same run")
        print(f"{'M x N x K':>18} {'algo':12} {'ms':>9} {'TFLOP/s':>8} {'cuBLAS':>7} {'TFLOP/s':>8} {'ratio':>6}")
    else:
        print(f"\nmatmul on {dev.name}")
    for r in rows:
        print(f"{r['M']:>6}x{r['N']:>5}x{r['K']:>5} {r['algo']:12} {r['ms']:9.3f} {r['tflops']:7.1f}"
              f"{'~' if r['noisy'] else ' '} {r['peer']:>7} {r['peer_tflops']:7.1f}{'~' if r['peer_noisy'] else ' '} "
              f"{r['ratio']:6.3f}")
    if host:
        print("\nhost time per call, calls queued back to back (the cost of the Python call itself where the GPU "
              "time per call is smaller)")
        for label, shape, (us, spread), gpu_us in host:
            gpu = f"  GPU {gpu_us:6.1f} us/call" if gpu_us is not None else ""
            print(f"  {label:36} {'x'.join(map(str, shape)):>11} {us:7.1f} us  (spread {100 * spread:.1f} %){gpu}")
        if cublas_plans is not None:
            print(f"  cuBLASLt plans made during the timed cublas calls: {cublas_plans} (cached shape: 0 expected)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": dev.name, "date": time.strftime("%Y-%m-%d"), "rows": rows,
                       "host_us_per_call": {k: v[0] for k, _, v, _ in host},
                       "host_us_spread": {k: v[1] for k, _, v, _ in host},
                       "host_shape": {k: list(shape) for k, shape, _, _ in host},
                       "host_gpu_us_per_call": {k: g for k, _, _, g in host if g is not None},
                       "cublas_plans_made_while_timed": cublas_plans}, f, indent=2)
    s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
