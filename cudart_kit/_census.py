"""Counters of live kit-owned resources (streams, events, modules, graphs, DLPack exports).

Incremented at creation, decremented by close() or the finalizer; read by cudart_kit.census().
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_counts: dict[str, int] = {"streams": 0, "events": 0, "modules": 0, "graphs": 0}
_high: dict[str, int] = dict(_counts)


def add(kind: str, n: int) -> None:
    with _lock:
        v = _counts[kind] = _counts.get(kind, 0) + n
        if v > _high.get(kind, 0):
            _high[kind] = v


def snapshot() -> dict:
    with _lock:
        return {k: {"live": v, "high": _high.get(k, 0)} for k, v in _counts.items()}


def release(core, kind: str) -> None:
    """Finalizer body shared by streams, events and graphs: close the cuda.core object, never
    raise (the process may be shutting down), count it gone."""
    try:
        core.close()
    except Exception:
        pass
    finally:
        add(kind, -1)
