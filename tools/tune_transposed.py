"""Tile shapes of the transposed twins (kernels/strided.cu, tmap), measured on this GPU.

Builds kernels/strided.cu with -DKIT_TUNE for this GPU's architecture (nvcc on PATH), then
times add_f32_t_<TD2>_<TD3>_<BY> on the two transposed add layouts of tools/bench_views.py
(x transposed; out transposed) and copy_b32_t_* on a transposed copy, each as a ratio to the
contiguous add / the driver's D2D memcpy measured in the same run, and checks every variant's
result against numpy. Prints a table and writes --json. A diagnostic for choosing Shape<T>,
the shipped shape: the benchmark of record is tools/bench_views.py.

    python tools/tune_transposed.py [--rows 8192 --cols 4096] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

import cudart_kit as ck
from cudart_kit import ops

ROOT = Path(__file__).resolve().parents[1]


def build(arch: str) -> Path:
    out = Path(tempfile.mkdtemp()) / "strided_tune.cubin"
    subprocess.run(["nvcc", f"-arch={arch}", "-O3", "-std=c++17", "--extended-lambda", "-DKIT_TUNE", "-cubin",
                    "-o", str(out), str(ROOT / "kernels" / "strided.cu")], check=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=8192)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--json")
    args = ap.parse_args()
    dev = ck.get_device(0)
    major, minor = dev.compute_capability
    mod = ck.Module.load(build(f"sm_{major}{minor}"))
    shapes = sorted({tuple(int(v) for v in m.groups())
                     for m in (re.fullmatch(r"add_f32_t_(\d+)_(\d+)_(\d+)", n) for n in mod.kernel_names()) if m})
    s = ck.Stream.create(dev)
    R, C = args.rows, args.cols
    rng = np.random.default_rng()
    hx, hy = rng.standard_normal((R, C), dtype=np.float32), rng.standard_normal((R, C), dtype=np.float32)
    x, y = ck.to_device(hx, stream=s), ck.to_device(hy, stream=s)
    xt = ck.to_device(np.ascontiguousarray(hx.T), stream=s)  # xt.T holds hx, transposed in memory
    o, ot = ck.empty((R, C), np.float32, stream=s), ck.empty((C, R), np.float32, stream=s)
    nb = R * C * 4
    sms = dev.multiprocessor_count
    i4 = np.int32
    rows, ref = {}, {}

    def time(fn, nbytes):
        res = ck.benchmark(fn, stream=s, repeat=15, min_time_ms=20)
        return res.median_ms, res.gbps(nbytes)

    ref["memcpy"] = time(lambda st: ck.copy(o, x, stream=st), 2 * nb)
    ref["add"] = time(lambda st: ops.add(x, y, o, stream=st), 3 * nb)
    # layouts as launch_strided hands them over: d2 = rows, d3 = columns of the output, strides in elements
    cases = {
        "add x transposed": ("add", (xt.ptr, y.ptr, o.ptr, i4(1), i4(0)), [(1, R), (C, 1), (C, 1)],
                             (R, C), lambda: hx + hy, o),
        "add out transposed": ("add", (x.ptr, y.ptr, ot.ptr, i4(1), i4(1)), [(1, C), (1, C), (R, 1)],
                               (C, R), lambda: (hx + hy).T, ot),
        "copy transposed": ("copy", (xt.ptr, o.ptr, i4(1)), [(1, R), (C, 1)], (R, C), lambda: hx, o),
    }
    for (td2, td3, by) in shapes:
        for label, (op, ptrs, strides, (d2, d3), want, dst) in cases.items():
            kname = f"{'add_f32' if op == 'add' else 'copy_b32'}_t_{td2}_{td3}_{by}"
            kernel = mod.kernel(kname)
            grid = max(1, min(-(-d3 // td3) * -(-d2 // td2), sms * 16))
            argv = (*ptrs, 1, 1, d2, d3)
            for st2, st3 in strides:
                argv += (0, 0, st2, st3)
            plan = ck.prepare(kernel, grid, (32, by), *argv, device=dev)
            ck.memset(dst, 0xFF, stream=s)  # poison: NaN everywhere
            plan.launch(s)
            got = dst.to_numpy(stream=s)
            ok = bool(np.array_equal(got, want()) if op == "copy" else np.allclose(got, want(), rtol=1e-6, atol=1e-6))
            ms, gbps = time(lambda st: plan.launch(st), (3 if op == "add" else 2) * nb)
            base = ref["add"][0] if op == "add" else ref["memcpy"][0]
            rows[(label, td2, td3, by)] = {"ms": ms, "gbps": gbps, "ratio": base / ms, "correct": ok}
    print(f"transposed twins on {dev.name}: {R} x {C} float32; ratio to contiguous add (add rows) / D2D memcpy (copy)")
    print(f"{'case':22s} {'TD2':>4s} {'TD3':>4s} {'BY':>3s} {'ms':>8s} {'GB/s':>8s} {'ratio':>6s}  ok")
    for (label, td2, td3, by), r in sorted(rows.items(), key=lambda kv: (kv[0][0], -kv[1]["ratio"])):
        print(f"{label:22s} {td2:4d} {td3:4d} {by:3d} {r['ms']:8.4f} {r['gbps']:8.1f} {r['ratio']:6.3f}  {r['correct']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": dev.name, "ref_ms": {k: v[0] for k, v in ref.items()},
                                               "rows": [dict(case=k[0], td2=k[1], td3=k[2], by=k[3], **v)
                                                        for k, v in rows.items()]}, indent=1))
    return 0 if all(r["correct"] for r in rows.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
