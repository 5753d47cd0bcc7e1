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

from . import _census

__all__ = ["census", "assert_no_leaks", "no_leaks", "LeakError"]

# Kit modules stay loaded for the process (they are cached), so they are not leaks.
_LEAK_KINDS = ("streams", "events", "graphs", "dlpack_exports", "arrays.device", "arrays.pinned", "arrays.managed")


class LeakError(AssertionError):
    """Resources created inside a guarded region are still alive after it."""


def census(*, pools: bool = False) -> dict:
    """Live kit-owned resources now, with high-water marks.

    Keys: ``streams``, ``events``, ``modules``, ``graphs`` ({"live", "high"}), ``dlpack_exports``
    (capsules handed to consumers and not yet released), ``memory`` ({kind: {"arrays", "bytes",
    "high_bytes"}}). With ``pools=True`` also each initialised device's pool statistics (reserved
    and used bytes, now and high), which reads driver attributes.
    """
    from . import _dlpack, memory

    out = _census.snapshot()
    out["dlpack_exports"] = {"live": _dlpack.live_exports()}
    out["memory"] = memory.census()
    if pools:
        from . import device

        out["pools"] = {d.ordinal: d.pool_stats() for d in list(device._devices.values())}
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
