"""The :class:`Timeline`: timed work (TimingRecords) and ready-made slices collected, resolved
onto one time axis per device (a common origin event), kept as plain data; its Chrome-trace and
Gantt exports are :mod:`.chrome`'s and :mod:`.gantt`'s."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Mapping

from ..errors import DeviceMismatchError, NotReadyError, UntimedError
from ..stream import as_stream
from .chrome import _process_events, save_chrome_trace
from .gantt import draw_gantt, require_matplotlib, save_figure
from .slices import Slice


def _category_of(record) -> str:
    meta = getattr(record, "meta", None) or {}
    if "direction" in meta:
        return str(meta["direction"])
    if "grid" in meta or getattr(record, "name", "") not in ("copy", "fill", "memset"):
        return "kernel"
    return "other"


def _stream_key(stream) -> tuple:
    """(device ordinal, CUstream handle) of a kit Stream (what TimingRecords carry) or of any
    stream-like object, adopted through the kit."""
    ordinal = getattr(getattr(stream, "device", None), "ordinal", None)
    if isinstance(ordinal, int) and isinstance(getattr(stream, "handle", None), int):
        return (ordinal, stream.handle)
    s = as_stream(stream)
    return (s.device.ordinal, s.handle)


class _Pending:
    __slots__ = ("record", "track", "name", "category", "args", "seq")

    def __init__(self, record, track, name, category, args, seq):
        self.record = record
        self.track = track
        self.name = name
        self.category = category
        self.args = args
        self.seq = seq


class Timeline:
    """Collects timed work (TimingRecords) and ready-made slices; resolves records into
    :class:`Slice` objects on a common time axis; exports them.

    Typical use::

        tl = Timeline("my pipeline")
        tl.mark_origin(s0, others=[s1])          # before the work: s1 waits for the origin
        tl.add(ck.copy(d, h, stream=s0, timed=True), name="H2D")
        tl.add(kernel.launch(g, b, d, stream=s1, timed=True))
        tl.sync()                                  # or sync the streams yourself
        tl.save("trace.json")                      # open in https://ui.perfetto.dev
        tl.plot_gantt("gantt.png")                 # needs matplotlib

    Without an origin, the first record added is the reference and the driver's signed
    differences between events place the others; a common origin (``mark_origin``) is the
    documented way and the one to use when streams start at different times. One origin per
    device: events of different devices cannot be compared.
    """

    def __init__(self, name: str = "cudart_kit", *, origin=None):
        self.name = name
        self._origins: dict[int, object] = {}
        self._references: dict[int, object] = {}
        self._pending: list[_Pending] = []
        self._slices: list[Slice] = []
        self._tracks: dict[str, int] = {}  # track -> order of first appearance
        self._stream_tracks: dict[tuple, str] = {}
        self._seq = 0
        if origin is not None:
            self.set_origin(origin)

    # -- origin ---------------------------------------------------------------------------------
    def set_origin(self, event) -> None:
        """Use ``event`` (a timing Event already recorded before the work) as time zero of its device."""
        if not getattr(event, "timing", False):
            raise UntimedError("a timeline origin must be an event created with timing=True")
        self._origins[event.device.ordinal] = event

    def mark_origin(self, stream, *, others: Iterable = ()):
        """Record time zero on ``stream`` and make every stream in ``others`` wait for it.

        Call it before queuing the work to be traced; neither call blocks the host. Returns the
        origin Event."""
        s = as_stream(stream)
        origin = s.record(timing=True)
        for other in others:
            o = as_stream(other)
            if o.device != s.device:
                raise DeviceMismatchError(
                    f"origin on device {s.device.ordinal} cannot order a stream of device {o.device.ordinal}")
            if o != s:
                o.wait(origin)
        self.set_origin(origin)
        return origin

    def origin(self, device: int = 0):
        """The origin event of ``device`` (an ordinal), or None."""
        return self._origins.get(int(device))

    # -- collecting -------------------------------------------------------------------------------
    def name_stream(self, stream, track: str) -> None:
        """Show work recorded on ``stream`` (a kit Stream or anything ``Stream.adopt`` takes)
        under the track name ``track``."""
        self._stream_tracks[_stream_key(stream)] = str(track)
        self._track_index(str(track))

    def _track_for(self, stream) -> str:
        key = _stream_key(stream)
        track = self._stream_tracks.get(key)
        if track is None:
            n = sum(1 for k in self._stream_tracks if k[0] == key[0])
            track = self._stream_tracks[key] = f"device {key[0]} stream {n}"
        return track

    def _track_index(self, track: str) -> int:
        idx = self._tracks.get(track)
        if idx is None:
            idx = self._tracks[track] = len(self._tracks)
        return idx

    def add(self, record, *, track: str | None = None, name: str | None = None,
            category: str | None = None, args: Mapping | None = None) -> None:
        """Collect a timed TimingRecord (from ``launch``, ``copy``, an op... with ``timed=True``).

        ``track`` defaults to the record's stream (see :meth:`name_stream`); ``name`` to the
        record's name (a copy's direction for copies); ``category`` to H2D / D2H / D2D for copies
        and ``kernel`` for launches. ``args`` is merged over the record's meta. Nothing is read
        from the GPU until the slices are asked for."""
        if record is None:
            raise TypeError("Timeline.add needs a TimingRecord; an op called without timed=True returns none")
        if not getattr(record, "timed", False):
            raise UntimedError(f"{getattr(record, 'name', record)!r} was not timed: pass timed=True to the "
                               "launch or copy to put it on a timeline")
        meta = dict(getattr(record, "meta", None) or {})
        cat = category or _category_of(record)
        default_name = meta.get("direction") if record.name == "copy" else record.name
        merged = {**meta, **dict(args or {})}
        tr = str(track) if track is not None else self._track_for(record.stream)
        self._track_index(tr)
        self._pending.append(_Pending(record, tr, str(name or default_name or record.name), cat, merged, self._seq))
        self._seq += 1

    def extend(self, records: Iterable, **kwargs) -> None:
        """:meth:`add` each record with the same keyword arguments."""
        for r in records:
            self.add(r, **kwargs)

    def add_slice(self, track: str, name: str, start_us: float, dur_us: float, *,
                  category: str = "other", args: Mapping | None = None) -> Slice:
        """Add a slice measured elsewhere (microseconds from the same origin)."""
        start_us, dur_us = float(start_us), float(dur_us)
        if not (math.isfinite(start_us) and math.isfinite(dur_us)):
            raise ValueError(f"slice {name!r}: start and duration must be finite, got {start_us}, {dur_us}")
        if dur_us < 0:
            raise ValueError(f"slice {name!r}: negative duration {dur_us} us")
        sl = Slice(str(track), str(name), start_us, dur_us, str(category), dict(args or {}), self._seq)
        self._seq += 1
        self._track_index(sl.track)
        self._slices.append(sl)
        return sl

    @classmethod
    def from_slices(cls, slices: Iterable, name: str = "cudart_kit") -> "Timeline":
        """A timeline from recorded data: Slice objects, dicts with track/name/start_us/dur_us
        (category and args optional) or sequences ``(track, name, start_us, dur_us[, category[, args]])``."""
        tl = cls(name)
        tl._add_items(slices)
        return tl

    def _add_items(self, slices: Iterable) -> None:
        for item in slices:
            if isinstance(item, Slice):
                self.add_slice(item.track, item.name, item.start_us, item.dur_us, category=item.category,
                               args=item.args)
            elif isinstance(item, Mapping):
                try:
                    self.add_slice(item["track"], item["name"], item["start_us"], item["dur_us"],
                                   category=item.get("category", "other"), args=item.get("args"))
                except KeyError as exc:
                    raise ValueError(f"slice {dict(item)!r} lacks {exc.args[0]!r}") from None
            else:
                seq = list(item)
                if not 4 <= len(seq) <= 6:
                    raise ValueError(f"slice {item!r}: expected (track, name, start_us, dur_us[, category[, args]])")
                self.add_slice(seq[0], seq[1], seq[2], seq[3],
                               category=seq[4] if len(seq) > 4 else "other", args=seq[5] if len(seq) > 5 else None)

    # -- resolving --------------------------------------------------------------------------------
    def done(self) -> bool:
        """Non-blocking: True when every collected record has completed."""
        return all(p.record.done() for p in self._pending)

    def sync(self) -> "Timeline":
        """Block the host until every collected record has completed (this call synchronizes)."""
        for p in self._pending:
            p.record.sync()
        return self

    def resolve(self) -> "Timeline":
        """Turn collected records into slices. Never synchronizes: raises NotReadyError while any
        record is in flight (call :meth:`sync` first)."""
        if not self._pending:
            return self
        for p in self._pending:
            if not p.record.done():
                raise NotReadyError(f"{p.name!r} on {p.track!r} has not completed yet; call Timeline.sync() "
                                    "or synchronize its stream first (the kit never syncs for you)")
        resolved = []
        for p in self._pending:
            rec = p.record
            dev = rec.start.device.ordinal
            ref = self._origins.get(dev) or self._references.setdefault(dev, rec.start)
            start_us = float(ref.elapsed_ms(rec.start)) * 1e3
            dur_us = max(0.0, float(rec.start.elapsed_ms(rec.stop)) * 1e3)
            resolved.append(Slice(p.track, p.name, start_us, dur_us, p.category, p.args, p.seq))
        self._pending.clear()
        self._slices.extend(resolved)
        self._slices.sort(key=lambda s: s.seq)
        return self

    @property
    def slices(self) -> list[Slice]:
        """Every slice in the order added (resolving collected records; see :meth:`resolve`)."""
        self.resolve()
        return list(self._slices)

    @property
    def tracks(self) -> list[str]:
        """Track names in order of first appearance."""
        return sorted(self._tracks, key=self._tracks.get)

    def by_track(self) -> dict[str, list[Slice]]:
        """Slices per track, each list in the order added."""
        out: dict[str, list[Slice]] = {t: [] for t in self.tracks}
        for s in self.slices:
            out[s.track].append(s)
        return out

    def span_us(self) -> tuple[float, float]:
        """(earliest start, latest end) in microseconds; (0, 0) when empty."""
        sl = self.slices
        if not sl:
            return (0.0, 0.0)
        return (min(s.start_us for s in sl), max(s.end_us for s in sl))

    def __len__(self) -> int:
        return len(self._slices) + len(self._pending)

    def __repr__(self) -> str:
        return f"<cudart_kit.Timeline {self.name!r}: {len(self)} slices on {len(self._tracks)} tracks>"

    def snapshot(self) -> "Timeline":
        """A copy holding only the resolved slices and the track order: no events or streams,
        so it can be kept, pickled or serialized after the GPU objects are gone. Resolves first
        (NotReadyError while work is in flight)."""
        tl = Timeline(self.name)
        for t in self.tracks:
            tl._track_index(t)
        for s in self.slices:
            tl._slices.append(s)
        tl._seq = self._seq
        return tl

    # -- plain data ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-serializable: ``{"name", "tracks", "slices": [[track, name, start_us, dur_us, category, args]]}``."""
        return {"name": self.name, "tracks": self.tracks, "slices": [s.to_list() for s in self.slices]}

    @classmethod
    def from_dict(cls, doc: Mapping) -> "Timeline":
        """Inverse of :meth:`to_dict`."""
        tl = cls(doc.get("name", "cudart_kit"))
        for t in doc.get("tracks", []):  # the recorded track order, empty tracks included
            tl._track_index(str(t))
        tl._add_items(doc.get("slices", []))
        return tl

    # -- Chrome trace / Perfetto ----------------------------------------------------------------------
    def to_chrome_trace(self, *, pid: int = 1, process_name: str | None = None) -> dict:
        """Chrome trace JSON (the "JSON Array/Object format" read by chrome://tracing and Perfetto).

        One process (``pid``) named after the timeline, one thread (``tid`` 1, 2, ...) per track,
        named by "M" metadata events; one "X" complete event per slice with ``ts`` and ``dur`` in
        microseconds, sorted by time within each track. Times are shifted so none is negative."""
        events = _process_events(self, pid, process_name or self.name)
        return {"traceEvents": events, "displayTimeUnit": "ns",
                "otherData": {"generator": "cudart_kit.trace", "timeline": self.name}}

    def save(self, path: "str | os.PathLike") -> Path:
        """Write :meth:`to_chrome_trace` to ``path`` (gzip-compressed when it ends in .gz)."""
        return save_chrome_trace(self.to_chrome_trace(), path)

    @classmethod
    def from_chrome_trace(cls, doc: Mapping, *, pid: int | None = None) -> "Timeline":
        """Read the slices of one process (the first one unless ``pid``) back from a Chrome trace."""
        events = doc["traceEvents"] if isinstance(doc, Mapping) else list(doc)
        pids = [e.get("pid") for e in events if e.get("ph") == "X"]
        if pid is None:
            pid = pids[0] if pids else 1
        names = {}
        order = {}
        pname = "cudart_kit"
        for e in events:
            if e.get("pid") != pid or e.get("ph") != "M":
                continue
            if e.get("name") == "thread_name":
                names[e.get("tid")] = e.get("args", {}).get("name", str(e.get("tid")))
            elif e.get("name") == "thread_sort_index":
                order[e.get("tid")] = e.get("args", {}).get("sort_index", 0)
            elif e.get("name") == "process_name":
                pname = e.get("args", {}).get("name", pname)
        tl = cls(pname)
        for tid in sorted(names, key=lambda t: (order.get(t, t), t)):
            tl._track_index(names[tid])
        xs = sorted((e for e in events if e.get("pid") == pid and e.get("ph") == "X"),
                    key=lambda e: (e.get("args", {}).get("seq", 0), e["ts"]))
        for e in xs:
            args = {k: v for k, v in e.get("args", {}).items() if k != "seq"}
            tl.add_slice(names.get(e["tid"], str(e["tid"])), e["name"], e["ts"], e["dur"],
                         category=e.get("cat", "other"), args=args)
        return tl

    # -- plot -------------------------------------------------------------------------------------------
    def plot_gantt(self, path: "str | os.PathLike", *, title: str | None = None, width_in: float = 11.0) -> Path:
        """Draw one row per track, one bar per slice, coloured by category, into an image file
        (PNG, SVG, PDF: by the suffix). Needs matplotlib (``pip install 'cudart-kit[plot]'``)."""
        plt = require_matplotlib()
        tracks = self.tracks
        fig, ax = plt.subplots(figsize=(width_in, 1.2 + 0.45 * max(1, len(tracks))))
        try:
            draw_gantt(ax, self, title=title if title is not None else self.name)
            out = save_figure(fig, path)
        finally:
            plt.close(fig)
        return out
