"""Small matmuls of every algorithm at odd shapes, eagerly and replayed from a CUDA graph (whose
workspaces, the sm90 staging copies and cuBLAS's, belong to the graph), to run under
compute-sanitizer; then the fused epilogues (every bias shape, relu and gelu, beta on and off)
of the SIMT and Hopper kernels at odd shapes (the Hopper twins' shared-memory tile pass and the
producer warp's staged bias are what racecheck looks at); then the persistent wide Hopper kernels
on a few CTAs (many tiles each: the ring's barriers carried from tile to tile):

    compute-sanitizer --tool memcheck python3 tools/sanitize_gemm.py
    compute-sanitizer --tool racecheck python3 tools/sanitize_gemm.py
"""

import argparse

import numpy as np

import cudart_kit as ck
from cudart_kit.memory import bfloat16
from cudart_kit.ops.gemm import SIMT, matmul

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--parts", default="eager,graph,epilogue,persistent",
                help="comma list of eager, graph, epilogue, persistent")
ap.add_argument("--algos", default="", help="comma list of algorithms (default: all this device runs)")
opts = ap.parse_args()
parts = set(opts.parts.split(","))
s = ck.Stream.create(0)
rng = np.random.default_rng(1)
algos = [("naive", np.float32), ("tiled", np.float32), *((k, np.float32) for k in SIMT),
         ("tf32", np.float32), ("bf16", bfloat16), ("fp16", np.float16)]
if s.device.compute_capability == (9, 0):  # the sm_90a kernels (wgmma + TMA) and their operand staging
    algos += [("tf32_sm90", np.float32), ("bf16_sm90", bfloat16), ("fp16_sm90", np.float16)]
if opts.algos:
    algos = [a for a in algos if a[0] in opts.algos.split(",")]
# the stored layouts each algorithm reads: (transpose_a, transpose_b)
LAYOUTS = {"simt256": ((False, False), (True, False), (False, True), (True, True)),
           "tf32_sm90": ((False, False), (False, True)), "bf16_sm90": ((False, False), (False, True)),
           "fp16_sm90": ((False, False), (False, True))}
for algo, dt in algos if "eager" in parts else ():
    for (M, N, K) in ((1, 1, 1), (67, 131, 45), (130, 257, 33), (300, 520, 200)):
        for ta, tb in LAYOUTS.get(algo, ((False, False),)):
            a = ck.to_device(rng.uniform(-1, 1, (K, M) if ta else (M, K)).astype(dt), stream=s)
            b = ck.to_device(rng.uniform(-1, 1, (N, K) if tb else (K, N)).astype(dt), stream=s)
            c = ck.to_device(rng.uniform(-1, 1, (M, N)).astype(dt), stream=s)
            matmul(a, b, c, alpha=1.5, beta=0.5, algo=algo, transpose_a=ta, transpose_b=tb, stream=s)
    s.sync()
    print(algo, "ok")

# The same inside graph captures: each algorithm at an odd shape in its stored layouts, captured
# once (checked path + cached plan) and replayed twice, so the sanitizer sees the graph-owned
# workspaces (tf32_sm90's B^T and A's re-pitched copy, 16-bit re-pitched copies) being written
# and read by replays.
for algo, dt in algos if "graph" in parts else ():
    M, N, K = 67, 131, 45
    for ta, tb in LAYOUTS.get(algo, ((False, False),)):
        a = ck.to_device(rng.uniform(-1, 1, (K, M) if ta else (M, K)).astype(dt), stream=s)
        b = ck.to_device(rng.uniform(-1, 1, (N, K) if tb else (K, N)).astype(dt), stream=s)
        c1 = ck.to_device(rng.uniform(-1, 1, (M, N)).astype(dt), stream=s)
        c2 = ck.to_device(rng.uniform(-1, 1, (M, N)).astype(dt), stream=s)
        with ck.graph.capture(s) as cap:
            matmul(a, b, c1, alpha=1.5, beta=0.5, algo=algo, transpose_a=ta, transpose_b=tb, stream=cap.stream)
            matmul(a, b, c2, alpha=1.5, beta=0.5, algo=algo, transpose_a=ta, transpose_b=tb, stream=cap.stream)
        for _ in range(2):
            cap.graph.replay(s)
        s.sync()
        cap.graph.close()
    print(algo, "graph ok")

# Fused epilogues: bias per column ((N,)), per row ((M, 1)), one value ((1, 1)), element-wise
# ((M, N), through a transposed view too), each activation, with and without beta.
epi_algos = [a for a in algos if a[0] in ("simt256", "tf32_sm90", "bf16_sm90", "fp16_sm90") and "epilogue" in parts]
for algo, dt in epi_algos:
    for (M, N, K) in ((67, 131, 45), (130, 257, 200)):
        a = ck.to_device(rng.uniform(-1, 1, (M, K)).astype(dt), stream=s)
        b = ck.to_device(rng.uniform(-1, 1, (K, N)).astype(dt), stream=s)
        biases = [ck.to_device(rng.uniform(-1, 1, shape).astype(dt), stream=s)
                  for shape in ((N,), (M, 1), (1, 1), (M, N))]
        biases.append(ck.to_device(rng.uniform(-1, 1, (N, M)).astype(dt), stream=s).T)
        for bias in biases:
            for act in (None, "relu", "gelu"):
                for beta in (0.0, 0.5):
                    c = ck.to_device(rng.uniform(-1, 1, (M, N)).astype(dt), stream=s)
                    matmul(a, b, c, alpha=1.5, beta=beta, bias=bias, activation=act, algo=algo, stream=s)
    s.sync()
    print(algo, "epilogue ok")

# The persistent wide Hopper kernels: several tiles per CTA (3 CTAs), ragged edges, plain and
# fused, TMA stores (N = 520: 16-byte rows) and the threads' stores (N = 777: rows off 16 bytes)
if s.device.compute_capability == (9, 0) and "persistent" in parts:
    from cudart_kit.ops import _gemm_sm90

    _gemm_sm90.FORCE_BN, _gemm_sm90.FORCE_PERSIST = 256, 3
    for algo, dt in algos:
        if not algo.endswith("_sm90"):
            continue
        for (M, N, K) in ((300, 520, 200), (261, 777, 70)):
            for ta, tb in LAYOUTS[algo]:
                a = ck.to_device(rng.uniform(-1, 1, (K, M) if ta else (M, K)).astype(dt), stream=s)
                b = ck.to_device(rng.uniform(-1, 1, (N, K) if tb else (K, N)).astype(dt), stream=s)
                c = ck.to_device(rng.uniform(-1, 1, (M, N)).astype(dt), stream=s)
                matmul(a, b, c, alpha=1.5, beta=0.5, algo=algo, transpose_a=ta, transpose_b=tb, stream=s)
                bias = ck.to_device(rng.uniform(-1, 1, (N,)).astype(dt), stream=s)
                matmul(a, b, c, alpha=1.5, beta=0.5, bias=bias, activation="gelu", algo=algo, transpose_a=ta,
                       transpose_b=tb, stream=s)
        s.sync()
        print(algo, "persistent ok")
    _gemm_sm90.FORCE_BN = _gemm_sm90.FORCE_PERSIST = None
