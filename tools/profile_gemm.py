"""One matmul per named algorithm, for a profiler (Nsight Compute) to look at:

    ncu --section SpeedOfLight --section WarpStateStats -k regex:gemm python3 tools/profile_gemm.py simt256 bf16_sm90

Each algorithm runs twice (the first launch loads the module); size with --n (default 4096), or
--shape MxNxK for a rectangular product (e.g. 4096x4096x256, the short-K case).
The names "cupy" and "torch_bf16" run cuBLAS SGEMM (through CuPy) and cuBLAS BF16 (through
PyTorch) on the same sizes, for a side-by-side profile with the peer. A Hopper algorithm name
with "_p" appended (bf16_sm90_p) runs its persistent wide kernel, "_1t" its one-tile-per-CTA one.
"""

import argparse

import numpy as np

import cudart_kit as ck
from cudart_kit.memory import bfloat16
from cudart_kit.ops.gemm import matmul

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("algos", nargs="+", help="matmul algo names")
p.add_argument("--n", type=int, default=4096)
p.add_argument("--shape", default=None, help="MxNxK (overrides --n)")
args = p.parse_args()
s = ck.Stream.create(0)
rng = np.random.default_rng(0)
M, N, K = map(int, args.shape.split("x")) if args.shape else (args.n,) * 3
for algo in args.algos:
    if algo in ("cupy", "torch_bf16"):
        if algo == "cupy":
            import cupy as cp
            x = cp.asarray(rng.uniform(-1, 1, (M, K)).astype(np.float32))
            y = cp.asarray(rng.uniform(-1, 1, (K, N)).astype(np.float32))
            for _ in range(2):
                cp.matmul(x, y)
            cp.cuda.Device().synchronize()
        else:
            import torch
            x = torch.rand(M, K, device="cuda", dtype=torch.bfloat16)
            y = torch.rand(K, N, device="cuda", dtype=torch.bfloat16)
            for _ in range(2):
                torch.matmul(x, y)
            torch.cuda.synchronize()
        print(algo, "done")
        continue
    from cudart_kit.ops import _gemm_sm90

    _gemm_sm90.FORCE_BN = _gemm_sm90.FORCE_PERSIST = None
    for tag, flag in (("_p", True), ("_1t", False)):
        if algo.endswith(tag):
            algo = algo[:-len(tag)]
            _gemm_sm90.FORCE_BN, _gemm_sm90.FORCE_PERSIST = 256, flag
    dt = bfloat16 if algo.startswith("bf16") else np.float16 if algo.startswith("fp16") else np.float32
    a = ck.to_device(rng.uniform(-1, 1, (M, K)).astype(dt), stream=s)
    b = ck.to_device(rng.uniform(-1, 1, (K, N)).astype(dt), stream=s)
    c = ck.empty((M, N), dt, stream=s)
    for _ in range(2):
        matmul(a, b, c, algo=algo, stream=s)
    s.sync()
    print(algo, "done")
