"""Arrays across processes (cudart_kit.memory.ipc) on the GPU, with spawned children: a child
fills an imported array and the parent reads it after the child's signal; a child reads what
the parent wrote, views included (strided, reversed, transposed, blocks), at awkward sizes;
signals order work queued after the export; 100 round trips grow neither device memory, the
pool, the census nor the open file descriptors; an importer's close is idempotent and only
unmaps; the exporter may drop its array while a child holds it; a crashed child neither leaks
nor hangs the exporter; bad and stale descriptors give kit errors (tried in a child, so a
driver crash would fail the test instead of killing the suite).

Every child is a module-level function run by ``_run_child`` in a ``spawn`` context; every
message and join has a timeout, and a child is killed when the test fails. No sleeps: the
order between processes comes from the IPC events alone.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import pickle
import traceback

import numpy as np
import pytest

import cudart_kit as ck
from cudart_kit.errors import ArgumentError, CudaKitError
from cudart_kit.memory import ipc

CTX = mp.get_context("spawn")
TIMEOUT_S = 180  # per message and per join (a spawned child needs seconds to start CUDA)
MIB = 1 << 20


def _run_child(target, conn, *args):
    try:
        target(conn, *args)
    except BaseException:  # noqa: BLE001 - every failure goes to the parent
        conn.send(("error", traceback.format_exc()))
        raise


class Child:
    """``target(conn, *args)`` in a spawned process; ``recv`` / ``send`` over a Pipe. On leaving
    the block the child is joined (killed at once when the test failed) and its exit code checked."""

    def __init__(self, target, *args, exitcode=0):
        self.conn, self._child_conn = CTX.Pipe()
        self.proc = CTX.Process(target=_run_child, args=(target, self._child_conn, *args), daemon=True)
        self.exitcode = exitcode

    def __enter__(self) -> "Child":
        self.proc.start()
        self._child_conn.close()  # the child has its own: a dead child is then an EOF here at once
        return self

    def recv(self):
        if not self.conn.poll(TIMEOUT_S):
            raise AssertionError(f"the child sent nothing for {TIMEOUT_S} s (exit code {self.proc.exitcode})")
        try:
            msg = self.conn.recv()
        except EOFError:
            self.proc.join(10)
            raise AssertionError(f"the child died without a word (exit code {self.proc.exitcode})") from None
        if isinstance(msg, tuple) and msg and msg[0] == "error":
            pytest.fail(f"the child failed:\n{msg[1]}")
        return msg

    def send(self, msg) -> None:
        self.conn.send(msg)

    def join(self) -> int:
        self.proc.join(TIMEOUT_S)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(10)
            raise AssertionError(f"the child did not exit within {TIMEOUT_S} s")
        return self.proc.exitcode

    def __exit__(self, exc_type, *_):
        if exc_type is not None:
            self.proc.kill()
            self.proc.join(10)
            return False
        code = self.join()
        assert code == self.exitcode, f"the child exited with {code}, expected {self.exitcode}"
        return False


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _live() -> dict:
    gc.collect()
    c = ck.census()
    return {"events": c["events"]["live"], "arrays": c["memory"]["device"]["arrays"],
            "bytes": c["memory"]["device"]["bytes"]}


# ---- children --------------------------------------------------------------------------------

def _child_fill(conn, desc, seed):
    s = ck.Stream.create(0)
    a = ipc.import_array(desc, stream=s)
    h = np.random.default_rng(seed).standard_normal(a.shape).astype(a.dtype)
    a.copy_from(h, stream=s)
    sig = ipc.close_import(a, stream=s)  # after the copy and the unmap
    conn.send(("filled", sig))
    assert conn.recv() == "bye"  # the parent has waited on sig: it may go now


def _child_read(conn):
    s = ck.Stream.create(0)
    descs = conn.recv()
    out, sigs = [], []
    for d in descs:
        imp = ipc.import_array(d, stream=s)
        root = imp.base if imp.base is not None else imp
        out.append((imp.shape, imp.strides, str(imp.dtype), imp.ptr - root.ptr, root.shape, str(root.dtype),
                    imp.to_numpy(stream=s)))
        sigs.append(ipc.close_import(imp, stream=s))
    conn.send(("read", out, sigs))
    assert conn.recv() == "bye"


def _child_wait_then_read(conn, seed, n):
    s = ck.Stream.create(0)
    desc, later = conn.recv()
    a = ipc.import_array(desc, stream=s)  # waits for the export only
    ipc.wait(later, stream=s)             # and for the writes the parent queued after it
    got = a.to_numpy(stream=s)
    want = np.random.default_rng(seed).random(n, dtype=np.float32)
    conn.send(("read", int(np.count_nonzero(got != want)), ipc.close_import(a, stream=s)))
    assert conn.recv() == "bye"


def _child_server(conn):
    """Round trips: import, read, write back, close; report what this process holds."""
    dev = ck.get_device(0)
    s = ck.Stream.create(dev)
    prev = None
    while (desc := conn.recv()) is not None:
        if prev is not None:
            prev.close()  # the parent waited on it before sending this request
        a = ipc.import_array(desc, stream=s)
        ends = a[:: a.size - 1].to_numpy(stream=s)
        a.fill(float(ends[0]) + 0.5, stream=s)
        prev = ipc.close_import(a, stream=s)
        del a
        live = _live()
        conn.send(("ok", ends.tolist(), prev, live["arrays"], live["events"], _fds(), dev.memory_info().free_bytes))
    if prev is not None:
        prev.close()
    conn.send(("bye", _live()))


def _child_close_twice(conn, desc):
    s = ck.Stream.create(0)
    a = ipc.import_array(desc, stream=s)
    v = a[2:10]
    first = v.to_numpy(stream=s)
    a.close()
    a.close()  # idempotent
    v.close()
    refused = False
    try:
        v.to_numpy(stream=s)
    except ck.ClosedError:
        refused = True
    ipc.close_import(v, stream=s).close()  # after close(): still a signal, no second unmap
    sig = ipc.close_import(a, stream=s)
    conn.send(("closed", first, a.is_closed and v.is_closed, refused, _live()["arrays"], sig))
    assert conn.recv() == "bye"


def _child_hold_then_read(conn, desc):
    s = ck.Stream.create(0)
    imp = ipc.import_array(desc, stream=s)
    s.sync()
    conn.send(("imported",))
    assert conn.recv() == "read"  # meanwhile the parent dropped its array and allocated more
    conn.send(("read", imp.to_numpy(stream=s), ipc.close_import(imp, stream=s)))
    assert conn.recv() == "bye"


def _child_crash(conn, desc):
    s = ck.Stream.create(0)
    a = ipc.import_array(desc, stream=s)
    a.fill(7.0, stream=s)
    s.sync()
    conn.send(("imported",))
    os._exit(1)  # a crash: no close, no signal, no interpreter shutdown


def _child_bad(conn, cases, good):
    """Try each (name, descriptor) and report the error; then import ``good`` (if any)."""
    s = ck.Stream.create(0)
    out = []
    for name, d in cases:
        try:
            imp = ipc.import_array(d, stream=s)
        except Exception as exc:  # noqa: BLE001 - reported
            out.append((name, type(exc).__name__, isinstance(exc, CudaKitError), str(exc)))
        else:
            out.append((name, None, False, f"imported: shape {imp.shape} first {float(imp[:1].to_numpy(stream=s)[0])}"))
            ipc.close_import(imp, stream=s).close()
            s.sync()
    sig = None
    if good is not None:
        imp = ipc.import_array(good, stream=s)
        out.append(("good", None, True, float(imp[:1].to_numpy(stream=s)[0])))
        sig = ipc.close_import(imp, stream=s)
    conn.send(("results", out, sig))
    assert conn.recv() == "bye"


def _child_export_then_exit(conn):
    s = ck.Stream.create(0)
    a = ipc.empty_shareable(4096, np.float32, stream=s)
    a.fill(1.5, stream=s)
    share = ipc.export(a, stream=s)
    conn.send(("desc", share.descriptor))
    assert conn.recv() == "received"
    # returns with the export pinned: the process exits and its memory goes with it


# ---- tests -----------------------------------------------------------------------------------

def test_child_fills_parent_reads_after_its_signal(stream, rng):
    n = 1000003
    a = ipc.empty_shareable(n, np.float64, stream=stream)
    a.fill(np.nan, stream=stream)  # poison: every element must be written by the child
    share = ipc.export(a, stream=stream)
    seed = int(rng.integers(2**31))
    with Child(_child_fill, share.descriptor, seed) as child:  # the descriptor as a Process argument
        kind, sig = child.recv()
        share.release(sig, stream=stream)  # stream waits for the child's copy and unmap
        got = a.to_numpy(stream=stream)
        child.send("bye")
    np.testing.assert_array_equal(got, np.random.default_rng(seed).standard_normal(n))
    a.close()


def test_child_reads_what_the_parent_wrote_views_included(stream, rng):
    h = rng.standard_normal(1000003).astype(np.float32)
    h2 = rng.standard_normal((1001, 999))
    a = ipc.empty_shareable(h.shape, np.float32, stream=stream)
    b = ipc.empty_shareable(h2.shape, np.float64, stream=stream)
    a.copy_from(h, stream=stream)
    b.copy_from(h2, stream=stream)
    cases = [(a, h), (a[3:-5:2], h[3:-5:2]), (a[::-3], h[::-3]), (b.T, h2.T), (b[10:-10, 7:500:3], h2[10:-10, 7:500:3]),
             (a[17:17], h[17:17])]
    shares = [ipc.export(v, stream=stream) for v, _ in cases]
    with Child(_child_read) as child:
        child.send([sh.descriptor for sh in shares])  # through a Pipe: the resource sharer path
        kind, out, sigs = child.recv()
        for sh, sig in zip(shares, sigs):
            sh.release(sig, stream=stream)
        child.send("bye")
    for (v, ref), (shape, strides, dtype, offset, root_shape, root_dtype, data) in zip(cases, out):
        root = v.base if v.base is not None else v
        assert (shape, strides, dtype, offset) == (v.shape, v.strides, str(v.dtype), v.ptr - root.ptr)
        assert (root_shape, root_dtype) == (root.shape, str(root.dtype))
        np.testing.assert_array_equal(data, ref)
    stream.sync()
    assert ipc.pool_stats(stream.device)["used_mem_current"] >= h.nbytes + h2.nbytes
    a.close()
    b.close()


def test_signal_orders_work_queued_after_the_export(stream, rng):
    n = 1 << 24  # 64 MiB: the copy is still running when the child's wait is queued
    seed = int(rng.integers(2**31))
    a = ipc.empty_shareable(n, np.float32, stream=stream)
    a.fill(-1.0, stream=stream)
    share = ipc.export(a, stream=stream)  # its event precedes the writes below
    a.copy_from(np.random.default_rng(seed).random(n, dtype=np.float32), stream=stream)
    later = ipc.signal(stream=stream)
    with Child(_child_wait_then_read, seed, n) as child:
        child.send((share.descriptor, later))
        kind, wrong, done = child.recv()
        share.release(done, stream=stream)
        child.send("bye")
    assert wrong == 0
    later.close()
    a.close()


def test_round_trips_grow_nothing(device, stream):
    n, rounds, warm = 1 << 18, 100, 10
    before = _live()
    with Child(_child_server) as child:
        base = child_base = None
        for i in range(rounds):
            a = ipc.empty_shareable(n, np.float32, stream=stream)
            a.fill(float(i), stream=stream)
            share = ipc.export(a, stream=stream)
            child.send(share.descriptor)
            kind, ends, sig, c_arrays, c_events, c_fds, c_free = child.recv()
            assert ends == [i, i] and c_arrays == 0 and c_events == 1, (i, ends, c_arrays, c_events)
            share.release(sig, stream=stream)
            back = a[:: n - 1].to_numpy(stream=stream)  # after the child's writes (the signal)
            assert back.tolist() == [i + 0.5, i + 0.5]
            a.close()
            del share, sig
            if i == warm:
                stream.sync()
                base = (_live(), ipc.pool_stats(device)["used_mem_current"], device.memory_info().free_bytes, _fds())
                child_base = (c_fds, c_free)
        child.send(None)
        kind, child_final = child.recv()
        stream.sync()
        live, used, free, fds = _live(), ipc.pool_stats(device)["used_mem_current"], device.memory_info().free_bytes, _fds()
    assert live == base[0] == before, (live, base[0], before)
    assert used == base[1], f"the shareable pool grew: {base[1]} -> {used} bytes in use"
    assert free >= base[2] - 64 * MIB, f"device memory shrank by {(base[2] - free) / MIB:.1f} MiB"
    assert fds <= base[3] + 2, f"open file descriptors grew: {base[3]} -> {fds}"
    assert c_fds <= child_base[0] + 2, f"the child's open file descriptors grew: {child_base[0]} -> {c_fds}"
    assert c_free >= child_base[1] - 64 * MIB
    assert child_final["arrays"] == 0 and child_final["events"] == 0, child_final


def test_importer_close_is_idempotent_and_only_unmaps(stream, rng):
    h = rng.standard_normal(4099).astype(np.float32)
    a = ipc.empty_shareable(h.shape, np.float32, stream=stream)
    a.copy_from(h, stream=stream)
    share = ipc.export(a, stream=stream)
    stream.sync()
    used = ipc.pool_stats(stream.device)["used_mem_current"]
    with Child(_child_close_twice, share.descriptor) as child:
        kind, first, closed, refused, arrays, sig = child.recv()
        share.release(sig, stream=stream)
        child.send("bye")
    np.testing.assert_array_equal(first, h[2:10])
    assert closed and refused and arrays == 0
    np.testing.assert_array_equal(a.to_numpy(stream=stream), h)  # the exporter's memory is untouched
    assert ipc.pool_stats(stream.device)["used_mem_current"] == used
    a.close()


def test_exporter_drops_its_array_while_the_child_holds_it(stream, rng):
    n = 1000003
    h = rng.standard_normal(n)
    a = ipc.empty_shareable(n, np.float64, stream=stream)
    a.copy_from(h, stream=stream)
    share = ipc.export(a[3:-5:2], stream=stream)
    with Child(_child_hold_then_read, share.descriptor) as child:
        child.recv()
        arrays = _live()["arrays"]
        a.close()  # refused here at once; the memory stays for the child
        assert a.is_closed and _live()["arrays"] == arrays
        others = [ipc.empty_shareable(n, np.float64, stream=stream) for _ in range(3)]
        for o in others:  # were the block freed, one of these would now overwrite it
            o.fill(-7.0, stream=stream)
        stream.sync()
        arrays = _live()["arrays"]
        child.send("read")
        kind, data, sig = child.recv()
        share.release(sig, stream=stream)  # now the memory is freed, after the child's unmap
        stream.sync()
        child.send("bye")
    np.testing.assert_array_equal(data, h[3:-5:2])
    assert _live()["arrays"] == arrays - 1
    for o in others:
        o.close()


def test_a_crashed_importer_neither_leaks_nor_hangs(device, stream):
    n = 1 << 20
    stream.sync()
    used = ipc.pool_stats(device)["used_mem_current"] if ipc.pool_stats(device) else 0
    before = _live()
    a = ipc.empty_shareable(n, np.float32, stream=stream)
    a.fill(0.0, stream=stream)
    share = ipc.export(a, stream=stream)
    with Child(_child_crash, share.descriptor, exitcode=1) as child:
        child.recv()
        assert child.join() == 1
    share.release()  # no signal will come: the importer is gone, and the driver unmapped its import
    np.testing.assert_array_equal(a.to_numpy(stream=stream), np.full(n, 7.0, np.float32))  # its write landed
    a.close()
    b = ipc.empty_shareable(n, np.float32, stream=stream)
    b.fill(3.0, stream=stream)
    assert b[:4].to_numpy(stream=stream).tolist() == [3.0] * 4
    b.close()
    stream.sync()
    assert _live() == before
    assert ipc.pool_stats(device)["used_mem_current"] == used


def test_bad_and_stale_descriptors_give_kit_errors(stream):
    n = 1000
    a = ipc.empty_shareable(n, np.float32, stream=stream)
    a.fill(2.5, stream=stream)
    share = ipc.export(a, stream=stream)
    d = share.descriptor
    B, E = type(d.buffer), type(d.ready)  # cuda.core's descriptor classes, reached through objects
    payload, size = d.buffer.__reduce__()[1]
    stale_arr = ipc.empty_shareable(n, np.float32, stream=stream)
    stale = ipc.export(stale_arr, stream=stream)
    stale_desc = stale.descriptor
    stale.release()  # released and freed before anyone imported it
    stale_arr.close()
    stream.sync()
    cases = [
        ("not a descriptor", b"\x00" * 64, "ArgumentError"),
        ("other version", d._replace(version=99), "IPCError"),
        ("truncated buffer payload", d._replace(buffer=B._init(payload[:10], size)), "IPCError"),
        ("view out of bounds", d._replace(offset=size), "IPCError"),
        ("another device", d._replace(device_uuid="GPU-00000000-0000-0000-0000-000000000000"), "DeviceMismatchError"),
        ("garbage buffer payload", d._replace(buffer=B._init(os.urandom(64), size)), None),
        ("garbage event payload", d._replace(ready=E._init(os.urandom(64), False)), None),
        ("size beyond the allocation", d._replace(buffer=B._init(payload, size * 64), shape=(n * 64,),
                                                  root_shape=(n * 64,)), None),
        ("stale: released and freed", stale_desc, None),
    ]
    with Child(_child_bad, [(name, desc) for name, desc, _ in cases], d) as child:
        kind, out, sig = child.recv()
        share.release(sig, stream=stream)
        child.send("bye")
    got = {name: (cls, is_kit, msg) for name, cls, is_kit, msg in out}
    for name, _, want in cases:
        cls, is_kit, msg = got[name]
        if name.startswith("stale"):
            # Measured on an H200 (driver 580): a released, freed block still maps (the driver
            # cannot tell a stale descriptor; docs/multigpu.md says so). A kit error or that, no crash.
            assert is_kit or msg.startswith("imported: shape (1000,)"), f"{name}: {cls}: {msg}"
            continue
        assert is_kit, f"{name}: {cls}: {msg}"
        assert want is None or cls == want, f"{name}: {cls}: {msg}"
    assert got["good"][2] == 2.5  # after all that, the real descriptor still imports
    a.close()


def test_descriptor_of_an_exited_exporter(stream):
    with Child(_child_export_then_exit) as exporter:
        kind, desc = exporter.recv()  # unpickled here: the pool's fd is ours now
        exporter.send("received")
    assert exporter.proc.exitcode == 0
    with Child(_child_bad, [("exporter exited", desc)], None) as child:  # forwarded to another child
        kind, out, _ = child.recv()
        child.send("bye")
    (name, cls, is_kit, msg), = out
    # Measured on an H200 (driver 580): the import succeeds and reads the exporter's last values.
    # The pool's file descriptor, held by this process, keeps the physical memory alive after
    # the exporter's exit; nobody can reuse it. Either that or a kit error, never a crash.
    assert is_kit or msg == "imported: shape (4096,) first 1.5", f"{cls}: {msg}"


def test_refusals_in_the_exporting_process(device, stream):
    for kind in ("device", "pinned", "managed"):
        plain = ck.empty(1000, np.float32, stream=stream, kind=kind)
        with pytest.raises(ipc.IPCError, match="empty_shareable"):
            ipc.export(plain, stream=stream)
        assert not ipc.is_shareable(plain)
        plain.close()
    with pytest.raises(ipc.IPCError, match="zero-size"):
        ipc.export(ipc.empty_shareable(0, stream=stream), stream=stream)
    x = ipc.empty_shareable(1000, np.float32, stream=stream)
    assert ipc.is_shareable(x) and ipc.is_shareable(x[::7])
    share = ipc.export(x[::7], stream=stream)
    with pytest.raises(ArgumentError, match="exported by this process"):
        ipc.import_array(share.descriptor, stream=stream)
    with pytest.raises(ArgumentError, match="exported by this process"):
        ipc.import_array(pickle.loads(pickle.dumps(share.descriptor)), stream=stream)  # the same pool, received
    other = ck.Stream.create(device)
    sig = ipc.signal(stream=stream)
    ipc.wait(sig, stream=other)  # within one process too
    share.release(sig, stream=other)
    assert share.is_released
    other.sync()
    other.close()
    sig.close()
    stats = ipc.pool_stats(device)
    assert stats is not None and set(stats) >= {"used_mem_current", "reserved_mem_current"}
    x.close()
