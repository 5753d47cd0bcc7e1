"""Accounting of the kit's live resources, for framework authors who must prove they do not leak.

    snap = ck.census()        # streams, events, modules, graphs, arrays and bytes per kind, ...
    with ck.accounting.assert_no_leaks():
        run_my_integration()

A pytest fixture does the same around a test: ``from cudart_kit.accounting import no_leaks``
in a conftest.py, then request ``no_leaks`` in the tests to guard.
"""

from __future__ import annotations

import contextlib
import gc

from . import _census, _dlpack
from . import device as _device

__all__ = ["census", "assert_no_leaks", "no_leaks", "LeakError"]

# Kit modules stay loaded for the process (they are cached), so they are not leaks.
_LEAK_KINDS = ("streams", "events", "graphs", "dlpack_exports", "arrays.device", "arrays.pinned", "arrays.managed")


class LeakError(AssertionError):
    """Resources created inside a guarded region are still alive after it."""


def census(*, pools: bool = False) -> dict:
    """Live kit-owned resources now, with high-water marks. Reads counters only (no driver call)
    unless ``pools=True``. The dict, exactly::

        {
          "streams":        {"live": int, "high": int},   # owned kit Streams (adopted ones are not counted)
          "events":         {"live": int, "high": int},
          "modules":        {"live": int, "high": int},   # loaded Modules (kit modules stay cached)
          "graphs":         {"live": int, "high": int},   # executable Graphs
          "dlpack_exports": {"live": int},                # capsules handed out, not yet released
          "memory": {                                     # kit-owned arrays (views and foreign wrappers are not counted)
            "device":  {"arrays": int, "bytes": int, "high_bytes": int},
            "pinned":  {"arrays": int, "bytes": int, "high_bytes": int},
            "managed": {"arrays": int, "bytes": int, "high_bytes": int},
          },
          "pools": {ordinal: {"reserved_mem_current", "reserved_mem_high", "used_mem_current",
                              "used_mem_high", "release_threshold"}},   # only with pools=True
        }

    ``high`` / ``high_bytes`` are process-wide high-water marks. ``pools`` covers each device the
    kit has initialised and reads the driver's pool attributes."""
    out = _census.snapshot()
    out["dlpack_exports"] = {"live": _dlpack.live_exports()}
    out["memory"] = _census.memory_snapshot()
    if pools:
        out["pools"] = {d.ordinal: d.pool_stats() for d in list(_device._devices.values())}
    return out


def _flat(snap: dict) -> dict[str, int]:
    flat = {k: v["live"] for k, v in snap.items() if isinstance(v, dict) and "live" in v}
    for kind, v in snap["memory"].items():
        flat[f"arrays.{kind}"] = v["arrays"]
        flat[f"bytes.{kind}"] = v["bytes"]
    return flat


@contextlib.contextmanager
def assert_no_leaks(kinds: tuple = _LEAK_KINDS):
    """Fail (LeakError) if the block leaves more live streams, events, graphs, DLPack exports or
    arrays than it found. Garbage is collected first, so only referenced objects count."""
    gc.collect()
    before = _flat(census())
    yield
    gc.collect()
    after = _flat(census())
    grown = {k: (before.get(k, 0), after.get(k, 0)) for k in kinds if after.get(k, 0) > before.get(k, 0)}
    if grown:
        detail = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in grown.items())
        raise LeakError(f"live cudart_kit resources grew: {detail}")


try:
    import pytest as _pytest

    @_pytest.fixture
    def no_leaks():
        """pytest fixture: the test fails if it leaves kit resources alive."""
        with assert_no_leaks():
            yield
except ImportError:  # pytest is only needed by those who use the fixture
    no_leaks = None
