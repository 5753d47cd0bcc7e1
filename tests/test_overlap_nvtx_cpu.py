"""NVTX ranges of the overlap experiment, without a GPU: the workload is driven through small
fakes of the kit calls it makes (streams, buffers, copies, launches, events: its ``ck``
boundary) under a fake ``nvtx`` module, and every range it opens is checked by name, in
order, and around the kit call it names. Off (the default), no range function is called."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cudart_kit import profiling
from cudart_kit.event import TimingRecord
from cudart_kit.experiments import overlap as ov
from cudart_kit.experiments.overlap import workload
from cudart_kit.trace import Timeline

REPO = Path(__file__).resolve().parent.parent

# The names docs/overlap.md promises, spelled out: a renamed or dropped range fails here.
H2D, KERNEL, D2H = "overlap:h2d", "overlap:kernel", "overlap:d2h"
SETUP, RUN, UPLOAD = "overlap:setup", "overlap:run", "overlap:upload"
POISON, GATE, WAIT = "overlap:poison", "overlap:gate", "overlap:wait"
VERIFY, SERIAL, CONFIG, CALIBRATE = "overlap:verify", "overlap:serial", "overlap:configuration", "overlap:calibrate"


# --- a fake nvtx that remembers what was open when the kit was called -----------------------------

class FakeDomain:
    def __init__(self):
        self.calls: list[tuple] = []
        self.stack: list[str] = []

    def get_event_attributes(self, message):
        return ("attrs", message)

    def push_range(self, attrs):
        self.calls.append(("push", attrs[1]))
        self.stack.append(attrs[1])

    def pop_range(self):
        self.calls.append(("pop",))
        self.stack.pop()


@pytest.fixture
def fake_nvtx(monkeypatch):
    dom = FakeDomain()
    mod = types.ModuleType("nvtx")
    mod.get_domain = lambda name: dom if name == "cudart_kit" else None
    monkeypatch.setitem(sys.modules, "nvtx", mod)
    monkeypatch.setattr(profiling, "_domain", None)
    monkeypatch.setattr(profiling, "_attrs", {})
    yield dom
    profiling.disable()


# --- a fake kit: host memory for every kind, work done at once, a clock that the work advances ----

class Clock:
    def __init__(self):
        self.t_ms = 0.0

    def advance(self, ms: float) -> float:
        self.t_ms += ms
        return self.t_ms


class FakeEvent:
    def __init__(self, clock, device):
        self.clock, self.device, self.timing, self.t = clock, device, True, clock.t_ms

    def record(self, _stream=None):
        self.t = self.clock.t_ms
        return self

    def done(self):
        return True

    def sync(self):
        pass

    def elapsed_ms(self, end):
        return end.t - self.t


class FakeStream:
    handles = iter(range(0x100, 1 << 30))

    def __init__(self, device):
        self.device, self.handle, self.is_closed = device, next(FakeStream.handles), False

    def wait(self, _other):
        pass

    def sync(self):
        pass

    def close(self):
        self.is_closed = True


class FakeArray:
    """Host memory standing in for device, pinned and span arrays alike."""

    def __init__(self, a, keep=None):
        self.a, self._keep = a, keep
        self.dtype, self.itemsize, self.size = a.dtype, a.itemsize, a.size
        self.ptr = a.ctypes.data
        self.closed = False

    def numpy(self):
        return self.a

    def __getitem__(self, key):  # a view, as Array's basic indexing gives
        return FakeArray(self.a[key], keep=self)

    def record_stream(self, _s):
        pass

    def close(self):
        self.closed = True


class FakeKit:
    """What the workload calls on ``cudart_kit``; ``log`` says which range was open at each call."""

    def __init__(self, dom: FakeDomain, clock: Clock):
        self.dom, self.clock, self.log = dom, clock, []
        self.device = SimpleNamespace(ordinal=0, name="Fake GPU", attribute=lambda key: 1)
        kit = self

        class Stream:
            @staticmethod
            def create(device):
                return FakeStream(device)

        class Event:
            @staticmethod
            def create(device, timing=False):
                return FakeEvent(kit.clock, device)

        self.Stream, self.Event = Stream, Event

    def _note(self, what):
        self.log.append((what, self.dom.stack[-1] if self.dom.stack else None))

    def _record(self, name, stream, ms, meta):
        start = FakeEvent(self.clock, self.device)
        self.clock.advance(ms)
        return TimingRecord(name, stream, start, FakeEvent(self.clock, self.device), meta)

    # the calls
    def get_device(self, _device):
        return self.device

    def empty(self, n, dtype, *, stream, kind="device"):
        return FakeArray(np.zeros(n, dtype))

    def copy(self, dst, src, *, stream, timed=False):
        d = dst.a if isinstance(dst, FakeArray) else dst
        s = src.a if isinstance(src, FakeArray) else src
        direction = "H2D" if isinstance(dst, FakeArray) else "D2H"
        self._note(f"copy {direction}")
        d[...] = s
        return self._record("copy", stream, 1e-6 * d.size, {"direction": direction, "bytes": d.nbytes}) if timed else None

    def memset(self, arr, value, *, stream):
        self._note("memset")
        arr.a.view(np.uint8).fill(value)

    def launch(self, kernel, grid, block, *args, stream, timed=False):
        self._note(f"launch {kernel}")
        return self._record(kernel, stream, 0.0, {"grid": (grid, 1, 1)})

    def prepare(self, kernel, grid, block, din, dout, n, iters, a, b, db, *, device):
        kit = self

        class Prepared:
            def launch(self, stream, *, timed=False):
                kit._note(f"launch {kernel}")
                dout.a[...] = ov.fma_loop_reference(din.a, int(iters))
                return kit._record(kernel, stream, int(n) * (1e-7 + 1e-8 * int(iters)), {"grid": (grid, 1, 1)})

        return Prepared()

    def load_kit_module(self, name):
        return SimpleNamespace(kernel=lambda entry: entry)

    def blocks_for(self, n, block):
        return -(-n // block)


class FakeTimeline(Timeline):
    """A real Timeline whose origin is a fake event (the real one records on a kit stream)."""

    clock: Clock

    def mark_origin(self, stream, *, others=()):
        origin = FakeEvent(self.clock, stream.device)
        self.set_origin(origin)
        return origin


@pytest.fixture
def fake_kit(monkeypatch, fake_nvtx):
    clock = Clock()
    kit = FakeKit(fake_nvtx, clock)
    monkeypatch.setattr(workload, "ck", kit)
    monkeypatch.setattr(FakeTimeline, "clock", clock, raising=False)
    monkeypatch.setattr(workload, "Timeline", FakeTimeline)
    return kit


def tree(calls) -> list:
    """The ranges as a tree: [(name, [children...]), ...], from the push/pop calls."""
    root: list = []
    stack = [root]
    for call in calls:
        if call[0] == "push":
            node = (call[1], [])
            stack[-1].append(node)
            stack.append(node[1])
        else:
            stack.pop()
    assert len(stack) == 1, "a range was left open"
    return root


def names(nodes) -> list[str]:
    return [n for n, _ in nodes]


def leaves(nodes) -> bool:
    return all(not children for _, children in nodes)


# --- the stage-queuing code -----------------------------------------------------------------------------

def test_one_run_opens_a_range_per_stage_in_issue_order(fake_kit, fake_nvtx):
    wl = workload.Workload(0, 12, ("pinned",), seed=1)
    profiling.enable()
    fake_nvtx.calls.clear()
    fake_kit.log.clear()
    run = wl.run(streams=2, chunks=3, iters=5, memory="pinned", order="breadth", gate=True, poison=True)
    (whole, inner), = tree(fake_nvtx.calls)  # one range around the run, the stages inside it
    assert whole == RUN and leaves(inner)
    # breadth, S=2, C=3: wave {0, 1}: H2D H2D kernel kernel D2H D2H; wave {2}: H2D kernel D2H
    assert names(inner) == [POISON, GATE, H2D, H2D, KERNEL, KERNEL, D2H, D2H, H2D, KERNEL, D2H, WAIT]
    # each range is around the kit call it names
    assert fake_kit.log == [
        ("memset", POISON), ("launch gate_wait", GATE),
        ("copy H2D", H2D), ("copy H2D", H2D), ("launch fma_loop_f32", KERNEL), ("launch fma_loop_f32", KERNEL),
        ("copy D2H", D2H), ("copy D2H", D2H), ("copy H2D", H2D), ("launch fma_loop_f32", KERNEL), ("copy D2H", D2H)]
    assert [s.category for s in run.timeline.slices] == ["H2D", "H2D", "kernel", "kernel", "D2H", "D2H",
                                                        "H2D", "kernel", "D2H"]
    fake_nvtx.calls.clear()
    assert wl.verify("pinned", 5, 3)["ok"]  # the fakes really computed the workload
    assert fake_nvtx.calls == [("push", VERIFY), ("pop",)]
    wl.close()


def test_depth_order_without_h2d_uploads_once(fake_kit, fake_nvtx):
    wl = workload.Workload(0, 8, ("pinned",), seed=2)
    profiling.enable()
    fake_nvtx.calls.clear()
    wl.run(streams=2, chunks=2, iters=0, memory="pinned", order="depth", gate=False, poison=False, h2d=False)
    assert tree(fake_nvtx.calls) == [(RUN, [(n, []) for n in (UPLOAD, KERNEL, D2H, KERNEL, D2H, WAIT)])]
    assert ("copy H2D", UPLOAD) in fake_kit.log
    fake_nvtx.calls.clear()
    wl.run(streams=2, chunks=2, iters=0, memory="pinned", order="depth", gate=False, poison=False, h2d=False)
    assert tree(fake_nvtx.calls) == [(RUN, [(n, []) for n in (KERNEL, D2H, KERNEL, D2H, WAIT)])]  # uploaded once
    wl.close()


def test_a_failing_stage_still_closes_its_range(fake_kit, fake_nvtx, monkeypatch):
    wl = workload.Workload(0, 8, ("pinned",), seed=3)
    profiling.enable()

    def refuse(*_a, **_k):
        raise RuntimeError("copy refused")

    monkeypatch.setattr(fake_kit, "copy", refuse)
    fake_nvtx.calls.clear()
    with pytest.raises(RuntimeError, match="copy refused"):
        wl.run(streams=1, chunks=2, iters=0, memory="pinned", order="depth", gate=True, poison=False)
    assert fake_nvtx.calls == [("push", RUN), ("push", GATE), ("pop",), ("push", H2D), ("pop",), ("pop",)]
    assert wl.flags[0] == 1  # the gate was opened anyway
    wl.close()


def test_the_experiment_nests_its_phases(fake_kit, fake_nvtx):
    profiling.enable()
    rep = ov.run_overlap(size_mib=64 / (1 << 20), streams=[2], chunks=4, iters=None, order="depth", repeat=1,
                         warmup_ms=0.0, min_time_ms=0.0)
    assert rep.verified and rep.calibration["iters"] == 90  # (1e-6 - 1e-7) / 1e-8 per element
    top = tree(fake_nvtx.calls)
    assert names(top) == [SETUP, CALIBRATE, SERIAL, CONFIG]
    (_, setup), (_, calibrate), serial, config = top
    assert setup == []
    assert set(names(calibrate)) == {SERIAL} and len(calibrate) >= 2  # at 0 iterations, then at the probe
    for _, phase in (serial, config):  # a verified run first, then the timed runs
        assert names(phase)[:3] == [RUN, VERIFY, RUN] and names(phase).count(VERIFY) == 1
        assert set(names(phase)) == {RUN, VERIFY}
    serial_runs = [children for name, children in serial[1] if name == RUN]
    assert names(serial_runs[0]) == [POISON, GATE, H2D, KERNEL, D2H, WAIT]  # one chunk, one stream
    assert all(names(r) == [GATE, H2D, KERNEL, D2H, WAIT] for r in serial_runs[1:])
    config_runs = [children for name, children in config[1] if name == RUN]
    depth_s2_c4 = [p for c in range(4) for p in (H2D, KERNEL, D2H)]
    assert names(config_runs[0]) == [POISON, GATE, *depth_s2_c4, WAIT]
    assert all(names(r) == [GATE, *depth_s2_c4, WAIT] for r in config_runs[1:])
    assert len(config_runs) - 1 == len(rep.results[0].samples_ms) + rep.results[0].warmup_runs


def test_off_by_default_calls_no_range_function(fake_kit, fake_nvtx, monkeypatch):
    assert profiling.ENABLED is False

    def forbidden(*_a, **_k):
        raise AssertionError("a range function was called while NVTX is off")

    for name in ("push", "pop", "_range"):
        monkeypatch.setattr(profiling, name, forbidden)
    rep = ov.run_overlap(size_mib=64 / (1 << 20), streams=[1, 2], chunks=2, iters=[1], order="both", repeat=1,
                         warmup_ms=0.0, min_time_ms=0.0)
    assert rep.verified and len(rep.results) == 4
    assert fake_nvtx.calls == []


def test_range_names_are_documented():
    documented = set(ov.RANGES.values())
    assert documented == {H2D, KERNEL, D2H, SETUP, RUN, UPLOAD, POISON, GATE, WAIT, VERIFY, SERIAL, CONFIG, CALIBRATE}
    assert ov.STAGE_RANGES == {"H2D": H2D, "kernel": KERNEL, "D2H": D2H}
    doc = (REPO / "docs" / "overlap.md").read_text()
    for name in documented:
        assert f"`{name}`" in doc, name
