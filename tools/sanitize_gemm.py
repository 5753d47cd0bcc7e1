"""Small matmuls of every algorithm at odd shapes, to run under compute-sanitizer:

    compute-sanitizer --tool memcheck python3 tools/sanitize_gemm.py
    compute-sanitizer --tool racecheck python3 tools/sanitize_gemm.py
"""

import numpy as np

import cudart_kit as ck
from cudart_kit.memory import bfloat16
from cudart_kit.ops.gemm import SIMT, matmul

s = ck.Stream.create(0)
rng = np.random.default_rng(1)
algos = [("naive", np.float32), ("tiled", np.float32), *((k, np.float32) for k in SIMT),
         ("tf32", np.float32), ("bf16", bfloat16), ("fp16", np.float16)]
if s.device.compute_capability == (9, 0):  # the sm_90a kernels (wgmma + TMA) and their operand staging
    algos += [("tf32_sm90", np.float32), ("bf16_sm90", bfloat16), ("fp16_sm90", np.float16)]
for algo, dt in algos:
    for (M, N, K) in ((1, 1, 1), (67, 131, 45), (130, 257, 33), (300, 520, 200)):
        for tb in ((False, True) if algo.endswith("_sm90") else (False,)):
            a = ck.to_device(rng.uniform(-1, 1, (M, K)).astype(dt), stream=s)
            b = ck.to_device(rng.uniform(-1, 1, (N, K) if tb else (K, N)).astype(dt), stream=s)
            c = ck.to_device(rng.uniform(-1, 1, (M, N)).astype(dt), stream=s)
            matmul(a, b, c, alpha=1.5, beta=0.5, algo=algo, transpose_b=tb, stream=s)
    s.sync()
    print(algo, "ok")
