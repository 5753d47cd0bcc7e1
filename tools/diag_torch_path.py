"""Where the host time of an op on raw PyTorch tensors goes: each piece of the path timed alone
(best of 5 repeats of 20000 calls, ns per call), next to torch.add(out=) and ops.add. A
diagnostic for tuning the raw-tensor path, not a benchmark of record (tools/bench_launch.py is).

    python tools/diag_torch_path.py [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import cudart_kit as ck
from cudart_kit import ops
import weakref

from cudart_kit import _launch
from cudart_kit.memory.foreign import op_operand


def per_call_ns(fn, n: int = 20000, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter_ns() - t0) / n)
    return best


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    args = ap.parse_args()
    s = ck.Stream.create(ck.get_device(0))
    x = torch.randn(1024, device="cuda")
    y = torch.randn(1024, device="cuda")
    o = torch.empty(1024, device="cuda")
    ts = torch.cuda.ExternalStream(s.handle)
    ops.add(x, y, o, stream=s)  # the first torch object seen: the kit learns torch's types
    s.sync()
    rows = {
        "t.data_ptr()": lambda: x.data_ptr(),
        "t.shape": lambda: x.shape,
        "t.stride()": lambda: x.stride(),
        "t.size()": lambda: x.size(),
        "t.numel()": lambda: x.numel(),
        "weakref()": (lambda r: lambda: r())(weakref.ref(x)),
        "t.dtype": lambda: x.dtype,
        "t.is_contiguous()": lambda: x.is_contiguous(),
        "t._version": lambda: x._version,
        "op_operand(t) (cached Array)": lambda: op_operand(x),
    }
    out = {k: per_call_ns(f) for k, f in rows.items()}
    # the launch floor: the driver call with its argument tuple made once, against cuda.core
    from cuda.core import LaunchConfig, launch as core_launch

    noop = ck.load_kit_module("bench").kernel("kit_noop")
    prep = ck.prepare(noop, 1, 128, device=s.device)
    prep.launch(s)
    args = prep._plan.direct_args(s)
    cfg = LaunchConfig(grid=1, block=128)
    out["cuLaunchKernel(*args), empty kernel"] = per_call_ns(lambda: _launch._cu_launch(*args), n=5000)
    s.sync()
    out["prepared launch, empty kernel"] = per_call_ns(lambda: prep.launch(s), n=5000)
    s.sync()
    out["cuda.core launch, empty kernel"] = per_call_ns(lambda: core_launch(s.core, cfg, noop.core), n=5000)
    s.sync()
    s.sync()
    with torch.cuda.stream(ts):
        out["torch.add(out=)"] = per_call_ns(lambda: torch.add(x, y, out=o), n=5000)
    torch.cuda.synchronize()
    out["ops.add raw tensors"] = per_call_ns(lambda: ops.add(x, y, o, stream=s), n=5000)
    s.sync()
    wx, wy, wo = ck.asarray(x), ck.asarray(y), ck.asarray(o)
    out["ops.add ck.asarray(tensor)s"] = per_call_ns(lambda: ops.add(wx, wy, wo, stream=s), n=5000)
    s.sync()
    a, b, c = (ck.empty(1024, stream=s) for _ in range(3))
    out["ops.add kit arrays"] = per_call_ns(lambda: ops.add(a, b, c, stream=s), n=5000)
    s.sync()
    for k, v in out.items():
        print(f"{k:34s} {v:9.1f} ns")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": ck.get_device(0).name, "ns_per_call": out}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
