"""Streams: owned (created by the kit) or borrowed (adopted from another library or a raw handle).

Every asynchronous kit operation takes ``stream=`` explicitly; there is no hidden current stream.
A :class:`Stream` speaks ``__cuda_stream__`` so other libraries can use it.
"""

from __future__ import annotations

import operator
import weakref

from . import _census
from . import _driver as drv
from .device import Device, get_device
from .errors import ArgumentError, ClosedError, DeviceMismatchError, StreamError, translate
from .event import Event

__all__ = ["Stream", "as_stream", "closed_stream_error"]


def closed_stream_error(stream: "Stream") -> ClosedError:
    """The one error for a closed stream, naming it (its handle and device): every entry point that
    takes ``stream=`` raises it, through :func:`as_stream` or a fast path's own check."""
    return ClosedError(f"stream {stream!r} is closed: create a new one (Stream.create) or pass an open stream")


def foreign_handle(obj) -> int:
    """The CUstream address of anything that names a stream."""
    proto = getattr(obj, "__cuda_stream__", None)
    if proto is not None:
        value = proto() if callable(proto) else proto
        try:
            version, handle = value
        except (TypeError, ValueError):
            raise StreamError(f"{type(obj).__name__}.__cuda_stream__ returned {value!r}; expected (version, handle)") from None
        return int(handle)
    for attr in ("cuda_stream", "ptr"):  # PyTorch streams / CuPy streams
        if hasattr(obj, attr) and not isinstance(obj, (int, bool)):
            return int(getattr(obj, attr))
    handle_attr = getattr(obj, "handle", None)
    if handle_attr is not None and type(obj).__module__.startswith("cuda."):
        return int(handle_attr)
    if isinstance(obj, bool):
        raise StreamError("a bool is not a stream")
    if isinstance(obj, int):
        return obj
    raise StreamError(
        f"cannot use {type(obj).__name__} as a stream: pass a cudart_kit.Stream, an object with "
        "__cuda_stream__, a PyTorch or CuPy stream, a cuda.core Stream, or a raw CUstream handle (int)"
    )


class Stream:
    """A CUDA stream. ``Stream.create`` owns a new one; ``Stream.adopt`` borrows a foreign one.

    Owned streams are destroyed by :meth:`close` (idempotent) or, as a safety net, when
    collected; borrowed streams are never destroyed by the kit and keep their owner alive.
    """

    __slots__ = ("_core", "_handle", "device", "owned", "_owner", "_finalizer", "_capture", "__weakref__")

    def __init__(self, *_a, **_k):
        raise TypeError("use Stream.create(device) or Stream.adopt(obj)")

    @classmethod
    def _wrap(cls, core, device: Device, owned: bool, owner=None) -> "Stream":
        self = object.__new__(cls)
        self._core = core
        self._handle = int(core.handle)
        self.device = device
        self.owned = owned
        self._owner = owner
        self._finalizer = None
        if owned:
            self._finalizer = weakref.finalize(self, _census.release, core, "streams")
            _census.add("streams", 1)
        self._capture = None  # a list collecting arrays while this stream is captured into a graph
        return self

    @classmethod
    def create(cls, device: "Device | int | None" = None, *, priority: int | None = None, nonblocking: bool = True) -> "Stream":
        """A new stream on ``device``. ``priority``: within ``device.stream_priority_range``
        (numerically lower = higher priority); out-of-range values are refused, not clamped."""
        from cuda.core import StreamOptions

        if priority is not None:
            try:
                if isinstance(priority, bool):
                    raise TypeError
                priority = operator.index(priority)
            except TypeError:
                raise ArgumentError(f"Stream.create: priority must be an int, got {priority!r}") from None
        dev = get_device(device)
        with dev.activate():
            if priority is not None:
                least, greatest = drv.stream_priority_range()
                if not greatest <= priority <= least:
                    raise ValueError(
                        f"stream priority {priority} outside the device's range [{greatest} (highest), {least} (lowest)]"
                    )
            try:
                core = dev.core.create_stream(options=StreamOptions(nonblocking=nonblocking, priority=priority))
            except Exception as exc:
                raise translate(exc, "cuStreamCreateWithPriority", "creating a stream") from exc
        return cls._wrap(core, dev, owned=True)

    @classmethod
    def adopt(cls, obj, device: "Device | int | None" = None) -> "Stream":
        """Borrow a foreign stream without taking ownership.

        ``obj``: an object with ``__cuda_stream__``, a PyTorch / CuPy / cuda.core stream, or a raw
        CUstream handle (int; 0 is the legacy default stream, 2 the per-thread one). The kit keeps
        ``obj`` alive as long as this Stream and never destroys the underlying stream.
        """
        if isinstance(obj, Stream):
            return obj
        from cuda.core import Stream as CoreStream

        handle = foreign_handle(obj)
        if device is None:
            if handle in (0, 1, 2):  # default streams belong to whatever context is current
                dev = get_device(getattr(getattr(obj, "device", None), "index", None) or 0)
            else:
                dev = get_device(drv.stream_device(handle))
        else:
            dev = get_device(device)
        with dev.activate():
            try:
                core = obj if isinstance(obj, CoreStream) else CoreStream.from_handle(handle)
            except Exception as exc:
                raise translate(exc, "Stream.from_handle", "adopting a foreign stream") from exc
        return cls._wrap(core, dev, owned=False, owner=obj)

    # -- protocol & identity -------------------------------------------------------------------
    @property
    def handle(self) -> int:
        """CUstream address as an int."""
        if self._core is None:
            raise closed_stream_error(self)
        return self._handle

    @property
    def core(self):
        """The cuda.core Stream."""
        if self._core is None:
            raise closed_stream_error(self)
        return self._core

    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, self.handle)

    @property
    def is_closed(self) -> bool:
        return self._core is None

    @property
    def is_capturing(self) -> bool:
        """True while the kit is capturing this stream into a graph (see cudart_kit.graph)."""
        return self._capture is not None

    def __eq__(self, other) -> bool:
        return isinstance(other, Stream) and other._handle == self._handle and other.device == self.device

    def __hash__(self) -> int:
        return hash((self._handle, self.device.ordinal))

    def __repr__(self) -> str:
        kind = "owned" if self.owned else "borrowed"
        state = " closed" if self._core is None else ""  # the handle stays shown: errors name the stream
        return f"<cudart_kit.Stream {hex(self._handle)} {kind} device={self.device.ordinal}{state}>"

    # -- work ---------------------------------------------------------------------------------
    def sync(self) -> None:
        """Block the host until all work queued on this stream is done. Asynchronous faults of
        earlier work surface here."""
        try:
            self.core.sync()
        except Exception as exc:
            raise translate(exc, "cuStreamSynchronize") from exc

    def done(self) -> bool:
        """Non-blocking: True when every operation queued so far has completed."""
        return drv.stream_query(self.handle)

    def wait(self, other) -> None:
        """Make future work on this stream wait for an Event, or for all work queued so far on
        another stream (kit Stream or anything :meth:`adopt` accepts). Does not block the host."""
        if isinstance(other, Event):
            target = other.core
        elif isinstance(other, Stream):
            target = other.core
        else:
            target = Stream.adopt(other).core
        with self.device.activate():
            try:
                self.core.wait(target)
            except Exception as exc:
                raise translate(exc, "cuStreamWaitEvent") from exc

    def record(self, event: "Event | None" = None, *, timing: bool = False) -> Event:
        """Record an event on this stream (a new one unless ``event`` is given) and return it.
        The event captures all work queued here so far; nothing blocks the host. Raises
        ClosedError for a closed stream or event, DeviceMismatchError for an event of another
        device."""
        if event is None:
            event = Event.create(self.device, timing=timing)
        self._record_event(event)
        return event

    def _record_event(self, event: Event) -> None:
        """cuEventRecord of ``event`` on this stream: the one place an event is recorded
        (Event.record calls it too, so event.py needs no import of this module)."""
        if event.device != self.device:
            raise DeviceMismatchError(
                f"event of device {event.device.ordinal} recorded on a stream of device {self.device.ordinal}")
        core = self.core  # ClosedError naming the stream when closed
        with self.device.activate():
            try:
                core.record(event.core)
            except Exception as exc:
                raise translate(exc, "cuEventRecord") from exc
        event._recorded = True

    def add_callback(self, fn) -> list:
        """Run ``fn()`` on a driver thread once all work queued so far is done.

        ``fn`` must not call CUDA. Returns a list that collects any exception ``fn`` raises
        (exceptions cannot propagate from the driver's thread).
        """
        if not callable(fn):
            raise TypeError("add_callback needs a callable")
        errors: list = []
        with self.device.activate():
            drv.launch_host_func(self.handle, fn, errors)
        return errors

    @property
    def priority(self) -> int:
        return int(self.core.priority)

    @property
    def is_nonblocking(self) -> bool:
        return bool(self.core.is_nonblocking)

    # -- lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        """Destroy an owned stream (work already queued still completes); release a borrowed one.
        Idempotent."""
        core = self._core
        if core is None:
            return
        self._core = None
        self._owner = None
        if self._finalizer is not None:
            self._finalizer()  # closes the stream once, detaches the safety net
        # a borrowed cuda.core Stream from from_handle does not own the handle: nothing to do

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def as_stream(obj) -> Stream:
    """The one stream coercion of the kit: a kit Stream, or anything :meth:`Stream.adopt` takes.

    Raises StreamError for None (the kit never picks a stream) or a non-stream, and ClosedError
    naming the stream for a closed kit Stream. Fast paths that skip this call check
    ``stream._core is None`` themselves and raise :func:`closed_stream_error`."""
    if isinstance(obj, Stream):
        if obj._core is None:
            raise closed_stream_error(obj)
        return obj
    if obj is None:
        raise StreamError("stream= is required: cudart_kit never picks a stream for you "
                          "(create one with Stream.create(device), or pass a foreign stream)")
    hit = _adopted.get(id(obj))
    if hit is not None:
        ref, handle, dev, core = hit
        # the same live object still naming the same CUstream (so that stream still exists and
        # its device is unchanged): skip the driver query and the cuda.core wrapper (~20 us)
        if ref() is obj and foreign_handle(obj) == handle:
            return Stream._wrap(core, dev, owned=False, owner=obj)
    s = Stream.adopt(obj)
    if not isinstance(obj, int) and s._core is not obj:  # raw handles can be reused: never cached
        try:
            ref = weakref.ref(obj)
        except TypeError:
            return s
        if len(_adopted) > 1024:
            _adopted.clear()
        _adopted[id(obj)] = (ref, s._handle, s.device, s._core)
    return s


# id(foreign stream object) -> (weakref to it, its CUstream handle, device, borrowed cuda.core
# Stream). Nothing here keeps the foreign object alive: a dead or reused id is a miss, and each
# hit wraps a new kit Stream that holds the object, as Stream.adopt does.
_adopted: dict = {}
