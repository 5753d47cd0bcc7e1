"""Stability of `cudart-kit bandwidth` across invocations, against a peer measured in the same run.

Runs ``cudart-kit bandwidth --size S --memory pinned --json`` ``--runs`` times back to back, each a
separate process, for every size (default 32M and 256M); collects the H2D pinned, D2H pinned and
D2D figures; and compares each with a peer measured in the same run: NVIDIA's bandwidthTest when
a binary is found (``--bandwidthtest``, PATH, the CUDA demo_suite), and PyTorch, when importable:
``Tensor.copy_(non_blocking=True)`` between pinned host and device memory and ``copy_`` device to
device, timed with ``torch.cuda.Event`` over batches of >= 5 ms of back-to-back copies after a
200 ms warm-up, measured in a child process before and after the kit's invocations (the higher
of the two is the peer: the stricter comparison). The ratio is taken against bandwidthTest when it
ran, else against PyTorch.

Pass per figure: max/min - 1 over the invocations <= 5 % (--max-range) and median / peer >= 0.9
(--min-ratio). Prints a table (first line starts with ``bench_stability``), writes JSON to
``--out``, exits 0 when every figure passes, 1 when one fails, 2 when the kit could not run.

    python tools/bench_stability.py [--runs 10] [--sizes 32M,256M] [--device 0] [--out stability.json]
        [--peer auto|bandwidthtest|torch|none] [--bandwidthtest PATH] [--kit-args "--repeat 20"]

The parent process never touches CUDA: every measurement runs in its own child process.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCHEMA = "cudart-kit/bench-stability/1"
FIGURES = (("H2D", "pinned"), ("D2H", "pinned"), ("D2D", "device"))
MiB = 1 << 20
BANDWIDTHTEST_PATHS = ("/usr/local/cuda/extras/demo_suite/bandwidthTest",
                       "/usr/local/cuda/samples/bin/x86_64/linux/release/bandwidthTest",
                       "/usr/local/cuda*/extras/demo_suite/bandwidthTest",
                       "/usr/local/cuda*/samples/bin/x86_64/linux/release/bandwidthTest")
ROOT = Path(__file__).resolve().parent.parent


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)(?:i?B)?\s*", text, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 32M, 256M, 1G)")
    return int(float(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2).upper()])


def label(direction: str, memory: str) -> str:
    return direction if direction == "D2D" else f"{direction} {memory}"


# --- the kit ------------------------------------------------------------------------------------

def kit_command(python: str, nbytes: int, device: int, extra: list[str]) -> list[str]:
    return [python, "-m", "cudart_kit", "bandwidth", "--size", str(nbytes), "--memory", "pinned",
            "--device", str(device), "--json", *extra]


def run_kit(cmd: list[str], timeout_s: float) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {out.returncode}: {out.stderr.strip()[-2000:]}")
    doc = json.loads(out.stdout)
    figs = {}
    for r in doc["results"]:
        figs[label(r["direction"], r["memory"])] = {
            "gbps": r["gbps"], "median_ms": r["median_ms"], "spread": r.get("spread"), "noisy": r.get("noisy"),
            "copies_per_sample": r.get("copies_per_sample"), "samples": r.get("samples"),
            "measured_ms": r.get("measured_ms"), "warmup_stable": r.get("warmup_stable"), "gated": r.get("gated"),
            "stop": r.get("stop")}
    return {"wall_s": wall, "figures": figs, "device": (doc.get("devices") or [{}])[0].get("name")}


# --- peers --------------------------------------------------------------------------------------

def find_bandwidthtest(explicit: str | None) -> str | None:
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("bandwidthTest")
    if found:
        return found
    for pattern in BANDWIDTHTEST_PATHS:
        for path in sorted(glob.glob(pattern)):
            if os.access(path, os.X_OK):
                return path
    return None


_BT_CSV = re.compile(r"bandwidthTest-(H2D|D2H|D2D)(?:-\w*)?\s*,\s*Bandwidth\s*=\s*([\d.]+)\s*([GM])B/s\s*,\s*Size\s*=\s*(\d+)")
_BT_SECTION = re.compile(r"(Host to Device|Device to Host|Device to Device) Bandwidth")
_BT_ROW = re.compile(r"^\s*(\d+)\s+([\d.]+)\s*$")
_BT_DIR = {"Host to Device": "H2D", "Device to Host": "D2H", "Device to Device": "D2D"}


def parse_bandwidthtest(text: str) -> dict[tuple[str, int], float]:
    """{(direction, bytes): GB/s (1e9)} from bandwidthTest's --csv lines, or from its table.
    Old builds print MB/s computed as bytes * 1024 / (ms * 2^20): converted to 1e9 bytes/s."""
    out: dict[tuple[str, int], float] = {}
    for m in _BT_CSV.finditer(text):
        v = float(m.group(2)) * (1.0 if m.group(3) == "G" else 1.024e-3)
        out[(m.group(1), int(m.group(4)))] = v
    if out:
        return out
    direction, scale = None, 1.0
    for line in text.splitlines():
        sec = _BT_SECTION.search(line)
        if sec:
            direction = _BT_DIR[sec.group(1)]
            continue
        if "Bandwidth(" in line:
            scale = 1.024e-3 if "MB/s" in line else 1.0
            continue
        row = _BT_ROW.match(line)
        if row and direction:
            out[(direction, int(row.group(1)))] = float(row.group(2)) * scale
    return out


def run_bandwidthtest(path: str, nbytes: int, device: int, timeout_s: float) -> dict:
    cmd = [path, "--memory=pinned", "--mode=range", f"--start={nbytes}", f"--end={nbytes}",
           f"--increment={nbytes}", "--htod", "--dtoh", "--dtod", f"--device={device}", "--csv"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    figs = parse_bandwidthtest(out.stdout)
    got = {label(d, "pinned" if d != "D2D" else "device"): v for (d, n), v in figs.items() if n == nbytes}
    if out.returncode != 0 or not got:
        raise RuntimeError(f"{' '.join(cmd)} exited {out.returncode}: {(out.stdout + out.stderr).strip()[-1500:]}")
    return {"command": cmd, "figures": got}


def torch_peer(nbytes: int, device: int, *, warmup_ms: float = 200.0, batch_ms: float = 5.0,
               batches: int = 20) -> dict:
    """PyTorch copies of ``nbytes``, timed with torch.cuda.Event over batches of back-to-back copies
    (>= ``batch_ms`` each) after ``warmup_ms`` of copies; GB/s of the median batch (D2D x2)."""
    import torch

    dev = torch.device("cuda", device)
    torch.cuda.set_device(dev)
    s = torch.cuda.Stream(dev)
    a = torch.empty(nbytes, dtype=torch.uint8, device=dev)
    b = torch.empty_like(a)
    h = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    h.fill_(0x5A)
    a.fill_(0x33)
    copies = {"H2D pinned": lambda: a.copy_(h, non_blocking=True),
              "D2H pinned": lambda: h.copy_(a, non_blocking=True),
              "D2D": lambda: b.copy_(a, non_blocking=True)}
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    out = {}
    with torch.cuda.stream(s):
        for name, fn in copies.items():
            fn()
            s.synchronize()
            e0.record(s)
            fn()
            e1.record(s)
            s.synchronize()
            k = max(1, math.ceil(batch_ms / max(e0.elapsed_time(e1), 1e-4)))
            t_end = time.perf_counter() + warmup_ms / 1e3
            while time.perf_counter() < t_end:
                for _ in range(k):
                    fn()
                s.synchronize()
            per = []
            for _ in range(batches):
                e0.record(s)
                for _ in range(k):
                    fn()
                e1.record(s)
                s.synchronize()
                per.append(e0.elapsed_time(e1) / k)
            med = statistics.median(per)
            q = sorted(per)
            factor = 2 if name == "D2D" else 1
            out[name] = {"gbps": factor * nbytes / (med * 1e-3) / 1e9, "median_ms": med, "copies_per_batch": k,
                         "batches": batches, "spread": (q[int(0.9 * (len(q) - 1))] - q[int(0.1 * (len(q) - 1))]) / med}
    return {"torch": torch.__version__, "figures": out}


def run_torch_peer(python: str, nbytes: int, device: int, timeout_s: float) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--torch-peer-child", str(nbytes), "--device", str(device)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if out.returncode != 0:
        raise RuntimeError(f"PyTorch peer exited {out.returncode}: {out.stderr.strip()[-1500:]}")
    return json.loads(out.stdout)


# --- the verdict (pure) ---------------------------------------------------------------------------

def summarize(invocations: list[dict], peers: dict, *, max_range: float, min_ratio: float) -> list[dict]:
    """One row per figure: min / median / max GB/s over the invocations, max/min - 1, the peer
    (bandwidthTest when measured, else PyTorch: the higher of its runs) and the verdict."""
    rows = []
    for direction, memory in FIGURES:
        name = label(direction, memory)
        vals = [inv["figures"][name]["gbps"] for inv in invocations if name in inv["figures"]]
        if not vals:
            continue
        lo, med, hi = min(vals), statistics.median(vals), max(vals)
        rng = hi / lo - 1 if lo > 0 else math.inf
        noisy = sum(1 for inv in invocations if inv["figures"].get(name, {}).get("noisy"))
        bt = (peers.get("bandwidthTest") or {}).get("figures", {}).get(name)
        tps = [p["figures"][name]["gbps"] for p in peers.get("torch", []) if name in p.get("figures", {})]
        tp = max(tps) if tps else None
        peer_name, peer = ("bandwidthTest", bt) if bt else (("PyTorch copy_", tp) if tp else (None, None))
        ratio = med / peer if peer else None
        ok_range = rng <= max_range
        ok_ratio = None if ratio is None else ratio >= min_ratio
        rows.append({"figure": name, "runs": len(vals), "min_gbps": lo, "median_gbps": med, "max_gbps": hi,
                     "range": rng, "range_ok": ok_range, "noisy_runs": noisy, "peer": peer_name, "peer_gbps": peer,
                     "bandwidthtest_gbps": bt, "torch_gbps": tps, "ratio": ratio, "ratio_ok": ok_ratio,
                     "ok": ok_range and ok_ratio is not False, "gbps": vals})
    return rows


def format_rows(size: int, rows: list[dict]) -> list[str]:
    lines = []
    for r in rows:
        peer = "-" if r["peer_gbps"] is None else f"{r['peer_gbps']:9.1f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
        lines.append(f"{size // MiB:>5} MiB  {r['figure']:11} {r['min_gbps']:9.1f} {r['median_gbps']:9.1f} "
                     f"{r['max_gbps']:9.1f}  {100 * r['range']:6.2f}% {'ok' if r['range_ok'] else 'FAIL':>4}  "
                     f"{r['noisy_runs']:>2}/{r['runs']:<2} {(r['peer'] or '-'):>14} {peer:>9} {ratio:>6} "
                     f"{'-' if r['ratio_ok'] is None else ('ok' if r['ratio_ok'] else 'FAIL'):>4}")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10, help="invocations per size (default 10)")
    p.add_argument("--sizes", default="32M,256M", help="comma list (default 32M,256M)")
    p.add_argument("--device", type=int, default=0)
    p.add_argument("--out", default=None, help="write the JSON document here")
    p.add_argument("--peer", choices=("auto", "bandwidthtest", "torch", "none"), default="auto",
                   help="auto: bandwidthTest when found, PyTorch when importable (both are measured)")
    p.add_argument("--bandwidthtest", default=None, help="path of NVIDIA's bandwidthTest binary")
    p.add_argument("--python", default=sys.executable, help="interpreter for the child processes")
    p.add_argument("--kit-args", default="", help="extra arguments for cudart-kit bandwidth (one string)")
    p.add_argument("--max-range", type=float, default=0.05, help="max/min - 1 allowed per figure (0.05)")
    p.add_argument("--min-ratio", type=float, default=0.9, help="median / peer required per figure (0.9)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per child process")
    p.add_argument("--torch-peer-child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.torch_peer_child is not None:  # child: the PyTorch peer at one size, JSON on stdout
        print(json.dumps(torch_peer(args.torch_peer_child, args.device)))
        return 0

    sizes = [parse_size(x) for x in args.sizes.split(",") if x.strip()]
    extra = shlex.split(args.kit_args)
    bt_path = find_bandwidthtest(args.bandwidthtest) if args.peer in ("auto", "bandwidthtest") else None
    want_torch = args.peer in ("auto", "torch")
    notes: list[str] = []
    if args.peer == "bandwidthtest" and bt_path is None:
        notes.append("bandwidthTest not found: no peer")
    doc = {"schema": SCHEMA, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": args.runs, "device": args.device,
           "kit_command": kit_command(args.python, sizes[0], args.device, extra)[1:],
           "criteria": {"max_range": args.max_range, "min_ratio": args.min_ratio}, "sizes": [], "notes": notes}
    ok_all = True
    t_start = time.perf_counter()
    table = []
    for n in sizes:
        peers: dict = {"torch": []}
        entry = {"bytes": n, "invocations": [], "peers": peers}

        def measure_torch(when: str) -> None:
            if not want_torch:
                return
            try:
                peers["torch"].append({**run_torch_peer(args.python, n, args.device, args.timeout), "when": when})
            except Exception as exc:  # no PyTorch or no CUDA build of it: the other peer may do
                notes.append(f"{n // MiB} MiB PyTorch peer ({when}): {exc}")

        measure_torch("before")
        if bt_path:
            try:
                peers["bandwidthTest"] = run_bandwidthtest(bt_path, n, args.device, args.timeout)
            except Exception as exc:
                notes.append(f"{n // MiB} MiB bandwidthTest: {exc}")
        cmd = kit_command(args.python, n, args.device, extra)
        try:
            for i in range(args.runs):
                inv = run_kit(cmd, args.timeout)
                inv["index"] = i
                entry["invocations"].append(inv)
                print(f"  {n // MiB} MiB run {i + 1}/{args.runs}: "
                      + ", ".join(f"{k} {v['gbps']:.1f}{'~' if v.get('noisy') else ''}" for k, v in inv["figures"].items())
                      + f" ({inv['wall_s']:.1f} s)", file=sys.stderr, flush=True)
        except Exception as exc:
            print(f"bench_stability: error: {exc}", file=sys.stderr)
            doc["sizes"].append(entry)
            _write(args.out, doc)
            return 2
        measure_torch("after")
        entry["rows"] = summarize(entry["invocations"], peers, max_range=args.max_range, min_ratio=args.min_ratio)
        entry["kit_wall_s"] = [inv["wall_s"] for inv in entry["invocations"]]
        ok_all &= all(r["ok"] for r in entry["rows"])
        doc["sizes"].append(entry)
        table += format_rows(n, entry["rows"])
    doc["seconds"] = time.perf_counter() - t_start
    doc["passed"] = ok_all

    dev = next((inv.get("device") for e in doc["sizes"] for inv in e["invocations"]), None)
    print(f"bench_stability: {dev}, {args.runs} invocations of `cudart-kit bandwidth --size S --memory pinned "
          f"--json` per size; range = max/min - 1 (<= {100 * args.max_range:g} %), ratio = median / peer "
          f"(>= {args.min_ratio:g}); GB/s = 1e9 bytes/s, D2D counts read + write")
    print(f"{'size':>9}  {'figure':11} {'min':>9} {'median':>9} {'max':>9}  {'range':>7} {'':>4}  "
          f"{'noisy':>5} {'peer':>14} {'peer GB/s':>9} {'ratio':>6} {'':>4}")
    for line in table:
        print(line)
    walls = [w for e in doc["sizes"] for w in e.get("kit_wall_s", [])]
    if walls:
        print(f"kit invocation wall time (process start to exit): median {statistics.median(walls):.2f} s, "
              f"max {max(walls):.2f} s")
    for note in notes:
        print(f"note: {note}")
    print(f"verdict: {'PASS' if ok_all else 'FAIL'} ({doc['seconds']:.0f} s)")
    _write(args.out, doc)
    return 0 if ok_all else 1


def _write(path: str | None, doc: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(doc, indent=1, allow_nan=False, default=str) + "\n")


if __name__ == "__main__":
    sys.exit(main())
