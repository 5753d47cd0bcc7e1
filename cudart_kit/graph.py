"""CUDA graphs by stream capture: record a sequence of kit launches and copies once, replay it
many times at a fraction of the per-launch host cost.

    with ck.graph.capture(stream) as cap:
        ops.add(x, y, out, stream=cap.stream)
        ops.scale(2.0, out, out, stream=cap.stream)
    g = cap.graph
    for _ in range(1000):
        g.replay(stream)
"""

from __future__ import annotations

import weakref

from . import profiling as _prof
from . import _census
from . import _driver as drv
from .errors import ClosedError, CudaOutOfMemoryError, DeviceMismatchError, StreamError, translate
from .memory import check_open
from .memory.alloc import flush_deferred
from .stream import Stream, as_stream

__all__ = ["capture", "Capture", "Graph"]


class Graph:
    """An executable graph.

    It *holds* every array its captured work touched (dropping your references frees nothing
    under it) and *checks* them at each replay: an array closed after the capture (``close()``
    frees regardless of references) makes ``replay`` raise ClosedError naming it, before the
    graph is launched."""

    __slots__ = ("core", "device", "_arrays", "kernel_nodes_hint", "_finalizer", "_last_stream", "__weakref__")

    def __init__(self, core, device, arrays: list, kernel_nodes_hint: int):
        self.core = core
        self.device = device
        self._arrays = arrays
        self.kernel_nodes_hint = kernel_nodes_hint
        self._last_stream = None
        _census.add("graphs", 1)
        self._finalizer = weakref.finalize(self, _census.release, core, "graphs")

    def upload(self, stream) -> None:
        """Upload the graph's work ahead of the first replay (optional; replay does it lazily)."""
        if self.core is None:
            raise ClosedError("graph is closed")
        s = as_stream(stream)
        with s.device.activate():
            try:
                self.core.upload(s.core)
            except Exception as exc:
                raise translate(exc, "cuGraphUpload") from exc

    @_prof.traced("graph.replay")
    def replay(self, stream) -> None:
        """Launch the whole graph on ``stream`` (asynchronous). Raises ClosedError for a closed
        graph, a closed stream, or an array closed since the capture, DeviceMismatchError for a
        stream of another device; nothing is launched then."""
        core = self.core
        if core is None:
            raise ClosedError("graph is closed")
        s = stream
        sc = s._core if type(s) is Stream else None
        if sc is None:
            s = as_stream(stream)
            sc = s._core
        for a in self._arrays:  # one attribute read per array: close() zeroes ptr
            if not a.ptr and a.nbytes:
                check_open(a, "graph replay: an array the graph uses")  # raises ClosedError naming it
        if s is not self._last_stream and s.device is not self.device:
            raise DeviceMismatchError(f"graph replay: the graph was captured on device {self.device.ordinal}, "
                                      f"the stream is on device {s.device.ordinal}")
        try:
            core.launch(sc)
        except Exception as exc:
            err = translate(exc, "cuGraphLaunch")
            if not isinstance(err, CudaOutOfMemoryError):
                raise err from exc
            # the graph's allocation nodes draw on the graph memory pool, while the kit's arrays
            # leave freed memory cached in the device pool: hand that back and retry once
            # (cuMemPoolTrimTo releases only memory no stream still uses: no synchronization)
            try:
                with self.device.activate():
                    drv.mempool_trim(self.device.ordinal, 0)
                core.launch(sc)
            except Exception as exc2:
                raise translate(exc2, "cuGraphLaunch") from exc2
        if s is not self._last_stream:  # the arrays' use on a stream is recorded once, not per replay
            for a in self._arrays:
                a.record_stream(s)
            self._last_stream = s

    launch = replay

    def close(self) -> None:
        """Destroy the executable graph and release its arrays. Idempotent."""
        self.core = None
        self._arrays = []
        self._last_stream = None
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Capture:
    """The ``with`` target of :func:`capture`: ``.stream`` is the stream to issue work on
    while capturing; ``.graph`` is the result once the block has exited."""

    def __init__(self, stream: Stream, mode: str):
        self._parent = stream
        self._mode = mode
        self._builder = None
        self.stream: Stream | None = None
        self.graph: Graph | None = None
        self._arrays: list = []

    def __enter__(self) -> "Capture":
        parent = self._parent
        if parent.is_capturing:
            raise StreamError("this stream is already being captured")
        with parent.device.activate():
            try:
                gb = parent.core.create_graph_builder()
                gb.begin_building(self._mode)
            except Exception as exc:
                raise translate(exc, "cuStreamBeginCapture") from exc
        self._builder = gb
        cap = Stream._wrap(gb.stream, parent.device, owned=False, owner=gb)
        cap._capture = self._arrays
        self.stream = cap
        return self

    def __exit__(self, exc_type, exc, tb):
        gb = self._builder
        cap = self.stream
        cap._capture = None
        # the capture stream is only valid inside the block: work issued on it afterwards would
        # run eagerly and unrecorded, so it is closed (ClosedError naming it) from here on
        cap._core = None
        with self._parent.device.activate():
            try:
                try:
                    gb.end_building()
                finally:
                    flush_deferred()  # arrays dropped during the capture whose frees had to wait for its end
                if exc_type is not None:
                    return False
                core = gb.complete()
            except Exception as err:
                if exc_type is not None:
                    return False
                raise translate(err, "cuGraphInstantiate") from err
            finally:
                if exc_type is not None:
                    gb.close()
        # de-duplicate while keeping order: arrays are unhashable by value, use identity
        seen, arrays = set(), []
        for a in self._arrays:
            if id(a) not in seen and not a.is_closed:
                seen.add(id(a))
                arrays.append(a)
        self.graph = Graph(core, self._parent.device, arrays, len(self._arrays))
        self._arrays = []  # the graph holds them now; a Capture kept around must not
        return False


def capture(stream, *, mode: str = "thread_local") -> Capture:
    """Capture the work issued on ``capture.stream`` inside the ``with`` block into a graph.

    ``mode``: "global", "thread_local" (default: other threads may keep launching) or
    "relaxed". Inside the block allocate nothing: pass ``out=`` arrays made beforehand (the
    kit refuses allocations on a capturing stream, except the ops' own workspaces, which belong to the graph (graph allocation nodes, or buffers the
    graph holds for the Hopper matmuls' TMA staging; docs/matmul.md)). The graph keeps the arrays it uses alive and refuses to replay once
    one of them was closed. ``capture.stream`` is closed when the block exits. Raises
    ClosedError for a closed stream, StreamError for a stream already being captured."""
    if mode not in ("global", "thread_local", "relaxed"):
        raise ValueError(f"capture: mode must be 'global', 'thread_local' or 'relaxed', got {mode!r}")
    return Capture(as_stream(stream), mode)
