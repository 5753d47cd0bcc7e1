"""Chrome trace / Perfetto JSON (the "JSON Array/Object format" of chrome://tracing): the
events of one or several timelines, saving (plain or gzip), loading and validating documents.
:meth:`Timeline.to_chrome_trace <.timeline.Timeline.to_chrome_trace>` and
:meth:`~.timeline.Timeline.from_chrome_trace` are built on these."""

from __future__ import annotations

import gzip
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

from .slices import _jsonable

if TYPE_CHECKING:
    from .timeline import Timeline


def _process_events(tl: Timeline, pid: int, process_name: str, shift_us: float | None = None) -> list[dict]:
    slices = tl.slices
    if shift_us is None:
        shift_us = min([0.0] + [s.start_us for s in slices])
    tids = {t: i + 1 for i, t in enumerate(tl.tracks)}
    events: list[dict] = [
        {"ph": "M", "pid": pid, "tid": 0, "name": "process_name", "args": {"name": process_name}},
        {"ph": "M", "pid": pid, "tid": 0, "name": "process_sort_index", "args": {"sort_index": pid}},
    ]
    for track, tid in tids.items():
        events.append({"ph": "M", "pid": pid, "tid": tid, "name": "thread_name", "args": {"name": track}})
        events.append({"ph": "M", "pid": pid, "tid": tid, "name": "thread_sort_index", "args": {"sort_index": tid}})
    xs = []
    for s in slices:
        args = _jsonable(s.args)
        args["seq"] = s.seq  # the issue order survives the time sort
        xs.append({"ph": "X", "pid": pid, "tid": tids[s.track], "name": s.name, "cat": s.category,
                   "ts": round(s.start_us - shift_us, 3), "dur": round(s.dur_us, 3), "args": args})
    xs.sort(key=lambda e: (e["tid"], e["ts"], e["args"]["seq"]))
    return events + xs


def chrome_trace(timelines: "Mapping[str, Timeline] | Iterable[Timeline]") -> dict:
    """One Chrome trace holding several timelines, one process (pid 1, 2, ...) each, named by
    the mapping's keys (or the timelines' names). Each keeps its own time zero."""
    items = list(timelines.items()) if isinstance(timelines, Mapping) else [(t.name, t) for t in timelines]
    events: list[dict] = []
    for pid, (label, tl) in enumerate(items, start=1):
        events.extend(_process_events(tl, pid, str(label)))
    return {"traceEvents": events, "displayTimeUnit": "ns", "otherData": {"generator": "cudart_kit.trace"}}


def save_chrome_trace(doc: Mapping, path: "str | os.PathLike") -> Path:
    """Write a Chrome trace document as JSON (gzip when ``path`` ends in .gz); returns the path."""
    out = Path(path)
    data = json.dumps(doc, separators=(",", ":")).encode()
    if out.suffix == ".gz":
        data = gzip.compress(data)
    out.write_bytes(data)
    return out


def load_chrome_trace(path: "str | os.PathLike") -> dict:
    """Read a Chrome trace file written by :func:`save_chrome_trace` (plain or .gz)."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return json.loads(raw)


def validate_chrome_trace(doc) -> list[str]:
    """Problems found in a Chrome trace document (empty list: valid).

    Checks what viewers rely on: a ``traceEvents`` list; every event has ``ph``, ``pid``, ``tid``
    (ints) and a ``name``; "X" events have numeric ``ts`` >= 0 and ``dur`` >= 0; "M" events name a
    process or thread with ``args.name``; X events are sorted by ``ts`` within each (pid, tid)."""
    problems: list[str] = []
    if not isinstance(doc, Mapping) or not isinstance(doc.get("traceEvents"), list):
        return ["the document must be an object with a traceEvents list"]
    last: dict[tuple, float] = {}
    for i, e in enumerate(doc["traceEvents"]):
        where = f"event {i}"
        if not isinstance(e, Mapping):
            problems.append(f"{where} is not an object")
            continue
        ph = e.get("ph")
        if ph not in ("X", "M", "B", "E", "i", "I", "C"):
            problems.append(f"{where}: unknown ph {ph!r}")
        for key in ("pid", "tid"):
            if type(e.get(key)) is not int:
                problems.append(f"{where}: {key} must be an int, got {e.get(key)!r}")
        if not isinstance(e.get("name"), str):
            problems.append(f"{where}: name must be a string")
        if ph == "X":
            ts, dur = e.get("ts"), e.get("dur")
            if not isinstance(ts, (int, float)) or isinstance(ts, bool) or not math.isfinite(ts) or ts < 0:
                problems.append(f"{where}: ts must be a finite number >= 0, got {ts!r}")
                continue
            if not isinstance(dur, (int, float)) or isinstance(dur, bool) or not math.isfinite(dur) or dur < 0:
                problems.append(f"{where}: dur must be a finite number >= 0, got {dur!r}")
            key = (e.get("pid"), e.get("tid"))
            if ts < last.get(key, -math.inf):
                problems.append(f"{where}: ts {ts} before the previous event of pid {key[0]} tid {key[1]}")
            last[key] = ts
            if "args" in e and not isinstance(e["args"], Mapping):
                problems.append(f"{where}: args must be an object")
        elif ph == "M":
            if e.get("name") in ("process_name", "thread_name") and not isinstance(e.get("args", {}).get("name"), str):
                problems.append(f"{where}: {e.get('name')} needs args.name")
    try:
        json.dumps(doc)
    except (TypeError, ValueError) as exc:
        problems.append(f"not JSON-serializable: {exc}")
    return problems
