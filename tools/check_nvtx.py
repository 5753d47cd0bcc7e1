"""NVTX on the device: are the kit's ranges really emitted, and what do they cost?

  python3 tools/check_nvtx.py work      # ops.add and ops.mul with ranges on (run under ncu)
  python3 tools/check_nvtx.py cost      # host µs per ops.add, ranges off / on / off again

Under ``ncu --nvtx --nvtx-include "cudart_kit@ops.add/"`` only the add kernels may be profiled,
under ``.../ops.mul/`` only the mul kernels: tools/device_run.sh's nvtx stage checks both."""

from __future__ import annotations

import json
import sys
import time

import numpy as np

import cudart_kit as ck
from cudart_kit import ops, profiling


def work() -> None:
    profiling.enable()
    s = ck.Stream.create(0)
    n = 1 << 20
    x = ck.to_device(np.random.rand(n).astype(np.float32), stream=s)
    y = ck.to_device(np.random.rand(n).astype(np.float32), stream=s)
    out = ck.empty(n, np.float32, stream=s)
    for _ in range(2):
        ops.add(x, y, out, stream=s)
        ops.mul(x, y, out, stream=s)
    s.sync()
    ref = x.to_numpy(stream=s).astype(np.float64) * y.to_numpy(stream=s)
    assert np.allclose(out.to_numpy(stream=s), ref, rtol=1e-6)
    print("work done")


def _per_call_us(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def cost() -> None:
    s = ck.Stream.create(0)
    x = ck.to_device(np.random.rand(1000).astype(np.float32), stream=s)
    y = ck.to_device(np.random.rand(1000).astype(np.float32), stream=s)
    out = ck.empty(1000, np.float32, stream=s)
    call = lambda: ops.add(x, y, out, stream=s)  # noqa: E731
    for _ in range(2000):
        call()
    s.sync()
    rows = {}
    for label, on in (("off", False), ("on", True), ("off again", False)):
        profiling.enable(on)
        best = min(_per_call_us(call, 20000) for _ in range(3))
        s.sync()
        rows[label] = round(best, 3)
    profiling.disable()
    print(json.dumps({"ops.add 1000 float32, host us per call (best of 3 x 20000)": rows}))


if __name__ == "__main__":
    {"work": work, "cost": cost}[sys.argv[1] if len(sys.argv) > 1 else "work"]()
