"""The free path's rule for streams under capture, with no driver: a kit array whose free must be
ordered on a stream that is being captured is not freed (no event recorded, no free queued) until
that capture has ended; then the next free, or the end of a kit capture, frees it and the census
counts it gone. The GPU side is tests/gpu/test_capture_frees.py."""

from __future__ import annotations

from contextlib import nullcontext

import pytest

from cudart_kit import _census
from cudart_kit.memory import alloc


class FakeStream:
    def __init__(self, handle: int):
        self._handle = handle
        self.is_closed = False
        self.core = f"core-{handle}"
        self.log: list = []

    def record(self):
        self.log.append("record")
        return FakeEvent()

    def wait(self, ev):
        self.log.append("wait")

    def sync(self):
        self.log.append("sync")


class FakeEvent:
    def close(self):
        pass


class FakeBuffer:
    def __init__(self):
        self.closed_on: list = []

    def close(self, stream=None):
        self.closed_on.append(stream)


class FakeDevice:
    def activate(self):
        return nullcontext()


@pytest.fixture
def capturing(monkeypatch):
    """The set of stream handles the fake driver reports as being captured."""
    live: set = set()
    monkeypatch.setattr(alloc.drv, "stream_is_capturing", lambda handle: handle in live)
    monkeypatch.setattr(alloc, "_deferred", [])
    return live


def _arrays(kind="device") -> int:
    return _census.memory_snapshot()[kind]["arrays"]


def test_free_waits_for_the_capture_of_its_allocation_stream(capturing):
    s, dev, buf = FakeStream(0x10), FakeDevice(), FakeBuffer()
    alloc._count("device", 64, +1)
    before = _arrays()
    capturing.add(s._handle)
    alloc._release_pool(buf, dev, s, set(), "device", 64)
    assert buf.closed_on == [] and s.log == [] and _arrays() == before  # nothing queued, still counted
    assert alloc.flush_deferred() == 1  # still captured: still waiting
    capturing.clear()
    assert alloc.flush_deferred() == 0
    assert buf.closed_on == ["core-16"] and _arrays() == before - 1


def test_free_waits_for_the_capture_of_a_stream_that_used_it(capturing):
    """The ordering event would be recorded on the capturing stream and the free stream would join
    the capture: neither happens until it ends; then the next free (of anything) runs it."""
    alloc_s, user, dev = FakeStream(0x20), FakeStream(0x30), FakeDevice()
    buf, other_buf = FakeBuffer(), FakeBuffer()
    alloc._count("device", 8, +1)
    alloc._count("device", 8, +1)
    capturing.add(user._handle)
    alloc._release_pool(buf, dev, alloc_s, {user}, "device", 8)
    assert user.log == [] and alloc_s.log == [] and buf.closed_on == []
    capturing.clear()
    alloc._release_pool(other_buf, dev, FakeStream(0x40), set(), "device", 8)  # an unrelated free flushes
    assert user.log == ["record"] and alloc_s.log == ["wait"] and buf.closed_on == ["core-32"]


def test_graph_memory_is_freed_inside_its_capture(capturing):
    """An allocation made inside a capture is freed on its capture stream while it is captured:
    the free becomes the graph's own free node."""
    cap, dev, buf = FakeStream(0x50), FakeDevice(), FakeBuffer()
    alloc._count("device", 8, +1)
    capturing.add(cap._handle)
    alloc._release_pool(buf, dev, cap, set(), "device", 8, True)
    assert buf.closed_on == ["core-80"]


def test_managed_free_waits_for_the_capture(capturing, monkeypatch):
    freed: list = []
    monkeypatch.setattr(alloc.drv, "mem_free", freed.append)
    s, dev = FakeStream(0x60), FakeDevice()
    alloc._count("managed", 8, +1)
    capturing.add(s._handle)
    alloc._release_managed(0xABC, dev, s, set(), 8)
    assert freed == [] and s.log == []  # no sync of a capturing stream (it would break the capture)
    capturing.clear()
    alloc.flush_deferred()
    assert freed == [0xABC] and s.log == ["sync"]
