"""The stream-overlap experiment and the timeline recorder on the GPU: the tunable kernel against
its numpy reference (bit for bit), small experiment runs verified against numpy, timelines whose
slices follow the issue order on each stream without overlapping, no hidden synchronization,
the gate, the subcommand end to end. Structure and correctness only: speed is the benchmark's
business (tools/bench_overlap.py), never asserted here."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cudart_kit as ck
from cudart_kit import cli
from cudart_kit.accounting import assert_no_leaks
from cudart_kit.errors import NotReadyError
from cudart_kit.experiments import overlap as ov
from cudart_kit.trace import Timeline, validate_chrome_trace

TOL_US = 1.0  # event timestamps resolve to ~0.5 us


def _bits(a):
    return np.asarray(a, np.float32).view(np.uint32)


# --- the kernel --------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 31, 257, 1000003])
@pytest.mark.parametrize("iters", [0, 1, 2, 7, 100])
def test_fma_loop_matches_numpy_bit_for_bit(n, iters, stream, rng):
    xh = rng.standard_normal(n).astype(np.float32)
    x = ck.to_device(xh, stream=stream)
    out = ck.empty(n, np.float32, stream=stream)
    ck.memset(out, 0xFF, stream=stream)  # NaN poison: every element must be written
    rec = ov.fma_loop_f32(x, out, iters, stream=stream, timed=True)
    got = out.to_numpy(stream=stream)
    want = ov.fma_loop_reference(xh, iters)
    assert not np.isnan(got).any()
    bad = np.flatnonzero(_bits(got) != _bits(want))
    assert bad.size == 0, f"{bad.size} of {n} differ; first at {bad[0]}: got {got[bad[0]]!r}, want {want[bad[0]]!r}"
    assert rec.elapsed_ms() >= 0 and rec.meta["iters"] == iters


def test_fma_loop_refuses_bad_arguments(stream):
    x = ck.empty(8, np.float32, stream=stream)
    with pytest.raises(ck.DTypeError):
        ov.fma_loop_f32(ck.empty(8, np.float64, stream=stream), x, 1, stream=stream)
    with pytest.raises(ck.ShapeError):
        ov.fma_loop_f32(x, ck.empty(9, np.float32, stream=stream), 1, stream=stream)
    with pytest.raises(ValueError):
        ov.fma_loop_f32(x, x, -1, stream=stream)


# --- the timeline recorder with real work -----------------------------------------------------------

def test_timeline_of_kit_copies_and_launches(device, rng):
    n = 1 << 20
    with ck.Stream.create(device) as s0, ck.Stream.create(device) as s1:
        xh = rng.standard_normal(n).astype(np.float32)
        x = ck.empty(n, np.float32, stream=s0)
        y = ck.empty(n, np.float32, stream=s0)
        back = np.empty(n, np.float32)
        s0.sync()
        tl = Timeline("kit")
        tl.name_stream(s0, "copies")
        origin = tl.mark_origin(s0, others=[s1])
        tl.add(ck.copy(x, xh, stream=s0, timed=True))
        done = s0.record()
        s1.wait(done)
        tl.add(ov.fma_loop_f32(x, y, 50, stream=s1, timed=True))
        s0.wait(s1)
        tl.add(ck.copy(back, y, stream=s0, timed=True), name="back")
        tl.sync()
        sl = tl.slices
        assert [s.category for s in sl] == ["H2D", "kernel", "D2H"]
        assert [s.name for s in sl] == ["H2D", "fma_loop_f32", "back"]
        assert tl.tracks == ["copies", "device %d stream 1" % device.ordinal]
        assert sl[0].args["bytes"] == 4 * n
        for a, b in zip(sl, sl[1:]):  # each waited for the one before
            assert b.start_us >= a.end_us - TOL_US
        assert all(s.start_us >= -TOL_US and s.dur_us > 0 for s in sl)
        assert validate_chrome_trace(tl.to_chrome_trace()) == []
        assert np.array_equal(_bits(back), _bits(ov.fma_loop_reference(xh, 50)))
        del origin, done
        x.close()
        y.close()


def test_timeline_never_syncs_for_you(device):
    """A gate holds the stream: resolving must refuse, not wait."""
    with ck.Stream.create(device) as s:
        flags_arr = ck.empty(2, np.uint32, stream=s, kind="pinned")
        flags = flags_arr.numpy()
        flags[:] = 0
        x = ck.empty(1024, np.float32, stream=s)
        y = ck.empty(1024, np.float32, stream=s)
        tl = Timeline(origin=s.record(timing=True))
        ov.gate_wait(flags_arr, stream=s, timeout_s=10.0)
        tl.add(ov.fma_loop_f32(x, y, 1, stream=s, timed=True))
        try:
            assert not tl.done()
            with pytest.raises(NotReadyError):
                tl.resolve()
        finally:
            flags[0] = 1  # open the gate
        tl.sync()
        assert len(tl.slices) == 1 and flags[1] == 0  # opened by the host, not by the timeout
        del flags
        flags_arr.close()
        x.close()
        y.close()


def test_gate_times_out_on_its_own(device):
    with ck.Stream.create(device) as s:
        flags_arr = ck.empty(2, np.uint32, stream=s, kind="pinned")
        flags = flags_arr.numpy()
        flags[:] = 0
        ov.gate_wait(flags_arr, stream=s, timeout_s=0.02)  # 20 ms
        s.sync()
        assert flags[1] == 1
        del flags
        flags_arr.close()


# --- the experiment -------------------------------------------------------------------------------

def _check_timeline(r, phases=ov.PHASES):
    """Every copy and launch on its own stream's track, in issue order, none overlapping."""
    tl = r.timeline
    assert tl is not None
    assert tl.tracks == [f"stream {i}" for i in range(r.streams)]
    sl = tl.slices
    assert len(sl) == len(phases) * r.chunks
    expected = ov.issue_order(r.chunks, r.streams, r.order, phases)
    assert [s.name for s in sl] == [f"{p} c{c}" for p, c in expected]
    for track, items in tl.by_track().items():
        k = int(track.split()[-1])
        assert all(s.args["chunk"] % r.streams == k for s in items)
        for a, b in zip(items, items[1:]):  # issue order is time order on a stream, no overlap
            assert b.seq > a.seq
            assert b.start_us >= a.end_us - TOL_US, (track, a, b)
    for s in sl:
        assert s.start_us >= -TOL_US and s.dur_us >= 0
    by_chunk = {}
    for s in sl:
        by_chunk.setdefault(s.args["chunk"], {})[s.category] = s
    for st in by_chunk.values():  # a chunk's stages in order
        for p, q in zip(phases, phases[1:]):
            assert st[q].start_us >= st[p].end_us - TOL_US
    assert tl.span_us()[1] <= max(r.samples_ms) * 1e3 + TOL_US  # the timeline is one of the repeats


def test_run_overlap_small(device):
    with assert_no_leaks():
        rep = ov.run_overlap(size_mib=2, streams=[1, 3, 4], chunks=8, iters=[0, 24], memory=["pinned", "pageable"],
                             order="both", repeat=2, device=device.ordinal)
    assert rep.verified
    assert len(rep.serial) == 4 and len(rep.results) == 3 * 2 * 2 * 2
    for s in rep.serial:
        assert s.verified is True and s.verify["unwritten"] == 0
        assert s.h2d_ms > 0 and s.kernel_ms > 0 and s.d2h_ms > 0
        assert s.serial_ms >= 0.98 * (s.h2d_ms + s.kernel_ms + s.d2h_ms)  # stages in turn, within the total
    for r in rep.results:
        assert r.verified is True, (r.label, r.verify)
        assert r.verify["mismatches"] == 0 and r.verify["unwritten"] == 0
        assert r.overlapped_ms > 0 and len(r.samples_ms) >= 2
        assert r.ideal_ms <= 1.02 * r.serial_ms
        assert r.gated == (r.memory == "pinned") and not r.gate_timed_out
        assert np.isfinite([r.speedup, r.efficiency, r.max_speedup]).all()
        _check_timeline(r)
    doc = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
    assert doc["schema"] == ov.SCHEMA and doc["device"]["name"]
    assert validate_chrome_trace(rep.chrome_trace()) == []
    assert ov.format_table(rep).count("\n") == 1 + len(rep.results)


def test_run_overlap_without_h2d_and_calibrated(device):
    rep = ov.run_overlap(size_mib=4, streams=[2], chunks=4, iters=None, order="breadth", repeat=1,
                         device=device.ordinal, h2d=False)
    assert rep.calibration is not None and rep.calibration["iters"] >= 0
    assert rep.params["iters"] == [rep.calibration["iters"]]
    (r,) = rep.results
    assert r.verified and r.h2d is False and r.h2d_ms == 0.0
    _check_timeline(r, ov.PHASES[1:])


def test_sweep_and_odd_sizes(device):
    # a size that splits unevenly into chunks, and more streams than chunks
    rep = ov.sweep_iters(iters=[0, 3], size_mib=1.001, streams=[2, 8], chunks=5, repeat=1, device=device.ordinal)
    assert rep.verified and len(rep.results) == 4
    for r in rep.results:
        _check_timeline(r)


def test_ungated_runs_verify_too(device):
    rep = ov.run_overlap(size_mib=1, streams=[4], chunks=8, iters=[5], order="depth", repeat=1,
                         device=device.ordinal, gate=False)
    assert rep.verified and not rep.results[0].gated


def test_cli_end_to_end(tmp_path, capsys, device):
    out = tmp_path / "o.json"
    trace = tmp_path / "t.json"
    rc = cli.main(["overlap", "--size-mib", "1", "--streams", "1,2", "--chunks", "4", "--iters", "8",
                   "--repeat", "1", "--order", "depth", "--json-file", str(out), "--trace", str(trace),
                   "--device", str(device.ordinal)])
    assert rc == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith("overlap:")
    doc = json.loads(out.read_text())
    assert doc["schema"] == ov.SCHEMA and len(doc["results"]) == 2
    assert validate_chrome_trace(json.loads(trace.read_text())) == []
    back = ov.OverlapReport.from_dict(doc)
    assert back.results[1].timeline.tracks == ["stream 0", "stream 1"]
