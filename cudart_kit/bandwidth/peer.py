"""The device-to-device matrices on the GPUs: a stream and two buffers per device, peer access
enabled for each measured pair (both grants of ``Device.enable_peer_access``, as nvbandwidth
enables context peer access), and each cell timed as back-to-back peer copies on the issuing
GPU's stream behind the benchmark's gate (:func:`.common.time_copies`). What a cell means is
:mod:`.matrix`'s.

The first copy of every cell goes through the kit's checked :func:`cudart_kit.memory.peer.copy_peer`;
the timed loop then calls cuMemcpyPeerAsync with everything resolved once. In a bidirectional
testcase each timed copy is paired with the mirror copy on the other GPU's stream, which waits
for an event recorded just before it on the measured stream: the two run side by side and the
mirror stream is held by the same gate.
"""

from __future__ import annotations

import numpy as np

from .. import _driver as drv
from .common import Options, SizeError, format_size, time_copies
from .matrix import TESTCASES, Testcase, matrix_cell, matrix_document, plan_matrix

__all__ = ["run_testcases", "count_cells"]


def _plans(opts: Options, ordinals: list[int], can_access) -> list:
    return [(TESTCASES[name], nbytes, plan_matrix(TESTCASES[name], ordinals, can_access))
            for name in opts.testcases for nbytes in opts.sizes]


def count_cells(opts: Options, ordinals: list[int], can_access) -> int:
    """How many cells :func:`run_testcases` measures (for progress displays)."""
    return sum(reason is None for _, _, plan in _plans(opts, ordinals, can_access) for reason in plan.values())


class _PeerBench:
    """Per device of the run: a kit stream and two buffers of the largest size (``into``: the
    destination of copies to the device, ``out_of``: the source of copies from it), so a cell's
    copy and its mirror never share a buffer and one allocation serves every size."""

    def __init__(self, devs: dict, nbytes: int):
        from ..memory import empty, memset
        from ..stream import Stream

        self.devs = devs
        self.streams: dict = {}
        self.into: dict = {}
        self.out_of: dict = {}
        self._owned: list = []
        self._views: dict = {}
        try:
            for o, dev in devs.items():
                free = dev.memory_info().free_bytes
                if 2 * nbytes > free:
                    raise SizeError(f"the device-to-device matrix needs {format_size(2 * nbytes)} of memory on "
                                    f"device {o} but it has {format_size(free)} free; lower --size / --end")
                s = self.streams[o] = Stream.create(dev)
                for side in (self.into, self.out_of):
                    side[o] = empty(nbytes, np.uint8, stream=s)
                    self._owned.append(side[o])
                    memset(side[o], 0x5A, stream=s)  # no first-touch cost in the first timed copy
        except BaseException:
            self.close()
            raise

    def _view(self, arr, nbytes: int):
        key = (id(arr), nbytes)
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = arr[:nbytes]
        return view

    def _prepare(self, cp, nbytes: int):
        """The checked first copy of ``cp`` (a :class:`.matrix.Copy`), then the raw one as a
        zero-argument callable with pointers and contexts resolved."""
        from ..memory.peer import copy_peer

        dst, src = self._view(self.into[cp.dst], nbytes), self._view(self.out_of[cp.src], nbytes)
        s = self.streams[cp.issuer]
        copy_peer(dst, src, stream=s).sync()
        args = (dst.ptr, self.devs[cp.dst].primary_context, src.ptr, self.devs[cp.src].primary_context,
                nbytes, s.handle)
        return lambda: drv.memcpy_peer_async(*args)

    def measure(self, tc: Testcase, row: int, column: int, nbytes: int, *, opts: Options) -> dict:
        for accessor, owner in tc.accesses(row, column):
            self.devs[accessor].enable_peer_access(self.devs[owner])
        cp = tc.copy(row, column)
        raw = self._prepare(cp, nbytes)
        s = self.streams[cp.issuer]
        mirror = tc.mirror(row, column)
        if mirror is None:
            def issue(_stream):
                raw()
        else:
            from ..event import Event

            raw_mirror = self._prepare(mirror, nbytes)
            s2 = self.streams[mirror.issuer]
            ev = Event.create(self.devs[cp.issuer], timing=False)

            def issue(_stream):
                s.record(ev)
                s2.wait(ev)  # the mirror copy starts with the timed one
                raw_mirror()
                raw()

        try:
            with self.devs[cp.issuer].activate():
                result = time_copies(issue, s, nbytes, opts, name=f"{tc.name} [{row}][{column}] {nbytes}")
        finally:
            if mirror is not None:
                self.streams[mirror.issuer].sync()
                ev.close()
        return matrix_cell(tc, row, column, nbytes, result)

    def close(self) -> None:
        try:
            for s in self.streams.values():
                s.sync()
        finally:
            self._views.clear()
            for arr in self._owned:
                arr.close()
            self._owned.clear()
            for s in self.streams.values():
                s.close()
            self.streams.clear()


def run_testcases(opts: Options, progress=None, done: int = 0) -> tuple[list[int], list[dict]]:
    """Measure ``opts.testcases`` over ``opts.peer_devices`` (None: every visible device), one
    cell at a time, and return (the ordinals, the ``testcases`` documents: one per testcase and
    size, in that order). Waived testcases (no measurable cell: one GPU, or no peer path) are
    reported without touching memory. ``progress(done + n, cell)`` after each cell.

    Enables peer access (``Device.enable_peer_access``) for every measured pair, both ways for
    bidirectional testcases; it stays enabled. Raises SizeError when the buffers do not fit."""
    from ..device import device_count, get_device

    ordinals = list(opts.peer_devices) if opts.peer_devices is not None else list(range(device_count()))
    devs = {o: get_device(o) for o in ordinals}
    plans = _plans(opts, ordinals, lambda a, b: devs[a].can_access_peer(devs[b]))
    todo = [(tc, nbytes, cell) for tc, nbytes, plan in plans for cell, reason in plan.items() if reason is None]
    results: dict = {}
    if todo:
        used = sorted({o for _, _, (r, c) in todo for o in (r, c)})
        bench = _PeerBench({o: devs[o] for o in used}, max(nbytes for _, nbytes, _ in todo))
        try:
            for n, (tc, nbytes, (r, c)) in enumerate(todo, 1):
                cell = results[(tc.name, nbytes, r, c)] = bench.measure(tc, r, c, nbytes, opts=opts)
                if progress is not None:
                    progress(done + n, {"testcase": tc.name, **cell})
        finally:
            bench.close()
    docs = []
    for tc, nbytes, plan in plans:
        cells = {(r, c): results[(tc.name, nbytes, r, c)] for (r, c), reason in plan.items() if reason is None}
        docs.append(matrix_document(tc, ordinals, nbytes, plan, cells))
    return ordinals, docs
