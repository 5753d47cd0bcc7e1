"""Events and timing records: start/stop events on one stream, read without hidden syncs.

Imports point stream -> event, never back: recording is the stream's job
(:meth:`cudart_kit.Stream.record`), as in cuda.core. :meth:`Event.record` is kept as a
convenience that hands itself to that method, so it takes a kit Stream only; coerce anything
else first (``ck.as_stream(obj)``), which is what every kit entry point does at its boundary.
"""

from __future__ import annotations

import weakref

from . import _census
from .device import Device, get_device
from .errors import ClosedError, NotReadyError, StreamError, UntimedError, translate

__all__ = ["Event", "TimingRecord"]


class Event:
    """A CUDA event. Create with :meth:`Event.create` or :meth:`Stream.record`."""

    __slots__ = ("_core", "device", "timing", "_recorded", "_finalizer", "__weakref__")

    def __init__(self, *_a, **_k):
        raise TypeError("use Event.create(device) or stream.record()")

    @classmethod
    def create(cls, device: "Device | int | None" = None, *, timing: bool = True, blocking_sync: bool = False) -> "Event":
        from cuda.core import EventOptions

        dev = get_device(device)
        with dev.activate():
            try:
                core = dev.core.create_event(EventOptions(timing_enabled=timing, blocking_sync=blocking_sync))
            except Exception as exc:
                raise translate(exc, "cuEventCreate") from exc
        self = object.__new__(cls)
        self._core = core
        self.device = dev
        self.timing = timing
        self._recorded = False
        _census.add("events", 1)
        self._finalizer = weakref.finalize(self, _census.release, core, "events")
        return self

    @property
    def core(self):
        if self._core is None:
            raise ClosedError("event is closed")
        return self._core

    @property
    def handle(self) -> int:
        return int(self.core.handle)

    def record(self, stream) -> "Event":
        """Record on ``stream`` (captures all work queued there so far). Returns self.

        The same as ``stream.record(self)``. ``stream`` must be a kit Stream: for a foreign one
        (PyTorch, CuPy, ``__cuda_stream__``, a raw handle) write ``ck.as_stream(obj).record(event)``.
        Raises StreamError for anything else, ClosedError for a closed stream or event,
        DeviceMismatchError for a stream of another device."""
        # Stream._record_event exists on kit Streams only: this module cannot import stream.py
        # (stream imports event), and a duck-typed ``stream.record`` would call CuPy's own.
        record = getattr(type(stream), "_record_event", None)
        if record is None:
            raise StreamError(
                f"Event.record needs a cudart_kit.Stream, got {type(stream).__name__}; for a foreign "
                "stream use cudart_kit.as_stream(obj).record(event)")
        record(stream, self)
        return self

    def sync(self) -> None:
        """Block the host until the recorded work completes."""
        try:
            self.core.sync()
        except Exception as exc:
            raise translate(exc, "cuEventSynchronize") from exc

    def done(self) -> bool:
        """Non-blocking: True when the recorded work has completed (or nothing was recorded)."""
        try:
            return bool(self.core.is_done)  # cuEventQuery through cuda.core
        except ClosedError:
            raise
        except Exception as exc:
            raise translate(exc, "cuEventQuery") from exc

    def elapsed_ms(self, end: "Event") -> float:
        """Milliseconds from this event to ``end``. Both must be timing events and complete:
        raises NotReadyError (no hidden sync) when ``end`` has not completed yet."""
        if not (self.timing and end.timing):
            raise UntimedError("elapsed time needs two events created with timing=True")
        if not (self._recorded and end._recorded):
            raise NotReadyError("both events must be recorded before asking for elapsed time")
        if not end.done() or not self.done():
            raise NotReadyError("the stop event has not completed yet; call .sync() first (the kit never syncs for you)")
        try:
            return float(end.core - self.core)  # cuEventElapsedTime through cuda.core
        except Exception as exc:
            raise translate(exc, "cuEventElapsedTime") from exc

    def close(self) -> None:
        """Destroy the event. Idempotent."""
        self._core = None
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"<cudart_kit.Event device={self.device.ordinal} timing={self.timing} {'closed' if self._core is None else ''}>"


class TimingRecord:
    """What a launch or copy returns: what ran, on which stream, and (when timed) its events.

    ``elapsed_ms()`` never synchronizes: it raises NotReadyError while the work is in flight
    and UntimedError when the operation was not timed. ``sync()`` waits for it.
    """

    __slots__ = ("name", "stream", "start", "stop", "meta")

    def __init__(self, name: str, stream, start: Event | None = None, stop: Event | None = None, meta: dict | None = None):
        self.name = name
        self.stream = stream
        self.start = start
        self.stop = stop
        self.meta = meta or {}

    @property
    def timed(self) -> bool:
        return self.start is not None

    def done(self) -> bool:
        if self.stop is not None:
            return self.stop.done()
        return self.stream.done()

    def sync(self) -> "TimingRecord":
        if self.stop is not None:
            self.stop.sync()
        else:
            self.stream.sync()
        return self

    def elapsed_ms(self) -> float:
        if self.start is None:
            raise UntimedError(f"{self.name} was not timed: pass timed=True to get elapsed time")
        return self.start.elapsed_ms(self.stop)

    def __repr__(self) -> str:
        if self.start is not None and self.stop is not None and self.stop._core is not None:
            try:
                if self.stop.done():
                    return f"<TimingRecord {self.name} {self.elapsed_ms():.4f} ms>"
            except Exception:
                pass
            return f"<TimingRecord {self.name} (in flight)>"
        return f"<TimingRecord {self.name} untimed>"


def begin_timing(stream, timed: bool) -> "Event | None":
    """Record a start event on ``stream`` when ``timed``; pair with :func:`end_timing`."""
    if not timed:
        return None
    return Event.create(stream.device, timing=True).record(stream)


def end_timing(name: str, stream, start: "Event | None", meta: dict | None = None) -> TimingRecord:
    """Record the stop event (when timed) on the same stream and return the record."""
    stop = Event.create(stream.device, timing=True).record(stream) if start is not None else None
    return TimingRecord(name, stream, start, stop, meta)
