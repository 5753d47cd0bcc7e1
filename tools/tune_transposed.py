"""Tile shapes and candidate kernels of the transposed twins (kernels/strided.cu), measured on this GPU.

Builds kernels/strided.cu with -DKIT_TUNE for this GPU's architecture (nvcc on PATH), then
times, on the two transposed add layouts of tools/bench_views.py (x transposed; out transposed)
and on a transposed copy, each as a ratio to the contiguous add / the driver's D2D memcpy
measured in the same run, and checks every result against numpy:

- add_f32_t_<TD2>_<TD3>_<BY> / copy_b32_t_*: tmap (the shipped code) over other tile shapes;
- add_f32_t<TAG>_<TD2>_<TD3>_<BY> / copy_b32_t<TAG>_*: the vectorized candidates (TAG v, p, a2,
  a3: see "Candidate successors of tmap" in kernels/strided.cu), each with the host's grid rule
  (grid "host": min(tiles, 16 x SMs), as cudart_kit/memory/strided.py) and with one block per
  resident slot (grid "occ": SMs x the occupancy of the kernel, if that differs). Before they
  are timed, the candidates (and the shipped 32 x 32 x 4 shape, as a check of the checks) are
  run on odd-sized batched layouts: aligned pitches (their vector path with edge tiles and
  partial vectors; the padding must stay untouched) and odd pitches (their fallback path).

The candidates run in a child process (a fault or a hang in one of them loses that candidate
only: it is reported, and the child is started again for the rest). Prints a table and writes
--json (rows: every measured kernel and layout; checks: the odd-size runs). A diagnostic for
choosing the shipped code: the benchmark of record is tools/bench_views.py.

    PYTHONPATH=. python tools/tune_transposed.py [--rows 8192 --cols 4096] [--json FILE]
        [--only REGEX] [--no-occ] [--checks-only] [--jobs N]

JSON rows keep the keys they had (case, td2, td3, by, ms, gbps, ratio, correct) and add kernel,
variant ("t": tmap), grid_kind / grid, smem (dynamic bytes) / static_smem, regs, blocks_per_sm.
The kernels build in parallel parts (--jobs nvcc runs); the whole run takes about a minute
and a half on an H200 (--only / --no-occ shorten it). Exit status 1 when any result is wrong or
a candidate failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time as _time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PLAIN = re.compile(r"(add_f32|copy_b32)_t_(\d+)_(\d+)_(\d+)")
VEC = re.compile(r"(add_f32|copy_b32)_t(v|p|a\d)_(\d+)_(\d+)_(\d+)")
POISON = 0xFFFFFFFF  # the bits ck.memset(.., 0xFF) leaves in every 4-byte element (a NaN)
ODD = (2, 1027, 2053)  # batch, rows, columns of the odd-size checks


# ----------------------------------------------------------------------------------- build
def _nvcc(arch: str, src: Path, out: Path) -> None:
    # -diag-suppress 177: the parts leave the shipped kernels' helpers unused
    subprocess.run(["nvcc", f"-arch={arch}", "-O3", "-std=c++17", "--extended-lambda", "-DKIT_TUNE", "-cubin",
                    "-diag-suppress", "177", "-I", str(ROOT / "kernels"), "-o", str(out), str(src)], check=True)


def build(arch: str, jobs: int) -> list[Path]:
    """The KIT_TUNE kernels as cubins. Split build: copies of strided.cu without the shipped
    instantiations (KIT_STYPED / KIT_SWIDTH / KIT_VTYPED / KIT_VWIDTH lines), each with a share
    of the KIT_TUNE_SHAPE / KIT_TUNE_VEC lines, compiled in parallel (the same templates, so the same kernels as one
    build of the whole file, in a fraction of the time). Falls back to that one build."""
    tmp = Path(tempfile.mkdtemp())
    src = (ROOT / "kernels" / "strided.cu").read_text()
    lines = src.splitlines(keepends=True)
    tune = [i for i, ln in enumerate(lines) if re.match(r"KIT_TUNE_(SHAPE|VEC)\(", ln)]
    drop = {i for i, ln in enumerate(lines) if re.match(r"KIT_[SV](TYPED|WIDTH)\(", ln)}
    n = max(1, min(jobs, len(tune)))
    parts = []
    for k in range(n):
        mine = set(tune[k::n])
        text = "".join(ln for i, ln in enumerate(lines) if i not in drop and (i in mine or i not in tune))
        p = tmp / f"strided_tune_{k}.cu"
        p.write_text(text)
        parts.append(p)
    outs = [p.with_suffix(".cubin") for p in parts]
    try:
        with ThreadPoolExecutor(n) as ex:
            list(ex.map(lambda po: _nvcc(arch, *po), zip(parts, outs)))
        return outs
    except subprocess.CalledProcessError:
        print("split build failed; building kernels/strided.cu whole", file=sys.stderr)
        out = tmp / "strided_tune.cubin"
        _nvcc(arch, ROOT / "kernels" / "strided.cu", out)
        return [out]


# ------------------------------------------------------------------------------ geometry
def mode_of(tag: str) -> int:
    return {"v": 0, "p": 1}.get(tag, int(tag[1:]) if tag[:1] == "a" else -1)


def vshared_bytes(tag: str, td2: int, td3: int, nin: int, nstaged: int) -> int:
    """Dynamic shared memory of a candidate's vector path (vshared_elems in strided.cu) in bytes."""
    tile, mode = td2 * td3, mode_of(tag)
    return 4 * (nstaged * tile if mode == 0 else 2 * nstaged * tile if mode == 1 else mode * nin * tile)


def staged_mask(flags: tuple, nin: int) -> int:
    """The staging mask a candidate derives from the flag arguments (vtmap2 / vtmap1)."""
    if nin == 1:
        return 1
    fx, fy = (int(f) for f in flags)
    return 1 if fx and not fy else 2 if fy and not fx else 3


def vec_ok(ptrs: list, strides: list, mask: int, td2: int, td3: int) -> bool:
    """Mirror of vec_ok in strided.cu: whether a candidate runs its vector path on a layout
    (pointers: ints; strides: (s0, s1, s2, s3) elements per operand, the output last)."""
    l2, l3 = (1 << 30) // td2, (1 << 30) // td3
    if any(p % 16 for p in ptrs):
        return False
    for o, (s0, s1, s2, s3) in enumerate(strides):
        staged = o < len(strides) - 1 and (mask >> o) & 1
        unit, other = (s2, s3) if staged else (s3, s2)
        if unit != 1 or (other | s0 | s1) & 3 or not (-l2 < s2 < l2 and -l3 < s3 < l3):
            return False
    return True


def tiles_of(dims: tuple, td2: int, td3: int) -> int:
    d0, d1, d2, d3 = dims
    return -(-d3 // td3) * -(-d2 // td2) * d1 * d0


def occupancy(kernel, dev, threads: int, smem: int) -> int:
    """Resident blocks per SM of ``kernel`` (the driver's calculator; an estimate without it)."""
    try:
        with dev.activate():
            return max(1, int(kernel.core.occupancy.max_active_blocks_per_multiprocessor(threads, smem)))
    except Exception:
        a = kernel.attributes(dev)
        regs = max(1, a["num_regs"])
        by_regs = 65536 // (-(-regs * 32 // 256) * 256 * (threads // 32))
        by_smem = 233472 // (smem + a["shared_size_bytes"] + 1024)
        return max(1, min(32, 2048 // threads, by_regs, by_smem))


def argv_of(ptrs: tuple, dims: tuple, strides: list) -> tuple:
    argv = (*ptrs, *dims)
    for st in strides:
        argv += tuple(st)
    return argv


# -------------------------------------------------------------------------------- layouts
class Layouts:
    """The full-size layouts (as launch_strided hands them over: d2 = rows, d3 = columns of the
    output, strides in elements) with their device buffers and numpy references."""

    def __init__(self, ck, s, R: int, C: int):
        i4 = np.int32
        rng = np.random.default_rng()
        hx, hy = rng.standard_normal((R, C), dtype=np.float32), rng.standard_normal((R, C), dtype=np.float32)
        self.x, self.y = ck.to_device(hx, stream=s), ck.to_device(hy, stream=s)
        self.xt = ck.to_device(np.ascontiguousarray(hx.T), stream=s)  # xt.T holds hx, transposed in memory
        self.o, self.ot = ck.empty((R, C), np.float32, stream=s), ck.empty((C, R), np.float32, stream=s)
        add = hx + hy
        want = {"add": add, "add.T": np.ascontiguousarray(add.T), "copy": hx}
        x, y, xt, o, ot = self.x, self.y, self.xt, self.o, self.ot
        # label: (op, pointers, flags, strides (s0, s1, s2, s3) per operand, dims, reference, output)
        self.cases = {
            "add x transposed": ("add", (xt.ptr, y.ptr, o.ptr), (i4(1), i4(0)),
                                 [(0, 0, 1, R), (0, 0, C, 1), (0, 0, C, 1)], (1, 1, R, C), want["add"], o),
            "add out transposed": ("add", (x.ptr, y.ptr, ot.ptr), (i4(1), i4(1)),
                                   [(0, 0, 1, C), (0, 0, 1, C), (0, 0, R, 1)], (1, 1, C, R), want["add.T"], ot),
            "copy transposed": ("copy", (xt.ptr, o.ptr), (i4(1),), [(0, 0, 1, R), (0, 0, C, 1)], (1, 1, R, C),
                                want["copy"], o),
        }


def check_result(got: np.ndarray, want: np.ndarray, op: str) -> bool:
    if np.array_equal(got.view(np.uint32), want.view(np.uint32)):
        return True
    return op == "add" and bool(np.allclose(got, want, rtol=1e-6, atol=1e-6))


def odd_layouts(ck, s, aligned: bool) -> list:
    """Batched odd-sized layouts (B x R x C, R and C odd) in padded buffers: pitches that are
    multiples of 4 elements (``aligned``: the candidates' vector path, edge tiles and partial
    vectors) or the odd extents themselves (their fallback). A list of (buffers, label, op,
    pointers, flags, strides, dims, output buffer, expected output buffer)."""
    i4 = np.int32
    B, R, C = ODD
    pr, pc = (R + 4 - R % 4 + 4, C + 4 - C % 4 + 4) if aligned else (R, C)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((B, R, C), dtype=np.float32)
    y = rng.standard_normal((B, R, C), dtype=np.float32)

    def padded(shape, inner, fill_bits=None):
        buf = np.full(shape, np.uint32(POISON if fill_bits is None else fill_bits)).view(np.float32)
        buf[:, :inner.shape[1], :inner.shape[2]] = inner
        return buf

    xt_h = padded((B, C, pr), x.transpose(0, 2, 1), 0)  # x transposed, pitch pr
    x_h, y_h = padded((B, R, pc), x, 0), padded((B, R, pc), y, 0)
    xt, xd, yd = ck.to_device(xt_h, stream=s), ck.to_device(x_h, stream=s), ck.to_device(y_h, stream=s)
    o = ck.empty((B, R, pc), np.float32, stream=s)
    ot = ck.empty((B, C, pr), np.float32, stream=s)
    keep = (xt, xd, yd, o, ot)
    want_o = padded((B, R, pc), x + y)
    want_ot = padded((B, C, pr), (x + y).transpose(0, 2, 1))
    want_c = padded((B, R, pc), x)
    sx_t, s_rc, s_in = (0, C * pr, 1, pr), (0, R * pc, pc, 1), (0, R * pc, 1, pc)
    return [(keep, "add x transposed", "add", (xt.ptr, yd.ptr, o.ptr), (i4(1), i4(0)), [sx_t, s_rc, s_rc],
             (1, B, R, C), o, want_o),
            (keep, "add out transposed", "add", (xd.ptr, yd.ptr, ot.ptr), (i4(1), i4(1)),
             [s_in, s_in, (0, C * pr, pr, 1)], (1, B, C, R), ot, want_ot),
            (keep, "copy transposed", "copy", (xt.ptr, o.ptr), (i4(1),), [sx_t, s_rc], (1, B, R, C), o, want_c)]


# ------------------------------------------------------------------------------ measuring
class Bench:
    def __init__(self, cubins: list, rows: int, cols: int):
        import cudart_kit as ck
        from cudart_kit import ops

        self.ck, self.ops = ck, ops
        self.dev = ck.get_device(0)
        self.mods = [ck.Module.load(p) for p in cubins]
        self.where = {n: m for m in self.mods for n in m.kernel_names()}
        self.s = ck.Stream.create(self.dev)
        self.sms = self.dev.multiprocessor_count
        self.R, self.C = rows, cols
        self.nb = rows * cols * 4
        self.lay = Layouts(ck, self.s, rows, cols)
        self.ref = {}
        self._odd = {}  # aligned -> odd_layouts(...), made on first use

    def time(self, fn, nbytes):
        res = self.ck.benchmark(fn, stream=self.s, repeat=15, min_time_ms=20)
        return res.median_ms, res.gbps(nbytes)

    def refs(self):
        ck, lay = self.ck, self.lay
        self.ref["memcpy"] = self.time(lambda st: ck.copy(lay.o, lay.x, stream=st), 2 * self.nb)
        self.ref["add"] = self.time(lambda st: self.ops.add(lay.x, lay.y, lay.o, stream=st), 3 * self.nb)
        return self.ref

    def kernel(self, name):
        return self.where[name].kernel(name)

    def plan(self, name: str, ptrs, flags, strides, dims, grid=None):
        """(prepared launch, facts) of kernel ``name`` on a layout; grid None: the host's rule."""
        m = PLAIN.fullmatch(name) or VEC.fullmatch(name)
        vec = VEC.fullmatch(name) is not None
        tag = m.group(2) if vec else "t"
        td2, td3, by = (int(v) for v in m.groups()[-3:])
        kernel = self.kernel(name)
        nin = len(ptrs) - 1
        smem = 0
        if vec:
            mask = staged_mask(flags, nin)
            if vec_ok(list(ptrs), strides, mask, td2, td3):
                smem = vshared_bytes(tag, td2, td3, nin, bin(mask).count("1"))
            kernel.ensure_dynamic_shared(self.dev, smem)
        tiles = tiles_of(dims, td2, td3)
        if grid is None:
            grid = max(1, min(tiles, self.sms * 16))
        plan = self.ck.prepare(kernel, grid, (32, by), *argv_of((*ptrs, *flags), dims, strides),
                               device=self.dev, shared_mem_bytes=smem)
        return plan, dict(kernel=name, variant=tag, td2=td2, td3=td3, by=by, grid=grid, smem=smem, tiles=tiles)

    def run_case(self, name, label, grid_kind="host"):
        """Check and time kernel ``name`` on full-size layout ``label``: a row."""
        op, ptrs, flags, strides, dims, want, dst = self.lay.cases[label]
        plan, row = self.plan(name, ptrs, flags, strides, dims)
        k = self.kernel(name)
        a = k.attributes(self.dev)
        occ = occupancy(k, self.dev, 32 * row["by"], row["smem"])
        if grid_kind == "occ":
            g = max(1, min(row["tiles"], self.sms * occ))
            if g == row["grid"]:
                return None
            plan, row = self.plan(name, ptrs, flags, strides, dims, grid=g)
        self.ck.memset(dst, 0xFF, stream=self.s)  # poison: NaN everywhere
        plan.launch(self.s)
        ok = check_result(dst.to_numpy(stream=self.s), want, op)
        ms, gbps = self.time(lambda st: plan.launch(st), (3 if op == "add" else 2) * self.nb)
        base = self.ref["add"][0] if op == "add" else self.ref["memcpy"][0]
        row.update(case=label, grid_kind=grid_kind, regs=a["num_regs"], static_smem=a["shared_size_bytes"],
                   blocks_per_sm=occ, ms=ms, gbps=gbps, ratio=base / ms, correct=ok)
        del row["tiles"]
        return row

    def odd_checks(self, name):
        """The odd-size checks of kernel ``name``: one record per layout, pitch kind and grid."""
        out = []
        for aligned in (True, False):
            if aligned not in self._odd:
                self._odd[aligned] = odd_layouts(self.ck, self.s, aligned)
            for keep, label, op, ptrs, flags, strides, dims, dst, want in self._odd[aligned]:
                if (op == "add") != name.startswith("add_"):
                    continue
                for grid in (None, 37):
                    plan, row = self.plan(name, ptrs, flags, strides, dims, grid)
                    self.ck.memset(dst, 0xFF, stream=self.s)
                    plan.launch(self.s)
                    got = dst.to_numpy(stream=self.s)
                    ok = bool(np.array_equal(got.view(np.uint32), want.view(np.uint32)))
                    out.append(dict(kernel=name, case=label, pitch="aligned" if aligned else "odd", dims=list(dims),
                                    grid=row["grid"], smem=row["smem"], correct=ok))
        return out


# -------------------------------------------------------------------------- the child side
def child(spec_path: str) -> int:
    """Run the candidates of a spec file, one JSON line per record into its 'out' file."""
    spec = json.loads(Path(spec_path).read_text())
    b = Bench(spec["cubins"], spec["rows"], spec["cols"])
    b.ref = {k: tuple(v) for k, v in spec["ref"].items()}
    with open(spec["out"], "a") as f:
        def emit(kind, **kw):
            f.write(json.dumps(dict(kind=kind, **kw)) + "\n")
            f.flush()

        for name in spec["kernels"]:
            emit("start", kernel=name)
            for rec in b.odd_checks(name):
                emit("check", **rec)
            for label in b.lay.cases:
                if (b.lay.cases[label][0] == "add") != name.startswith("add_"):
                    continue
                for gk in ("host", "occ") if spec["occ"] else ("host",):
                    if spec["only_checks"] and gk == "occ":
                        continue
                    row = None if spec["only_checks"] else b.run_case(name, label, gk)
                    if row is not None:
                        emit("row", **row)
            emit("done", kernel=name)
    return 0


def run_children(cubins, names, args, ref, only_checks, idle_s=45.0):
    """The candidates in child processes; a child that dies or stalls loses its current kernel
    (recorded as a failure) and a new child takes the rest."""
    rows, checks, failed = [], [], []
    todo = list(names)
    tmp = Path(tempfile.mkdtemp())
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(ROOT)]))
    silent = 0  # children in a row that died before starting any kernel
    for attempt in range(len(names) + 2):
        if not todo:
            break
        out = tmp / f"child_{attempt}.jsonl"
        spec = tmp / "spec.json"
        spec.write_text(json.dumps(dict(cubins=[str(c) for c in cubins], rows=args.rows, cols=args.cols, ref=ref,
                                        kernels=todo, out=str(out), occ=not args.no_occ, only_checks=only_checks)))
        out.touch()
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", str(spec)], env=env)
        last, size = _time.monotonic(), 0
        while proc.poll() is None:
            _time.sleep(0.2)
            n = out.stat().st_size
            if n != size:
                size, last = n, _time.monotonic()
            elif _time.monotonic() - last > idle_s:
                proc.kill()
                proc.wait()
                break
        done, current, started = set(), None, False
        for line in out.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            kind = rec.pop("kind")
            if kind == "start":
                current, started = rec["kernel"], True
            elif kind == "done":
                done.add(rec["kernel"])
                current = None
            elif kind == "row":
                rows.append(rec)
            elif kind == "check":
                checks.append(rec)
        if current is not None:
            why = "stalled (killed)" if proc.returncode == -9 else f"child exited {proc.returncode}"
            failed.append(dict(kernel=current, why=why))
            print(f"  {current}: {why} (a fault or a hang); going on without it", file=sys.stderr)
            done.add(current)
        elif not started:
            silent += 1
            why = f"child exited {proc.returncode} before starting a kernel"
            if silent >= 2:  # not one kernel's fault: give up on the rest
                failed += [dict(kernel=n, why=why) for n in todo]
                print(f"  candidates: {why}, twice; skipping them all", file=sys.stderr)
                break
            continue
        if started:
            silent = 0
        todo = [n for n in todo if n not in done]
    gone = {f["kernel"] for f in failed}
    failed += [dict(kernel=n, why="not run: too many children failed") for n in todo if n not in gone]
    return rows, checks, failed


# ---------------------------------------------------------------------------------- main
def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        return child(sys.argv[2])
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=8192)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--json")
    ap.add_argument("--only", help="regex: measure only the kernels whose name it matches (re.search)")
    ap.add_argument("--no-occ", action="store_true", help="candidates with the host's grid only")
    ap.add_argument("--checks-only", action="store_true", help="the candidates' odd-size checks, no timing")
    ap.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1), help="parallel nvcc runs")
    args = ap.parse_args()
    import cudart_kit as ck

    t0 = _time.monotonic()
    dev = ck.get_device(0)
    major, minor = dev.compute_capability
    cubins = build(f"sm_{major}{minor}", args.jobs)
    print(f"built {len(cubins)} cubin(s) in {_time.monotonic() - t0:.0f} s", file=sys.stderr)
    b = Bench(cubins, args.rows, args.cols)
    names = sorted(b.where)
    keep = (lambda n: re.search(args.only, n) is not None) if args.only else (lambda n: True)
    plain = sorted((n for n in names if PLAIN.fullmatch(n) and keep(n)),
                   key=lambda n: tuple(int(v) for v in PLAIN.fullmatch(n).groups()[1:]))
    cands = sorted(n for n in names if VEC.fullmatch(n) and keep(n))
    shipped = "add_f32_t_32_32_4", "copy_b32_t_32_32_4"
    ref = b.refs()
    rows = []
    if not args.checks_only:
        for name in plain:
            for label, case in b.lay.cases.items():
                if (case[0] == "add") == name.startswith("add_"):
                    rows.append(b.run_case(name, label))
    checks = []
    for name in shipped:  # a check of the checks: the shipped code must pass them
        if name in b.where:
            checks += b.odd_checks(name)
    crow, cchecks, failed = run_children(cubins, cands, args, {k: list(v) for k, v in ref.items()}, args.checks_only)
    rows += crow
    checks += cchecks

    R, C = args.rows, args.cols
    print(f"transposed twins on {dev.name}: {R} x {C} float32; ratio to contiguous add (add rows) / D2D memcpy "
          f"(copy); ref add {ref['add'][0]:.4f} ms, memcpy {ref['memcpy'][0]:.4f} ms")
    print(f"{'case':22s} {'TD2':>4s} {'TD3':>4s} {'BY':>3s} {'ms':>8s} {'GB/s':>8s} {'ratio':>6s}  ok    "
          f"{'var':>3s} {'grid':>10s} {'regs':>4s} {'smem':>6s} {'blk/SM':>6s}")
    for r in sorted(rows, key=lambda r: (r["case"], -r["ratio"])):
        print(f"{r['case']:22s} {r['td2']:4d} {r['td3']:4d} {r['by']:3d} {r['ms']:8.4f} {r['gbps']:8.1f} "
              f"{r['ratio']:6.3f}  {str(r['correct']):5s} {r['variant']:>3s} {r['grid_kind']:>4s}{r['grid']:6d} "
              f"{r['regs']:4d} {r['smem'] + r['static_smem']:6d} {r['blocks_per_sm']:6d}")
    bad = [c for c in checks if not c["correct"]]
    print(f"odd-size checks ({ODD[0]} x {ODD[1]} x {ODD[2]}, aligned and odd pitches, 2 grids): "
          f"{len(checks) - len(bad)} of {len(checks)} correct")
    for c in bad:
        print(f"  WRONG: {c['kernel']} {c['case']} pitch {c['pitch']} grid {c['grid']}")
    for f in failed:
        print(f"  FAILED: {f['kernel']}: {f['why']}")
    for label in b_cases_order(rows):
        best = max((r for r in rows if r["case"] == label and r["correct"]), key=lambda r: r["ratio"], default=None)
        if best:
            print(f"best {label:22s}: {best['kernel']} grid {best['grid_kind']} ({best['grid']}) {best['ratio']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": dev.name, "ref_ms": {k: v[0] for k, v in ref.items()},
                                               "rows": rows, "checks": checks, "failed": failed}, indent=1))
    ok = all(r["correct"] for r in rows) and not bad and not failed
    return 0 if ok else 1


def b_cases_order(rows: list) -> list:
    seen = []
    for r in rows:
        if r["case"] not in seen:
            seen.append(r["case"])
    return sorted(seen)


if __name__ == "__main__":
    raise SystemExit(main())
