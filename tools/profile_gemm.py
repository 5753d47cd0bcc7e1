"""One matmul per named algorithm, for a profiler (Nsight Compute) to look at:

    ncu --section SpeedOfLight --section WarpStateStats -k regex:gemm python3 tools/profile_gemm.py simt256 bf16_sm90

Each algorithm runs twice (the first launch loads the module); size with --n (default 4096).
The names "cupy" and "torch_bf16" run cuBLAS SGEMM (through CuPy) and cuBLAS BF16 (through
PyTorch) on the same sizes, for a side-by-side profile with the peer.
"""

import argparse

import numpy as np

import cudart_kit as ck
from cudart_kit.memory import bfloat16
from cudart_kit.ops.gemm import matmul

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("algos", nargs="+", help="matmul algo names")
p.add_argument("--n", type=int, default=4096)
args = p.parse_args()
s = ck.Stream.create(0)
rng = np.random.default_rng(0)
n = args.n
for algo in args.algos:
    if algo in ("cupy", "torch_bf16"):
        if algo == "cupy":
            import cupy as cp
            x, y = (cp.asarray(rng.uniform(-1, 1, (n, n)).astype(np.float32)) for _ in range(2))
            for _ in range(2):
                cp.matmul(x, y)
            cp.cuda.Device().synchronize()
        else:
            import torch
            x, y = (torch.rand(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
            for _ in range(2):
                torch.matmul(x, y)
            torch.cuda.synchronize()
        print(algo, "done")
        continue
    dt = bfloat16 if algo.startswith("bf16") else np.float16 if algo.startswith("fp16") else np.float32
    a = ck.to_device(rng.uniform(-1, 1, (n, n)).astype(dt), stream=s)
    b = ck.to_device(rng.uniform(-1, 1, (n, n)).astype(dt), stream=s)
    c = ck.empty((n, n), dt, stream=s)
    for _ in range(2):
        matmul(a, b, c, algo=algo, stream=s)
    s.sync()
    print(algo, "done")
