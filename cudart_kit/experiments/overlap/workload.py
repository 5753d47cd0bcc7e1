"""The overlap experiment on the device: the tunable kernel ``fma_loop_f32``, the gate, and the
workload (buffers, streams, prepared launches) that queues one run's H2D copies, kernels and
D2H copies on its streams, times each with events and checks the output against numpy.

The kit is called through its public API only (``cudart_kit.copy``, ``launch``, ``prepare``,
``Stream``...), looked up at the call, so importing this module touches no driver; a chunk is
a zero-copy view of the whole buffer (``Array`` indexing). With NVTX
ranges on (:mod:`cudart_kit.profiling`) each stage it queues runs inside a range named in
:data:`RANGES` (``overlap:h2d``, ``overlap:kernel``, ``overlap:d2h``, ...); off, a run pays
one test of a local flag per queued operation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable

import numpy as np

import cudart_kit as ck

from ... import profiling as _prof
from ...errors import DTypeError, ShapeError
from ...trace import Timeline
from .model import FMA_A, FMA_B, FMA_DB, PHASES, chunk_bounds, fma_loop_reference, issue_order

__all__ = ["fma_loop_f32", "gate_wait", "overlap_kernel", "Workload", "Run", "phase_ms", "RANGES",
           "STAGE_RANGES", "GATE_TIMEOUT_S", "BLOCK", "MAX_GRID", "KERNEL_MODULE"]

KERNEL_MODULE = "overlap"  # the kit artifact built from kernels/overlap.cu
BLOCK = 256
MAX_GRID = 1 << 20  # the kernel strides over the rest; a bigger grid buys nothing
GATE_TIMEOUT_S = 1.0

# NVTX range of each stage the experiment queues (docs/overlap.md lists them). Static names:
# profiling caches one attribute object per name.
STAGE_RANGES = {"H2D": "overlap:h2d", "kernel": "overlap:kernel", "D2H": "overlap:d2h"}
RANGES = {
    "setup": "overlap:setup",          # a workload's buffers: allocated, input filled, synchronized
    "run": "overlap:run",              # one run of a schedule: queued, waited for, its timeline resolved
    "upload": "overlap:upload",        # the untimed upload of the input (workloads without H2D)
    "poison": "overlap:poison",        # NaN poison of the outputs before a verified run
    "gate": "overlap:gate",            # the gate kernel, queued before the schedule
    **{phase.lower(): name for phase, name in STAGE_RANGES.items()},  # one per chunk and stage
    "wait": "overlap:wait",            # joining the streams and waiting for the run's end event
    "verify": "overlap:verify",        # the comparison of the output with numpy
    "serial": "overlap:serial",        # every run of one serial workload (experiment)
    "configuration": "overlap:configuration",  # every run of one overlapped configuration
    "calibrate": "overlap:calibrate",  # finding the balanced iters
}


def overlap_kernel(name: str):
    """A kernel of the kit's ``overlap`` artifact: ``fma_loop_f32`` or ``gate_wait`` (loaded
    once; a missing or stale artifact is rebuilt or refused, see load_kit_module)."""
    return ck.load_kit_module(KERNEL_MODULE).kernel(name)


def _grid_for(n: int) -> int:
    return min(ck.blocks_for(n, BLOCK), MAX_GRID)


def fma_loop_f32(x, out, iters: int, *, stream, a: float = FMA_A, b: float = FMA_B, db: float = FMA_DB,
                 timed: bool = False):
    """``out[i]`` = ``iters`` dependent steps ``y = fmaf(y, a, c); c += db`` from ``y = x[i]``,
    ``c = b`` (float32; one launch on ``stream``; asynchronous, faults surface at the next
    sync). The cost per byte is 2 * ``iters`` FP32 operations per 8 bytes moved; numpy
    reproduces the result bit for bit (:func:`fma_loop_reference`) when ``a`` is a power of two.
    Returns the launch's TimingRecord (events when ``timed``).

    Raises DTypeError / ShapeError before anything is queued."""
    s = ck.as_stream(stream)
    xa, oa = ck.asarray(x, stream=s), ck.asarray(out, stream=s)
    for what, arr in (("x", xa), ("out", oa)):
        if arr.dtype != np.float32:
            raise DTypeError(f"fma_loop_f32: {what} must be float32, got {arr.dtype}")
        if not arr.c_contiguous:
            raise ShapeError(f"fma_loop_f32: {what} must be contiguous")
    if xa.size != oa.size:
        raise ShapeError(f"fma_loop_f32: x has {xa.size} elements but out has {oa.size}")
    iters = int(iters)
    if not 0 <= iters < 2**31:
        raise ValueError(f"iters must be in 0 .. 2^31-1, got {iters}")
    rec = ck.launch(overlap_kernel("fma_loop_f32"), _grid_for(xa.size), BLOCK, xa, oa, np.uint64(xa.size),
                    np.int32(iters), np.float32(a), np.float32(b), np.float32(db), stream=s, timed=timed)
    rec.meta["iters"] = iters
    return rec


def gate_wait(flags, *, stream, timeout_s: float = GATE_TIMEOUT_S):
    """Queue the gate on ``stream``: one thread that spins until the host writes a non-zero
    ``flags[0]``, or gives up after ``timeout_s`` and sets ``flags[1] = 1``. ``flags``: two
    uint32 in pinned memory, zeroed by the caller. Work behind it on ``stream`` (and on streams
    that wait for it) holds until then. Asynchronous; returns the launch's TimingRecord."""
    return ck.launch(overlap_kernel("gate_wait"), 1, 1, flags, np.uint64(int(timeout_s * 1e9)), stream=stream)


@dataclass
class Run:
    """One timed run of a schedule: its total (origin to end event), the host's queuing time,
    whether the gate gave up, and the resolved timeline of every copy and launch."""

    total_ms: float
    issue_ms: float
    gate_timed_out: bool
    timeline: Timeline


def phase_ms(tl: Timeline, phase: str) -> float:
    """Summed duration of a timeline's slices of one stage ("H2D", "kernel", "D2H"), in ms."""
    return sum(s.dur_us for s in tl.slices if s.category == phase) / 1e3


class Workload:
    """Buffers, streams and prepared launches shared by every configuration of one experiment
    run on ``device``: ``n`` float32 elements each way, host memory of ``memory_kinds``, the
    input drawn from ``seed``. Allocates and synchronizes its setup stream; :meth:`close` frees
    everything (also when construction fails)."""

    def __init__(self, device, n: int, memory_kinds: Iterable[str], seed: int | None):
        self.device = ck.get_device(device)
        self.n = n
        self._arrays: list = []
        self._streams: list = []
        self.setup = ck.Stream.create(self.device)
        try:
            with _prof.range(RANGES["setup"]):
                self._allocate(n, memory_kinds, seed)
        except BaseException:
            self.close()
            raise
        self._spans: dict[int, list] = {}
        self._prepared: dict[tuple, list] = {}
        self._refs: dict[tuple, tuple] = {}
        self._uploaded = False

    def _allocate(self, n: int, memory_kinds: Iterable[str], seed: int | None) -> None:
        rng = np.random.default_rng(seed)
        pin_in = self._keep(ck.empty(n, np.float32, stream=self.setup, kind="pinned"))
        pin_out = self._keep(ck.empty(n, np.float32, stream=self.setup, kind="pinned"))
        self.x = pin_in.numpy()
        rng.standard_normal(out=self.x, dtype=np.float32)
        self.host = {"pinned": (self.x, pin_out.numpy())}
        if "pageable" in memory_kinds:
            self.host["pageable"] = (self.x.copy(), np.empty(n, np.float32))
        self.d_in = self._keep(ck.empty(n, np.float32, stream=self.setup))
        self.d_out = self._keep(ck.empty(n, np.float32, stream=self.setup))
        self.flags_arr = self._keep(ck.empty(2, np.uint32, stream=self.setup, kind="pinned"))
        self.flags = self.flags_arr.numpy()
        self.flags[:] = 0
        self.sample = np.unique(np.concatenate([rng.integers(0, n, size=min(n, 4096)), [0, n - 1]]))
        self.setup.sync()  # buffers exist before any worker stream touches them

    def upload(self) -> None:
        """Put the input on the device once (untimed), for workloads without an H2D stage.
        Every H2D stage writes the same values, so it stays valid for the whole run."""
        if not self._uploaded:
            with _prof.range(RANGES["upload"]):
                ck.copy(self.d_in, self.x, stream=self.setup)
                self.setup.sync()  # worker streams read it without any other ordering
            self._uploaded = True

    def _keep(self, arr):
        self._arrays.append(arr)
        return arr

    def streams(self, count: int) -> list:
        """The first ``count`` worker streams (created on first use, kept for every run)."""
        while len(self._streams) < count:
            s = ck.Stream.create(self.device)
            self._streams.append(s)
            # the buffers are used on every worker stream: their frees must wait for those
            for a in self._arrays:
                a.record_stream(s)
        return self._streams[:count]

    def spans(self, chunks: int) -> list:
        """(lo, hi, device input view, device output view) of every chunk: zero-copy views of
        the whole buffers, sharing their lifetime and their cross-stream free ordering."""
        sp = self._spans.get(chunks)
        if sp is None:
            sp = self._spans[chunks] = [(lo, hi, self.d_in[lo:hi], self.d_out[lo:hi])
                                        for lo, hi in chunk_bounds(self.n, chunks)]
        return sp

    def prepared(self, chunks: int, iters: int) -> list:
        """One prepared ``fma_loop_f32`` launch per chunk."""
        key = (chunks, iters)
        p = self._prepared.get(key)
        if p is None:
            k = overlap_kernel("fma_loop_f32")
            p = self._prepared[key] = [
                ck.prepare(k, _grid_for(hi - lo), BLOCK, din, dout, np.uint64(hi - lo), np.int32(iters),
                           np.float32(FMA_A), np.float32(FMA_B), np.float32(FMA_DB), device=self.device)
                for lo, hi, din, dout in self.spans(chunks)
            ]
        return p

    # -- one timed run ---------------------------------------------------------------------------
    def run(self, *, streams: int, chunks: int, iters: int, memory: str, order: str, gate: bool,
            poison: bool, h2d: bool = True) -> Run:
        """Queue the whole schedule, let it run, wait for it (this synchronizes), resolve its
        timeline. With ``gate``, the GPU holds every stream until everything is queued, so the
        measurement is of the GPU's overlap, not of Python's issue rate."""
        with _prof.range(RANGES["run"]):
            return self._run(streams=streams, chunks=chunks, iters=iters, memory=memory, order=order, gate=gate,
                             poison=poison, h2d=h2d)

    def _run(self, *, streams: int, chunks: int, iters: int, memory: str, order: str, gate: bool,
             poison: bool, h2d: bool) -> Run:
        nvtx = _prof.ENABLED  # read once: a run's pushes and pops stay paired
        ss = self.streams(streams)
        s0 = ss[0]
        spans = self.spans(chunks)
        kernels = self.prepared(chunks, iters)
        h_in, h_out = self.host[memory]
        phases = PHASES if h2d else PHASES[1:]
        if not h2d:
            self.upload()
        if poison:  # every element must be written by this run: start from NaN on both sides
            with _prof.range(RANGES["poison"]):
                h_out.view(np.uint32).fill(0xFFFFFFFF)
                ck.memset(self.d_out, 0xFF, stream=s0)
        if gate:
            self.flags[:] = 0
            with _prof.range(RANGES["gate"]):
                gate_wait(self.flags_arr, stream=s0)
        tl = Timeline(f"S={streams} C={chunks} iters={iters} {memory} {order}")
        for i, s in enumerate(ss):
            tl.name_stream(s, f"stream {i}")
        origin = tl.mark_origin(s0, others=ss[1:])
        t0 = time.perf_counter()
        try:
            for phase, c in issue_order(chunks, streams, order, phases):
                s = ss[c % streams]
                lo, hi, din, dout = spans[c]
                if nvtx:
                    _prof.push(STAGE_RANGES[phase])
                try:
                    if phase == "H2D":
                        rec = ck.copy(din, h_in[lo:hi], stream=s, timed=True)
                    elif phase == "kernel":
                        rec = kernels[c].launch(s, timed=True)
                    else:
                        rec = ck.copy(h_out[lo:hi], dout, stream=s, timed=True)
                finally:
                    if nvtx:
                        _prof.pop()
                tl.add(rec, name=f"{phase} c{c}", category=phase,
                       args={"chunk": c, "elements": hi - lo, "bytes": 4 * (hi - lo), "iters": iters}
                       if phase == "kernel" else {"chunk": c, "bytes": 4 * (hi - lo)})
        finally:
            issue_ms = (time.perf_counter() - t0) * 1e3
            if gate:
                self.flags[0] = 1  # open even when queuing failed, or the GPU spins until the timeout
        with _prof.range(RANGES["wait"]):
            for s in ss[1:]:
                s0.wait(s)
            end = ck.Event.create(self.device, timing=True).record(s0)
            end.sync()
        total = origin.elapsed_ms(end)
        timed_out = bool(gate and self.flags[1])
        tl.resolve()
        return Run(total, issue_ms, timed_out, tl)

    # -- verification -------------------------------------------------------------------------------
    def verify(self, memory: str, iters: int, chunks: int) -> dict:
        """Compare the last run's output with numpy (after the run synchronized). Checks that no
        element still holds the NaN poison, then compares bit for bit: every element when the
        numpy loop is cheap, else a fixed random sample plus every chunk's first and last element."""
        with _prof.range(RANGES["verify"]):
            return self._verify(memory, iters, chunks)

    def _verify(self, memory: str, iters: int, chunks: int) -> dict:
        h_in, h_out = self.host[memory]
        poisoned = int(np.count_nonzero(np.isnan(h_out)))
        full = self.n * max(1, iters) <= (1 << 26)
        if full:
            idx = None
            ref = fma_loop_reference(h_in, iters)
            got = h_out
        else:
            key = (iters, chunks)
            cached = self._refs.get(key)
            if cached is None:
                edges = np.array([e for lo, hi in chunk_bounds(self.n, chunks) for e in (lo, hi - 1)])
                idx = np.unique(np.concatenate([self.sample, edges]))
                cached = self._refs[key] = (idx, fma_loop_reference(self.x[idx], iters))
            idx, ref = cached
            got = h_out[idx]
        bad = np.flatnonzero(got.view(np.uint32) != ref.view(np.uint32))
        out = {"checked": int(got.size), "full": full, "mismatches": int(bad.size), "unwritten": poisoned}
        if bad.size:
            i = int(bad[0]) if idx is None else int(idx[bad[0]])
            out["first_bad"] = {"index": i, "got": float(h_out[i]),
                                "expected": float(ref[bad[0]])}
        out["ok"] = bad.size == 0 and poisoned == 0
        return out

    def close(self) -> None:
        """Wait for every stream, then free the buffers and destroy the streams (idempotent)."""
        for s in [*self._streams, getattr(self, "setup", None)]:
            if s is not None and not s.is_closed:
                try:
                    s.sync()
                except Exception:  # a faulted context: still release what can be released
                    pass
        self._spans = {}
        self._prepared = {}
        # numpy views of pinned memory must not outlive it: drop them before freeing
        self.x = self.host = self.flags = None
        for a in self._arrays:
            a.close()
        self._arrays = []
        for s in self._streams:
            s.close()
        self._streams = []
        if getattr(self, "setup", None) is not None:
            self.setup.close()
