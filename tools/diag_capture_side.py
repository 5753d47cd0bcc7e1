"""Diagnostic: what the driver says about the streams of an sm90 matmul captured into a graph.

Under compute-sanitizer memcheck (H200, 2026-12-04) a tf32_sm90 matmul at 67x131x45 inside
ck.graph.capture failed allocating its re-pitch workspace on the kit's side stream: cuda.core's
pool said the stream was capturing. Without the sanitizer the same path passes the GPU tests.
This prints cuStreamIsCapturing for the caller's stream, the capture stream and the side stream
around each step, then runs the capture; run it plain and under memcheck and compare.
"""

import numpy as np
from cuda.bindings import driver as cu

import cudart_kit as ck
from cudart_kit.ops import _gemm_sm90
from cudart_kit.ops.gemm import matmul


def status(name, st):
    if st is None or st.is_closed:
        print(f"  {name}: closed")
        return
    err, cap = cu.cuStreamIsCapturing(cu.CUstream(st.handle))
    print(f"  {name} {st.handle:#x}: {err.name} {getattr(cap, 'name', cap)}")


s = ck.Stream.create(0)
rng = np.random.default_rng(1)
M, N, K = 67, 131, 45
for layout in ((False, False), (False, True)):
    ta, tb = layout
    a = ck.to_device(rng.uniform(-1, 1, (K, M) if ta else (M, K)).astype(np.float32), stream=s)
    b = ck.to_device(rng.uniform(-1, 1, (N, K) if tb else (K, N)).astype(np.float32), stream=s)
    c = ck.to_device(rng.uniform(-1, 1, (M, N)).astype(np.float32), stream=s)
    print("layout", layout, "before the capture")
    status("caller", s)
    status("side", _gemm_sm90._side.get(0))
    try:
        with ck.graph.capture(s) as cap:
            status("capture", cap.stream)
            status("side", _gemm_sm90._side.get(0))
            matmul(a, b, c, alpha=1.5, beta=0.5, algo="tf32_sm90", transpose_a=ta, transpose_b=tb, stream=cap.stream)
            print("  captured one matmul")
            status("side", _gemm_sm90._side.get(0))
        cap.graph.replay(s)
        s.sync()
        cap.graph.close()
        print("  replayed: ok")
    except Exception as exc:  # noqa: BLE001 - a diagnostic: report and go on
        print(f"  FAILED: {type(exc).__name__}: {exc}")
        status("side", _gemm_sm90._side.get(0))
