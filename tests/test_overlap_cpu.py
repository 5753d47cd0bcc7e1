"""CPU tests of the stream-overlap experiment and the timeline recorder: the bound arithmetic
(checked against a small pipeline simulation), chunking and issue order, the numpy reference of
the kernel, Chrome-trace structure, JSON round trips, table formatting, plots from recorded data
(when matplotlib is importable) and the ``overlap`` subcommand's parser and no-driver path."""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cudart_kit import cli
from cudart_kit.errors import NotReadyError, UntimedError
from cudart_kit.event import TimingRecord
from cudart_kit.experiments import overlap as ov
from cudart_kit.trace import (
    Slice, Timeline, chrome_trace, load_chrome_trace, validate_chrome_trace,
)

REPO = Path(__file__).resolve().parent.parent

HAVE_MPL = importlib.util.find_spec("matplotlib") is not None
needs_mpl = pytest.mark.skipif(not HAVE_MPL, reason="matplotlib is not installed (optional extra 'plot')")


# --- a reference scheduler: three engines, S in-order streams, fair choice -----------------------

def simulate(h2d, kernel, d2h, chunks, streams, order="depth", phases=ov.PHASES):
    """Makespan and slices of the workload when every engine (H2D, kernel, D2H) runs one
    operation at a time, each stream runs its operations in order, and among the operations
    ready first the one whose stream waited longest goes first."""
    dur = {"H2D": h2d / chunks, "kernel": kernel / chunks, "D2H": d2h / chunks}
    queues = [[] for _ in range(streams)]
    for phase, c in ov.issue_order(chunks, streams, order, phases):
        queues[ov.stream_of_chunk(c, streams)].append((phase, c))
    stream_free = [0.0] * streams
    engine_free = {p: 0.0 for p in ov.PHASES}
    slices = []
    while any(queues):
        best = None
        for s, q in enumerate(queues):
            if q:
                phase, c = q[0]
                key = (max(stream_free[s], engine_free[phase]), stream_free[s], c)
                if best is None or key < best[0]:
                    best = (key, s)
        (start, _, _), s = best
        phase, c = queues[s].pop(0)
        end = start + dur[phase]
        stream_free[s] = engine_free[phase] = end
        slices.append((f"stream {s}", f"{phase} c{c}", start * 1e3, dur[phase] * 1e3, phase, {"chunk": c}))
    return max(stream_free), slices


STAGES = [(1, 1, 1), (1, 2, 1), (2, 1, 1), (0, 0.22, 1.24), (1, 0.1, 1), (3, 1, 2), (1, 3, 0.5), (0.2, 1, 0.1)]


# --- bound arithmetic -------------------------------------------------------------------------------

def test_serial_and_pipeline_bounds():
    assert ov.bound_serial_ms(1.0, 2.0, 3.0) == 6.0
    # busiest stage whole + one chunk of each of the others
    assert ov.bound_pipeline_ms(4.0, 4.0, 4.0, 4) == pytest.approx(4.0 + 8.0 / 4)
    assert ov.bound_pipeline_ms(2.0, 6.0, 1.0, 3) == pytest.approx(6.0 + 3.0 / 3)
    # one chunk: no overlap possible
    assert ov.bound_pipeline_ms(1.0, 2.0, 3.0, 1) == pytest.approx(6.0)


def test_streams_bound_and_ideal():
    # one stream is the serial time, whatever the chunking
    for c in (1, 4, 32):
        assert ov.bound_ideal_ms(1.0, 1.0, 1.0, chunks=c, streams=1) == pytest.approx(3.0)
    # two streams, balanced, 4 chunks: 2 chunks each in order + one chunk late start
    assert ov.bound_streams_ms(1.0, 1.0, 1.0, 4, 2) == pytest.approx(2 * 0.75 + 0.25)
    # plenty of streams: the pipeline bound decides
    assert ov.bound_ideal_ms(5.0, 5.0, 5.0, chunks=32, streams=4) == pytest.approx(5.0 + 10.0 / 32)
    assert ov.bound_max_speedup(5.0, 5.0, 5.0, chunks=32, streams=4) == pytest.approx(15.0 / (5.0 + 10.0 / 32))


def test_max_speedup_approaches_three_only_when_balanced():
    assert ov.bound_max_speedup(1, 1, 1, chunks=10_000, streams=16) == pytest.approx(3.0, rel=1e-3)
    assert ov.bound_max_speedup(1, 1, 1, chunks=32, streams=16) < 3.0
    assert ov.bound_max_speedup(1, 0.01, 1, chunks=10_000, streams=16) == pytest.approx(2.01, rel=1e-3)
    assert ov.bound_max_speedup(0.01, 1, 0.01, chunks=10_000, streams=16) == pytest.approx(1.02, rel=1e-3)


def test_simplestreams_numbers_explain_its_small_gain():
    ss = ov.SIMPLESTREAMS
    ideal = ov.bound_ideal_ms(ss["h2d_ms"], ss["kernel_ms"], ss["d2h_ms"], chunks=4, streams=4)
    assert ideal == pytest.approx(1.24 + 0.22 / 4)
    # the sample measured 1.27 ms: already near what overlap can give for a kernel this small
    assert ideal == pytest.approx(ss["streamed_ms"], rel=0.03)
    assert ov.kernel_share(0.0, 0.22, 1.24) == pytest.approx(0.22 / 1.46)


@pytest.mark.parametrize("stages", STAGES)
def test_ideal_bound_is_what_a_fair_pipeline_reaches(stages):
    h, k, d = stages
    for chunks in (1, 2, 3, 4, 5, 7, 16, 32):
        for streams in (1, 2, 3, 4, 8, 16):
            makespan, _ = simulate(h, k, d, chunks, streams)
            bound = ov.bound_ideal_ms(h, k, d, chunks=chunks, streams=streams)
            assert makespan >= bound - 1e-9, (chunks, streams)  # a lower bound ...
            assert makespan == pytest.approx(bound, abs=1e-9), (chunks, streams)  # ... that is reached


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "1"])
def test_bounds_refuse_bad_times(bad):
    with pytest.raises(ValueError, match="h2d_ms"):
        ov.bound_serial_ms(bad, 1.0, 1.0)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_bounds_refuse_bad_counts(bad):
    with pytest.raises(ValueError, match="chunks"):
        ov.bound_pipeline_ms(1, 1, 1, bad)
    with pytest.raises(ValueError, match="streams"):
        ov.bound_streams_ms(1, 1, 1, 4, bad)


def test_speedup_efficiency_share():
    assert ov.speedup(15.0, 5.0) == 3.0
    assert ov.efficiency(4.5, 5.0) == pytest.approx(0.9)
    assert ov.kernel_share(1, 1, 1) == pytest.approx(1 / 3)
    assert ov.kernel_share(0, 0, 0) == 0.0
    with pytest.raises(ValueError):
        ov.speedup(1.0, 0.0)
    with pytest.raises(ValueError):
        ov.efficiency(1.0, -1.0)


def test_balanced_iters_is_linear_through_two_points():
    # kernel: 0.2 ms of memory traffic + 0.01 ms per iteration; the copy takes 5 ms
    assert ov.balanced_iters(5.0, 0.2, 0.2 + 0.01 * 256, 256) == 480
    assert ov.balanced_iters(0.1, 0.2, 1.0, 256) == 0  # even a plain copy is slower: no iterations
    with pytest.raises(ValueError, match="did not get slower"):
        ov.balanced_iters(5.0, 0.3, 0.3, 256)
    with pytest.raises(ValueError):
        ov.balanced_iters(5.0, 0.3, 0.5, 0)


# --- chunking and issue order ---------------------------------------------------------------------

@pytest.mark.parametrize("n,c", [(10, 3), (32, 32), (1000003, 32), (7, 1)])
def test_chunk_bounds_cover_exactly(n, c):
    b = ov.chunk_bounds(n, c)
    assert len(b) == c and b[0][0] == 0 and b[-1][1] == n
    assert all(b[i][1] == b[i + 1][0] for i in range(c - 1))
    sizes = [hi - lo for lo, hi in b]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_chunk_bounds_refuse_too_many_chunks():
    with pytest.raises(ValueError, match="cannot split"):
        ov.chunk_bounds(3, 4)


@pytest.mark.parametrize("chunks,streams", [(32, 4), (10, 4), (3, 8), (16, 1), (8, 3)])
def test_issue_orders_give_each_stream_the_same_work(chunks, streams):
    depth = ov.issue_order(chunks, streams, "depth")
    breadth = ov.issue_order(chunks, streams, "breadth")
    everything = {(p, c) for c in range(chunks) for p in ov.PHASES}
    assert set(depth) == set(breadth) == everything
    assert len(depth) == len(breadth) == 3 * chunks

    def per_stream(seq):
        out = {}
        for p, c in seq:
            out.setdefault(ov.stream_of_chunk(c, streams), []).append((p, c))
        return out

    assert per_stream(depth) == per_stream(breadth)
    for seq in (depth, breadth):  # a chunk's stages are queued in order
        pos = {pc: i for i, pc in enumerate(seq)}
        for c in range(chunks):
            assert pos[("H2D", c)] < pos[("kernel", c)] < pos[("D2H", c)]


def test_issue_order_without_h2d():
    seq = ov.issue_order(4, 2, "breadth", ov.PHASES[1:])
    assert seq[:4] == [("kernel", 0), ("kernel", 1), ("D2H", 0), ("D2H", 1)]
    assert all(p != "H2D" for p, _ in seq) and len(seq) == 8


@pytest.mark.parametrize("chunks,streams", [(4, 4), (16, 4), (8, 3)])
def test_bound_without_h2d_is_reached_too(chunks, streams):
    makespan, _ = simulate(0.0, 0.22, 1.24, chunks, streams, phases=ov.PHASES[1:])
    assert makespan == pytest.approx(ov.bound_ideal_ms(0.0, 0.22, 1.24, chunks=chunks, streams=streams))


def test_breadth_order_goes_in_waves():
    assert ov.issue_order(4, 2, "breadth") == [
        ("H2D", 0), ("H2D", 1), ("kernel", 0), ("kernel", 1), ("D2H", 0), ("D2H", 1),
        ("H2D", 2), ("H2D", 3), ("kernel", 2), ("kernel", 3), ("D2H", 2), ("D2H", 3)]
    assert ov.issue_order(2, 1, "breadth") == ov.issue_order(2, 1, "depth")
    with pytest.raises(ValueError, match="order"):
        ov.issue_order(4, 2, "sideways")


def test_parse_int_list():
    assert ov.parse_int_list("1, 2,4,2") == [1, 2, 4]
    with pytest.raises(ValueError, match="streams"):
        ov.parse_int_list("0,1", minimum=1, what="streams")
    with pytest.raises(ValueError):
        ov.parse_int_list("a,b")
    with pytest.raises(ValueError):
        ov.parse_int_list(",")


# --- the kernel's numpy reference ----------------------------------------------------------------------

def _emulated_fma(x, iters, a=ov.FMA_A, b=ov.FMA_B, db=ov.FMA_DB):
    """fmaf(y, a, c) computed as one rounding of the exact float64 value (exact because the
    float32 product y * a and the sum of two float32 values fit in a double without error
    beyond what a single final rounding to float32 removes, for a = -1)."""
    y = np.array(x, np.float32)
    c = np.float32(b)
    for _ in range(iters):
        y = (y.astype(np.float64) * a + np.float64(c)).astype(np.float32)
        c = np.float32(c + np.float32(db))
    return y


def test_reference_matches_a_single_rounding_fma():
    x = np.random.default_rng(1).standard_normal(4097).astype(np.float32)
    for iters in (0, 1, 2, 3, 17, 300):
        got = ov.fma_loop_reference(x, iters)
        assert got.dtype == np.float32
        assert np.array_equal(got.view(np.uint32), _emulated_fma(x, iters).view(np.uint32)), iters


def test_reference_depends_on_input_and_every_step():
    x = np.random.default_rng(2).standard_normal(1000).astype(np.float32)
    y0 = ov.fma_loop_reference(x, 0)
    assert np.array_equal(y0, x) and y0 is not x
    a, b = ov.fma_loop_reference(x, 1000), ov.fma_loop_reference(x, 1002)
    assert not np.array_equal(a, b)  # two more steps move every value by db
    assert np.allclose(b - a, ov.FMA_DB, atol=1e-5)
    assert len(np.unique(a)) > 990  # no collapse onto a fixed point
    assert np.all(np.isfinite(ov.fma_loop_reference(x, 5001)))


# --- timelines from recorded data --------------------------------------------------------------------

def _sample_timeline():
    _, slices = simulate(1.0, 1.0, 1.0, 8, 3)
    return Timeline.from_slices(slices, name="sim")


def test_timeline_from_slices_and_tracks():
    tl = _sample_timeline()
    assert tl.tracks == ["stream 0", "stream 1", "stream 2"]
    assert len(tl) == 24
    per = tl.by_track()
    assert sum(len(v) for v in per.values()) == 24
    for items in per.values():
        for a, b in zip(items, items[1:]):
            assert b.start_us >= a.end_us - 1e-9
    lo, hi = tl.span_us()
    assert lo == 0.0 and hi == pytest.approx(1e3 * ov.bound_ideal_ms(1, 1, 1, chunks=8, streams=3))


def test_from_slices_accepts_dicts_tuples_and_slices():
    tl = Timeline.from_slices([
        {"track": "a", "name": "x", "start_us": 1, "dur_us": 2},
        ("b", "y", 0.5, 1.0, "H2D", {"bytes": 4}),
        Slice("a", "z", 4.0, 1.0, "kernel"),
    ])
    assert [s.name for s in tl.slices] == ["x", "y", "z"]
    assert tl.slices[1].category == "H2D" and tl.slices[1].args == {"bytes": 4}
    with pytest.raises(ValueError, match="lacks"):
        Timeline.from_slices([{"track": "a", "name": "x", "start_us": 1}])
    with pytest.raises(ValueError, match="expected"):
        Timeline.from_slices([("a", "x")])
    with pytest.raises(ValueError, match="negative"):
        Timeline().add_slice("a", "x", 0, -1)


def test_chrome_trace_structure():
    tl = _sample_timeline()
    doc = tl.to_chrome_trace()
    assert validate_chrome_trace(doc) == []
    json.loads(json.dumps(doc))
    ev = doc["traceEvents"]
    xs = [e for e in ev if e["ph"] == "X"]
    ms = [e for e in ev if e["ph"] == "M"]
    assert len(xs) == 24
    for e in xs:
        assert set(e) >= {"name", "ph", "ts", "dur", "pid", "tid", "cat", "args"}
        assert type(e["pid"]) is int and type(e["tid"]) is int
        assert isinstance(e["ts"], (int, float)) and e["ts"] >= 0
        assert isinstance(e["dur"], (int, float)) and e["dur"] >= 0
        assert e["cat"] in ov.PHASES
    # one thread per track, each named by an M event
    thread_names = {e["tid"]: e["args"]["name"] for e in ms if e["name"] == "thread_name"}
    assert sorted(thread_names.values()) == ["stream 0", "stream 1", "stream 2"]
    assert {e["tid"] for e in xs} == set(thread_names)
    assert any(e["name"] == "process_name" and e["args"]["name"] == "sim" for e in ms)
    # sorted by time within each track
    for tid in thread_names:
        ts = [e["ts"] for e in xs if e["tid"] == tid]
        assert ts == sorted(ts)


def test_chrome_trace_round_trip_and_files(tmp_path):
    tl = _sample_timeline()
    back = Timeline.from_chrome_trace(tl.to_chrome_trace())
    assert back.tracks == tl.tracks
    assert [(s.track, s.name, s.category) for s in back.slices] == [(s.track, s.name, s.category) for s in tl.slices]
    assert [s.start_us for s in back.slices] == pytest.approx([s.start_us for s in tl.slices], abs=1e-3)
    for name in ("t.json", "t.json.gz"):
        path = tl.save(tmp_path / name)
        doc = load_chrome_trace(path)
        assert validate_chrome_trace(doc) == []
        if name.endswith(".gz"):
            assert gzip.decompress(path.read_bytes())
    assert Timeline.from_dict(json.loads(json.dumps(tl.to_dict()))).slices == tl.slices


def test_chrome_trace_shifts_negative_times_and_merges():
    tl = Timeline.from_slices([("a", "early", -5.0, 2.0), ("a", "late", 1.0, 1.0)])
    doc = tl.to_chrome_trace()
    assert validate_chrome_trace(doc) == []
    assert [e["ts"] for e in doc["traceEvents"] if e["ph"] == "X"] == [0.0, 6.0]
    merged = chrome_trace({"first": tl, "second": _sample_timeline()})
    assert validate_chrome_trace(merged) == []
    names = {e["pid"]: e["args"]["name"] for e in merged["traceEvents"] if e["name"] == "process_name"}
    assert names == {1: "first", 2: "second"}


def test_validate_finds_problems():
    assert validate_chrome_trace({"events": []})
    bad = {"traceEvents": [
        {"ph": "X", "pid": 1, "tid": "1", "name": "a", "ts": 0, "dur": 1},
        {"ph": "X", "pid": 1, "tid": 2, "name": "b", "ts": 5, "dur": -1},
        {"ph": "X", "pid": 1, "tid": 2, "name": "c", "ts": 4, "dur": 1},
        {"ph": "M", "pid": 1, "tid": 2, "name": "thread_name", "args": {}},
    ]}
    text = "\n".join(validate_chrome_trace(bad))
    assert "tid must be an int" in text and "dur must be" in text and "before the previous" in text
    assert "thread_name needs args.name" in text


# --- timelines from (fake) timing records ---------------------------------------------------------------

class FakeEvent:
    """Stands in for a timing Event: a timestamp in ms, complete unless told otherwise."""

    def __init__(self, t_ms, device=0, complete=True, timing=True):
        self.t = t_ms
        self.device = SimpleNamespace(ordinal=device)
        self.complete = complete
        self.timing = timing

    def done(self):
        return self.complete

    def sync(self):
        self.complete = True

    def elapsed_ms(self, end):
        return end.t - self.t


def _stream(handle):
    return SimpleNamespace(device=SimpleNamespace(ordinal=0), handle=handle)


def _record(name, stream, t0, t1, meta=None, complete=True):
    return TimingRecord(name, stream, FakeEvent(t0), FakeEvent(t1, complete=complete), meta)


def test_add_records_against_an_origin():
    s1, s2 = _stream(0x10), _stream(0x20)
    tl = Timeline("recs", origin=FakeEvent(100.0))
    tl.add(_record("copy", s1, 100.5, 101.0, {"bytes": 64, "direction": "H2D"}))
    tl.add(_record("fma_loop_f32", s2, 101.0, 101.25, {"grid": (1, 1, 1)}), args={"chunk": 3})
    tl.add(_record("copy", s1, 101.25, 101.5, {"bytes": 64, "direction": "D2H"}), name="back", track="mine")
    sl = tl.slices
    assert [s.name for s in sl] == ["H2D", "fma_loop_f32", "back"]
    assert [s.category for s in sl] == ["H2D", "kernel", "D2H"]
    assert [s.start_us for s in sl] == pytest.approx([500.0, 1000.0, 1250.0])
    assert [s.dur_us for s in sl] == pytest.approx([500.0, 250.0, 250.0])
    assert sl[1].args == {"grid": (1, 1, 1), "chunk": 3}
    assert tl.tracks == ["device 0 stream 0", "device 0 stream 1", "mine"]
    assert validate_chrome_trace(tl.to_chrome_trace()) == []
    snap = tl.snapshot()
    assert snap.slices == sl and snap.origin(0) is None


def test_named_streams_and_reference_without_origin():
    s1, s2 = _stream(1), _stream(2)
    tl = Timeline()
    tl.name_stream(s2, "compute")
    tl.add(_record("k", s2, 10.0, 11.0))
    tl.add(_record("copy", s1, 9.0, 10.0, {"direction": "D2D"}))  # before the reference
    sl = tl.slices
    assert sl[0].track == "compute" and sl[0].start_us == 0.0
    assert sl[1].start_us == pytest.approx(-1000.0)
    xs = [e for e in tl.to_chrome_trace()["traceEvents"] if e["ph"] == "X"]
    assert min(e["ts"] for e in xs) == 0.0


def test_no_hidden_sync_and_untimed_records():
    s = _stream(1)
    tl = Timeline(origin=FakeEvent(0.0))
    rec = _record("k", s, 1.0, 2.0, complete=False)
    tl.add(rec)
    assert not tl.done()
    with pytest.raises(NotReadyError, match="sync"):
        tl.resolve()
    tl.sync()  # the one call that waits
    assert tl.done() and len(tl.slices) == 1
    with pytest.raises(UntimedError, match="timed=True"):
        tl.add(TimingRecord("k", s))
    with pytest.raises(TypeError):
        tl.add(None)
    with pytest.raises(UntimedError):
        Timeline(origin=FakeEvent(0.0, timing=False))


# --- results, JSON, table -------------------------------------------------------------------------------

def _fake_report(iters=(0, 1000), streams=(1, 2, 4), orders=("breadth", "depth"), memory=("pinned",), h2d=True):
    """An OverlapReport built from the simulator (times in ms, as if measured)."""
    phases = ov.PHASES if h2d else ov.PHASES[1:]
    rep = ov.OverlapReport(device={"index": 0, "name": "Fake GPU", "async_engine_count": 3},
                           params={"size_mib": 256, "chunks": 8})
    for mem in memory:
        for it in iters:
            h, d = (5.0, 5.0) if mem == "pinned" else (30.0, 30.0)
            h = h if h2d else 0.0
            k = 0.2 + 0.005 * it
            ser_ms, ser_sl = simulate(h, k, d, 1, 1, phases=phases)
            rep.serial.append(ov.SerialResult(mem, it, 256 << 20, ser_ms, h, k, d, [ser_ms], True, {"ok": True},
                                              Timeline.from_slices(ser_sl, name="serial"), h2d=h2d))
            for od in orders:
                for s in streams:
                    t, sl = simulate(h, k, d, 8, s, od, phases)
                    rep.results.append(ov.OverlapResult.build(
                        memory=mem, order=od, streams=s, chunks=8, iters=it, size_bytes=256 << 20,
                        serial_ms=ser_ms, h2d_ms=h, kernel_ms=k, d2h_ms=d, overlapped_ms=t * 1.05,
                        samples_ms=[t * 1.05], verified=True, verify={"ok": True},
                        timeline=Timeline.from_slices(sl, name=f"S={s}"), h2d=h2d))
    return rep


def test_result_build_derives_the_figures():
    r = ov.OverlapResult.build(memory="pinned", order="depth", streams=4, chunks=32, iters=10, size_bytes=1,
                               serial_ms=15.0, h2d_ms=5.0, kernel_ms=5.0, d2h_ms=5.0, overlapped_ms=6.0)
    assert r.ideal_ms == pytest.approx(5.0 + 10 / 32)
    assert r.speedup == pytest.approx(2.5)
    assert r.max_speedup == pytest.approx(15.0 / r.ideal_ms)
    assert r.efficiency == pytest.approx(r.ideal_ms / 6.0)
    assert r.kernel_share == pytest.approx(1 / 3)
    assert r.label == "pinned depth S=4 C=32 iters=10"


def test_report_json_round_trip():
    rep = _fake_report()
    text = json.dumps(rep.to_dict(), allow_nan=False)
    doc = json.loads(text)
    assert doc["schema"] == ov.SCHEMA
    assert len(doc["results"]) == 12 and len(doc["serial"]) == 2
    for r in doc["results"]:
        for key in ("serial_ms", "overlapped_ms", "ideal_ms", "speedup", "efficiency", "max_speedup", "kernel_share"):
            assert isinstance(r[key], float)
        assert r["timeline"]["slices"]
    back = ov.OverlapReport.from_dict(doc)
    assert [r.label for r in back.results] == [r.label for r in rep.results]
    got, want = back.results[3].timeline.slices, rep.results[3].timeline.slices
    assert [(x.track, x.name, x.category, x.seq) for x in got] == [(x.track, x.name, x.category, x.seq) for x in want]
    assert [x.start_us for x in got] == pytest.approx([x.start_us for x in want], abs=1e-3)
    assert back.results[3].speedup == pytest.approx(rep.results[3].speedup)
    assert json.dumps(rep.to_dict(timelines=False))  # lean form
    assert rep.to_dict(timelines=False)["results"][0]["timeline"] is None
    with pytest.raises(ValueError, match="schema"):
        ov.OverlapReport.from_dict({"schema": "something/else"})


def test_nan_times_become_null_in_json():
    rep = _fake_report(iters=(0,), streams=(1,), orders=("depth",))
    assert math.isnan(rep.results[0].issue_ms)
    doc = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
    assert doc["results"][0]["issue_ms"] is None


def test_report_chrome_trace_has_a_process_per_run(tmp_path):
    rep = _fake_report()
    doc = rep.chrome_trace()
    assert validate_chrome_trace(doc) == []
    names = [e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "process_name"]
    assert len(names) == 2 + 12 and "serial pinned iters=1000" in names
    assert "pinned breadth S=4 C=8 iters=1000" in names
    rep.save_trace(tmp_path / "t.json")
    assert validate_chrome_trace(load_chrome_trace(tmp_path / "t.json")) == []


def test_format_table():
    rep = _fake_report()
    rep.results[0].verified = False
    text = ov.format_table(rep, title="overlap: test")
    lines = text.splitlines()
    assert lines[0] == "overlap: test"
    assert lines[1].split()[:6] == ["memory", "stages", "order", "iters", "S", "C"]
    assert set(lines[2]) <= {"-", " "}
    assert len(lines) == 3 + len(rep.results)
    assert lines[3].rstrip().endswith("NO") and lines[4].rstrip().endswith("yes")
    assert "x" in lines[4] and "%" in lines[4]
    assert len(lines[2]) >= max(len(line) for line in lines[1:])  # the rule spans every column
    speedup_end = lines[1].index("speedup") + len("speedup")  # numbers right-aligned under their header
    assert all(line[speedup_end - 1] == "x" for line in lines[3:])
    assert ov.format_table([]).count("\n") == 1
    assert ov.format_table(rep.results[:1]).splitlines()[0].startswith("memory")


def test_workload_without_h2d_is_labelled():
    rep = _fake_report(iters=(16,), streams=(4,), orders=("breadth",), h2d=False)
    r = rep.results[0]
    assert r.label.endswith("no-H2D") and r.stages == "kernel+D2H" and r.h2d_ms == 0.0
    assert rep.serial_for("pinned", 16, h2d=False) is rep.serial[0]
    assert rep.serial_for("pinned", 16) is None
    assert ov.format_table(rep).splitlines()[2].split()[1] == "K-D"
    assert ov.OverlapReport.from_dict(json.loads(json.dumps(rep.to_dict()))).results[0].h2d is False
    assert all(s.category != "H2D" for s in r.timeline.slices)


def test_summary_lines():
    rep = _fake_report()
    lines = ov.summary_lines(rep)
    assert lines[0].startswith("pinned: best with >= 4 streams")
    rep.results[0].verified = False
    rep.results[1].gate_timed_out = True
    text = "\n".join(ov.summary_lines(rep))
    assert "VERIFICATION FAILED" in text and "gate timed out" in text
    assert rep.verified is False


# --- plots -------------------------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n"


@needs_mpl
def test_plots_from_recorded_data(tmp_path):
    rep = _fake_report(memory=("pinned", "pageable"))
    out = ov.plot_results(rep, tmp_path / "overlap.png")
    assert out.read_bytes()[:8] == PNG
    # from the JSON document alone, as the owner does with a device run's file
    back = ov.OverlapReport.from_dict(json.loads(json.dumps(rep.to_dict())))
    assert ov.plot_results(back, tmp_path / "again.png", gantt=back.results[-1]).read_bytes()[:8] == PNG
    assert ov.plot_results(back.results, tmp_path / "nogantt.png", gantt=None).read_bytes()[:8] == PNG
    sweep = _fake_report(iters=(0, 1, 16, 256, 1000, 4000), streams=(4,), orders=("breadth",))
    kd = _fake_report(iters=(0, 1, 16, 256, 1000, 4000), streams=(4,), orders=("breadth",), h2d=False)
    assert ov.plot_sweep(sweep.results + kd.results, tmp_path / "sweep.png").read_bytes()[:8] == PNG
    assert ov.plot_results(kd, tmp_path / "kd.png").read_bytes()[:8] == PNG
    assert _sample_timeline().plot_gantt(tmp_path / "gantt.png").read_bytes()[:8] == PNG
    with pytest.raises(ValueError):
        ov.plot_results([], tmp_path / "empty.png")


def test_missing_matplotlib_names_the_extra(monkeypatch, tmp_path):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'cudart-kit\[plot\]'"):
        _sample_timeline().plot_gantt(tmp_path / "g.png")
    with pytest.raises(ImportError, match=r"cudart-kit\[plot\]"):
        ov.plot_results(_fake_report(), tmp_path / "p.png")


# --- the subcommand ---------------------------------------------------------------------------------------

def _parser():
    return cli.build_parser()  # the one front end: overlap's options on the main CLI's types


def test_cli_defaults():
    args = _parser().parse_args(["overlap"])
    assert args.func is cli.cmd_overlap
    assert args.streams == [1, 2, 4, 8, 16] and args.chunks == 32 and args.size_mib == 256
    assert args.iters is None and args.order == "both" and not args.pageable and args.repeat == 5
    assert args.device == 0 and args.json is False and args.json_file is None
    assert args.trace is None and args.plot is None
    assert not args.no_h2d and not args.no_gate and not args.no_verify


def test_cli_options():
    args = _parser().parse_args(["overlap", "--streams", "1,4", "--chunks", "16", "--size-mib", "64",
                                 "--iters", "0,16,256", "--pageable", "--order", "depth", "--json",
                                 "--json-file", "o.json", "--trace", "t.json", "--plot", "p.png", "--device", "1",
                                 "--repeat", "3", "--no-h2d", "--no-gate", "--no-verify"])
    assert args.streams == [1, 4] and args.chunks == 16 and args.size_mib == 64.0
    assert args.iters == [0, 16, 256] and args.pageable and args.order == "depth"
    assert (args.json, args.json_file, args.trace, args.plot) == (True, "o.json", "t.json", "p.png")
    assert (args.device, args.repeat) == (1, 3)
    assert args.no_h2d and args.no_gate and args.no_verify
    assert _parser().parse_args(["overlap", "--iters", "auto"]).iters is None


def test_cli_shares_the_main_argument_types():
    # one set of argument types: the same value is refused with the same words by overlap and bandwidth
    for overlap_argv, other_argv in ((["--chunks", "0"], ["bandwidth", "--repeat", "0"]),
                                     (["--device", "-1"], ["query", "--device", "-1"])):
        with pytest.raises(cli.UsageError) as a:
            _parser().parse_args(["overlap", *overlap_argv])
        with pytest.raises(cli.UsageError) as b:
            _parser().parse_args(other_argv)
        assert str(a.value).split(": ", 1)[1] == str(b.value).split(": ", 1)[1]


@pytest.mark.parametrize("argv", [
    ["--streams", "0,2"], ["--streams", "x"], ["--chunks", "0"], ["--size-mib", "-1"], ["--size-mib", "inf"],
    ["--iters", "-3"], ["--order", "random"], ["--repeat", "0"], ["--device", "-1"],
    ["--json", "o.json"],  # --json takes no file: that is --json-file
])
def test_cli_usage_errors(argv, capsys):
    assert cli.main(["overlap", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: cudart-kit overlap") and err.splitlines()[-1].startswith("cudart-kit overlap: error:")


def _no_gpu() -> bool:
    try:
        import cudart_kit as ck

        return ck.device_count() == 0
    except ck.CudaKitError:
        return True


@pytest.mark.skipif(not _no_gpu(), reason="checks the behaviour without a driver or GPU")
def test_cli_without_a_driver_prints_one_line(capsys, tmp_path):
    out = tmp_path / "o.json"
    assert cli.main(["overlap", "--size-mib", "1", "--streams", "1,2", "--json-file", str(out)]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cudart-kit overlap: error: no NVIDIA driver")
    assert captured.out == "" and not out.exists()
    assert cli.main(["overlap", "--size-mib", "1", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["error"]["type"] == "NoDriverError" and doc["error"]["command"] == "overlap" and doc["exit_code"] == 1


@pytest.fixture
def fake_run(monkeypatch):
    """run_overlap replaced by a report from the simulator; records its calls."""
    calls = []

    def run_overlap(**kw):
        calls.append(kw)
        return _fake_report(iters=(0,), streams=(1, 2))

    monkeypatch.setattr(ov, "run_overlap", run_overlap)
    return calls


def test_cli_json_is_the_document_on_stdout(fake_run, capsys, tmp_path):
    assert cli.main(["overlap", "--json", "--streams", "1,2", "--chunks", "8"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # stdout holds the document and nothing else
    assert doc == json.loads(json.dumps(_fake_report(iters=(0,), streams=(1, 2)).to_dict()))
    assert captured.err.splitlines()[0].startswith("overlap: Fake GPU")  # the table, on stderr
    assert fake_run[0]["streams"] == [1, 2] and fake_run[0]["chunks"] == 8 and fake_run[0]["order"] == ["breadth", "depth"]
    # --json-file writes the same document; the table then goes to stdout
    path = tmp_path / "o.json"
    assert cli.main(["overlap", "--json-file", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].startswith("overlap: Fake GPU")
    assert path.read_text() == cli.to_json(doc) + "\n"
    assert ov.OverlapReport.from_dict(json.loads(path.read_text())).results[1].streams == 2


def test_cli_verification_failure_still_reports(fake_run, monkeypatch, capsys):
    bad = _fake_report(iters=(0,), streams=(1,))
    bad.results[0].verified = False
    monkeypatch.setattr(ov, "run_overlap", lambda **kw: bad)
    assert cli.main(["overlap", "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["results"][0]["verified"] is False
    assert "VERIFICATION FAILED" in captured.err


def test_cli_refuses_before_measuring(fake_run, capsys, tmp_path):
    missing = tmp_path / "no" / "such" / "dir" / "o.json"
    for argv in (["--json-file", str(missing)], ["--trace", str(missing)], ["--chunks", "1000", "--size-mib", "0.001"]):
        assert cli.main(["overlap", "--json", *argv]) == 2
        doc = json.loads(capsys.readouterr().out)
        assert doc["error"]["type"] == "UsageError" and doc["exit_code"] == 2
    assert fake_run == []  # nothing was measured


def test_cli_write_failure_is_one_line_and_no_document(fake_run, capsys, tmp_path):
    target = tmp_path / "taken"
    target.mkdir()  # a directory where the file should go: the write itself fails
    assert cli.main(["overlap", "--json", "--json-file", str(target)]) == 1
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # one document: the error, not the results followed by an error
    assert doc["error"]["type"] == "IsADirectoryError" and str(target) in doc["error"]["message"]
    assert captured.err.splitlines()[-1] == f"cudart-kit overlap: error: {doc['error']['message']}"


def test_imports_touch_neither_driver_nor_matplotlib():
    code = ("import sys; import cudart_kit.trace, cudart_kit.experiments.overlap, "
            "cudart_kit.cli; "
            "bad = [m for m in sys.modules if m.startswith(('matplotlib', 'cuda.bindings', 'cuda.core'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_kernel_source_is_in_the_build():
    from cudart_kit import build

    specs = build.specs()
    assert "overlap" in specs
    src = (REPO / "kernels" / "overlap.cu").read_text()
    for entry in ("fma_loop_f32", "gate_wait"):
        assert f'extern "C" __global__ void {entry}(' in src
