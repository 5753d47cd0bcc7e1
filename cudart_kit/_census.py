"""The one live-resource counter of the kit: streams, events, modules, graphs (live and high-water
counts) and kit-owned arrays per memory kind (arrays, bytes, high-water bytes).

Incremented at creation, decremented by close() or the finalizer; read by cudart_kit.census().
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_counts: dict[str, int] = {"streams": 0, "events": 0, "modules": 0, "graphs": 0}
_high: dict[str, int] = dict(_counts)

ARRAY_KINDS = ("device", "pinned", "managed")
_arrays: dict[str, list] = {k: [0, 0, 0] for k in ARRAY_KINDS}  # kind -> [arrays, bytes, high bytes]


def add(kind: str, n: int) -> None:
    with _lock:
        v = _counts[kind] = _counts.get(kind, 0) + n
        if v > _high.get(kind, 0):
            _high[kind] = v


def add_array(kind: str, nbytes: int, sign: int) -> None:
    """One kit-owned array of ``nbytes`` of memory ``kind`` allocated (+1) or freed (-1)."""
    with _lock:
        entry = _arrays[kind]
        entry[0] += sign
        entry[1] += sign * nbytes
        if entry[1] > entry[2]:
            entry[2] = entry[1]


def snapshot() -> dict:
    """{"streams" | "events" | "modules" | "graphs": {"live": int, "high": int}}."""
    with _lock:
        return {k: {"live": v, "high": _high.get(k, 0)} for k, v in _counts.items()}


def memory_snapshot() -> dict:
    """{"device" | "pinned" | "managed": {"arrays": int, "bytes": int, "high_bytes": int}}."""
    with _lock:
        return {k: {"arrays": a, "bytes": b, "high_bytes": h} for k, (a, b, h) in _arrays.items()}


def release(core, kind: str) -> None:
    """Finalizer body shared by streams, events and graphs: close the cuda.core object, never
    raise (the process may be shutting down), count it gone."""
    try:
        core.close()
    except Exception:
        pass
    finally:
        add(kind, -1)
