"""CPU tests of arrays across processes (cudart_kit.memory.ipc), with no driver: argument checks,
the export's pin on the memory (deferred frees, release), descriptor pickling (the pool's file
descriptor travels: to this process, and to a spawned child through Process arguments and a
Queue), descriptor and signal validation, and the errors, all before any driver call.

Small fakes stand in for a device, cuda.core streams, events, buffers and the IPC pool; the fake
cuda.core descriptors carry the class names the kit checks (it reads their fields through their
pickle protocol, as it does cuda.core's). tests/gpu/test_ipc.py runs the real thing.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import pickle
import uuid
import weakref
from contextlib import nullcontext

import numpy as np
import pytest

from cudart_kit import _census
from cudart_kit.errors import (ArgumentError, ClosedError, CudaKitError, DeviceMismatchError, DTypeError, ShapeError,
                               StreamError)
from cudart_kit.memory import Array, ipc
from cudart_kit.stream import Stream

CHILD_TIMEOUT_S = 120


# ---- fakes (module level: a spawned child unpickles them) ---------------------------------

class IPCBufferDescriptor:
    """Named as cuda.core's: the kit reads (payload, size) through __reduce__."""

    def __init__(self, payload=b"\x11" * 64, size=1 << 16):
        self.payload, self.size = payload, size

    def __reduce__(self):
        return IPCBufferDescriptor, (self.payload, self.size)


class IPCEventDescriptor:
    def __init__(self, payload=b"\x22" * 64, blocking=False):
        self.payload, self.blocking = payload, blocking

    def __reduce__(self):
        return IPCEventDescriptor, (self.payload, self.blocking)


class FakeHandle:
    def __init__(self, fd):
        self.fd = fd

    def __int__(self):
        return self.fd


class FakePool:
    is_ipc_enabled, is_mapped = True, False

    def __init__(self, fd):
        self.uuid = uuid.uuid4()
        self.allocation_handle = FakeHandle(fd)


class FakeBuffer:
    def __init__(self, pool, ptr, size):
        self.memory_resource, self.handle, self.size = pool, ptr, size
        self.ipc_descriptor = IPCBufferDescriptor(size=size)


class FakeEvent:
    def __init__(self):
        self.ipc_descriptor = IPCEventDescriptor()
        self.closed = 0

    def close(self):
        self.closed += 1


class FakeCoreStream:
    def __init__(self, handle):
        self.handle = handle
        self.recorded, self.waited = [], []

    def record(self, event=None, options=None):
        assert options is not None and options.ipc_enabled and not options.timing_enabled
        ev = FakeEvent()
        self.recorded.append(ev)
        return ev

    def wait(self, what):
        self.waited.append(what)

    def close(self):
        pass


class FakeDevice:
    ordinal = 97

    def __init__(self, uuid_="GPU-fa4e0000-0000-0000-0000-000000000097"):
        self.uuid = uuid_

    def activate(self):
        return nullcontext(self)

    def __repr__(self):
        return f"<FakeDevice {self.uuid}>"


DEV = FakeDevice()


def make_stream(handle=0x5EED, device=DEV) -> Stream:
    return Stream._wrap(FakeCoreStream(handle), device, owned=False)


@pytest.fixture
def pipe():
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def shareable(pipe_fd, n=1000, dtype=np.float32, stream=None, freed=None):
    """A fake root array from a fake IPC pool; ``freed`` collects the finalizer's calls."""
    dt = np.dtype(dtype)
    s = stream or make_stream(0xA110C)
    buf = FakeBuffer(FakePool(pipe_fd), 0x7F0000000000, n * dt.itemsize)
    a = Array._make(buf.handle, (n,), dt, (dt.itemsize,), "device", DEV, s, buf=buf)
    if freed is not None:
        a._finalizer = weakref.finalize(a, freed.append, "freed")
    return a


def events_live() -> int:
    return _census.snapshot()["events"]["live"]


# ---- export: refusals, fields, the pin ----------------------------------------------------

def test_export_refusals_before_the_stream(pipe):
    with pytest.raises(ArgumentError, match="empty_shareable"):
        ipc.export(np.zeros(3), stream=None)
    plain = Array._make(0x7F0000001000, (8,), np.dtype(np.float32), (4,), "device", DEV, None)  # no shareable buffer
    with pytest.raises(ipc.IPCError, match=r"empty_shareable\(shape, dtype, stream=s\)"):
        ipc.export(plain, stream=None)
    with pytest.raises(ipc.IPCError, match="empty_shareable"):
        ipc.export(plain[2:6], stream=None)
    closed = shareable(pipe[0])
    closed.close()
    with pytest.raises(ClosedError):
        ipc.export(closed, stream=None)
    empty = Array._make(0, (0,), np.dtype(np.float32), (4,), "device", DEV, None)
    with pytest.raises(ipc.IPCError, match="zero-size"):
        ipc.export(empty, stream=None)
    imported = Array._make(0x7F0000002000, (8,), np.dtype(np.float32), (4,), "device", DEV, None,
                           owner=ipc._Imported(("id", 4242)))
    with pytest.raises(ipc.IPCError, match="imported from process 4242"):
        ipc.export(imported[1:], stream=None)
    with pytest.raises(StreamError, match="stream= is required"):
        ipc.export(shareable(pipe[0]), stream=None)
    assert isinstance(ipc.IPCError("x"), CudaKitError) and isinstance(ipc.IPCError("x"), ValueError)


def test_is_shareable(pipe):
    a = shareable(pipe[0])
    assert ipc.is_shareable(a) and ipc.is_shareable(a[3:-5:2]) and ipc.is_shareable(a.reshape(10, 100).T)
    assert not ipc.is_shareable(np.zeros(3)) and not ipc.is_shareable(None)
    assert not ipc.is_shareable(Array._make(0x1000, (4,), np.dtype(np.float32), (4,), "device", DEV, None))
    a._buf.memory_resource.is_mapped = True  # an imported pool is not this process's to share
    assert not ipc.is_shareable(a)


def test_export_records_the_event_and_describes_the_view(pipe):
    alloc = make_stream(0xA110C)
    a = shareable(pipe[0], n=1000, stream=alloc)
    s = make_stream(0xE4)
    before = events_live()
    v = a[3:-5:2]
    share = ipc.export(v, stream=s)
    d = share.descriptor
    assert alloc.core in s.core.waited  # the export stream waits for the allocation stream first
    assert len(s.core.recorded) == 1 and d.ready is s.core.recorded[0].ipc_descriptor
    assert (d.shape, d.strides, d.dtype, d.offset) == ((496,), (8,), np.dtype(np.float32), 12)
    assert (d.root_shape, d.root_strides, d.root_dtype) == ((1000,), (4,), np.dtype(np.float32))
    assert d.device_uuid == DEV.uuid and d.exporter_pid == os.getpid() and d.version == ipc.FORMAT_VERSION
    assert d.pool_uuid == str(a._buf.memory_resource.uuid) and d.buffer is a._buf.ipc_descriptor
    assert events_live() == before + 1 and not share.is_released
    share.release()
    assert share.is_released and events_live() == before and s.core.recorded[0].closed == 1
    share.release()  # idempotent
    assert events_live() == before
    # a transposed 2-D view: strides and offset as the view has them
    t = a.reshape(20, 50)[1:, ::3].T
    d2 = ipc.export(t, stream=s).descriptor
    assert (d2.shape, d2.strides, d2.offset) == (t.shape, t.strides, t.ptr - a.ptr) == ((17, 19), (12, 200), 200)


def test_close_while_exported_defers_the_free_until_release(pipe):
    freed: list = []
    a = shareable(pipe[0], freed=freed)
    s = make_stream(0xE4)
    share = ipc.export(a[10:20], stream=s)
    a.close()  # refused here at once, memory kept for the importers
    assert a.is_closed and freed == []
    with pytest.raises(ClosedError):
        ipc.export(a, stream=s)
    signal_stream = make_stream(0x519)
    sig = ipc.Signal._make(IPCEventDescriptor(), DEV.uuid, 1234)  # an importer's, received
    with pytest.raises(StreamError, match="stream= is required"):
        share.release(sig)  # the free must be ordered after the signal on some stream
    with pytest.raises(ArgumentError, match="must be a Signal"):
        share.release("done", stream=signal_stream)
    with pytest.raises(ipc.IPCError, match="cuIpcOpenEventHandle"):
        share.release(sig, stream=signal_stream)  # a fake received signal: cuda.core refuses to open it
    assert freed == [] and not share.is_released  # signals are waited on before the pin drops
    local = ipc.signal(stream=make_stream(0x10CA1))  # an importer in this process
    share.release(local, stream=signal_stream)
    assert local._core in signal_stream.core.waited  # the release stream waits for the signal ...
    assert freed == ["freed"] and signal_stream in a._used  # ... and the free is ordered after it
    share.release()
    assert freed == ["freed"]
    local.close()


def test_release_without_signals(pipe):
    freed: list = []
    a = shareable(pipe[0], freed=freed)
    share = ipc.export(a, stream=make_stream(0xE4))
    a.close()
    s = make_stream(0x519)
    share.release(stream=s)  # no signal: the caller vouches the importers are gone
    assert freed == ["freed"] and s in a._used


def test_dropping_the_exported_array_keeps_the_memory_until_release(pipe):
    freed: list = []
    a = shareable(pipe[0], freed=freed)
    share = ipc.export(a[::2], stream=make_stream(0xE4))
    del a
    gc.collect()
    assert freed == []  # the export holds the allocation
    share.close()
    gc.collect()
    assert freed == ["freed"]


def test_collecting_an_unreleased_export_unpins(pipe):
    freed: list = []
    a = shareable(pipe[0], freed=freed)
    before = events_live()
    share = ipc.export(a, stream=make_stream(0xE4))
    a.close()
    assert freed == [] and events_live() == before + 1
    del share
    gc.collect()
    assert freed == ["freed"] and events_live() == before


# ---- descriptors: pickling with the pool's file descriptor --------------------------------

def test_descriptor_pickles_with_the_pool_fd(pipe):
    r, w = pipe
    share = ipc.export(shareable(r)[5:], stream=make_stream(0xE4))
    d = share.descriptor
    with pytest.raises(TypeError, match="export"):
        ipc.ArrayDescriptor()
    got = pickle.loads(pickle.dumps(d))  # plain pickle: the fd comes through the resource sharer
    assert got._pool is None and got._fd is not None and got._fd != r and got._fd_error is None
    for name in ipc._FIELDS:
        want, have = getattr(d, name), getattr(got, name)
        if name in ("buffer", "ready"):
            assert type(have) is type(want) and have.__reduce__()[1] == want.__reduce__()[1]
        else:
            assert have == want, name
    os.write(w, b"ping")
    assert os.read(got._fd, 4) == b"ping"  # the same pipe: the pool's file descriptor travelled
    again = pickle.loads(pickle.dumps(got))  # a received descriptor can be sent on
    os.write(w, b"pong")
    assert os.read(again._fd, 4) == b"pong"
    fd = got._fd
    del got
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)  # a received descriptor closes its fd when collected
    share.release()


def test_unpickling_never_raises_and_import_reports_it():
    d = ipc._rebuild("garbage", None)
    assert d._fd is None and "no pool file descriptor arrived" in d._fd_error
    lost = ipc._received_fd(None)  # a token that cannot be detached
    assert lost.fd is None and "AttributeError" in lost.error
    with pytest.raises(ipc.IPCError, match="format version None"):
        ipc.import_array(d, stream=None)


def _child_receive(conn, desc_arg, q):
    """Spawned child: report what arrived through Process arguments and through a Queue."""
    try:
        desc_q = q.get(timeout=CHILD_TIMEOUT_S)
        out = []
        for d in (desc_arg, desc_q):
            data = os.read(d._fd, 5) if d._fd is not None else None
            out.append((d.shape, d.strides, d.offset, str(d.dtype), d.exporter_pid, d._fd_error, data))
        conn.send(("ok", out))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


def test_descriptor_reaches_a_spawned_child(pipe):
    r, w = pipe
    a = shareable(r, n=64)
    s = make_stream(0xE4)
    share1, share2 = ipc.export(a[1:9], stream=s), ipc.export(a.reshape(8, 8).T, stream=s)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    q = ctx.Queue()
    os.write(w, b"abcdeFGHIJ")
    p = ctx.Process(target=_child_receive, args=(child, share1.descriptor, q), daemon=True)
    p.start()
    try:
        q.put(share2.descriptor)
        assert parent.poll(CHILD_TIMEOUT_S), "the child sent nothing"
        kind, out = parent.recv()
        assert kind == "ok", out
        (s1, st1, o1, dt1, pid1, err1, data1), (s2, st2, o2, dt2, pid2, err2, data2) = out
        assert (s1, st1, o1, dt1, pid1, err1) == ((8,), (4,), 4, "float32", os.getpid(), None)
        assert (s2, st2, o2, err2) == ((8, 8), (4, 32), 0, None)
        assert sorted([data1, data2]) == [b"FGHIJ", b"abcde"]  # both read the parent's pipe
    finally:
        p.join(CHILD_TIMEOUT_S)
        if p.is_alive():
            p.kill()
    assert p.exitcode == 0
    share1.release()
    share2.release()


# ---- import: every check before the driver --------------------------------------------------

def _received(pipe_fd, **changes):
    """A descriptor as an importer receives it, with ``changes`` forged in."""
    share = ipc.export(shareable(pipe_fd, n=1000)[3:-5:2], stream=make_stream(0xE4))
    d = pickle.loads(pickle.dumps(share.descriptor))
    share.release()
    return d._replace(**changes) if changes else d


@pytest.mark.parametrize("changes, match", [
    ({"version": 2}, "format version 2, this cudart_kit reads version 1"),
    ({"shape": (-1,)}, "corrupt ArrayDescriptor.*negative"),
    ({"shape": (10, 10)}, r"corrupt ArrayDescriptor.*strides \(8,\) is not 2 integers"),
    ({"strides": (8.5,)}, "corrupt ArrayDescriptor"),
    ({"dtype": None}, "names no dtype"),
    ({"dtype": object}, "corrupt ArrayDescriptor.*Python objects"),
    ({"offset": -4}, r"spans bytes \[-4, "),
    ({"offset": 3990}, r"the array spans bytes \[3990, 7954\) of a 4000-byte allocation"),
    ({"shape": (1 << 40,)}, "spans bytes"),
    ({"root_shape": (1001,)}, r"the root array spans bytes \[0, 4004\) of a 4000-byte allocation"),
    ({"pool_uuid": "not-a-uuid"}, "corrupt ArrayDescriptor"),
    ({"device_uuid": ""}, "not a GPU UUID"),
    ({"buffer": IPCBufferDescriptor(payload=b"\x00" * 10, size=4000)}, "carries 64 bytes of driver data, this one 10"),
    ({"buffer": IPCBufferDescriptor(payload="text", size=4000)}, "this one str"),
    ({"buffer": b"\x00" * 64}, "its buffer is bytes, not a cuda.core IPCBufferDescriptor"),
    ({"ready": IPCEventDescriptor(payload=b"\x00" * 65)}, "this one 65"),
    ({"ready": None}, "its event is NoneType"),
])
def test_import_refuses_corrupt_descriptors(pipe, changes, match):
    with pytest.raises(ipc.IPCError, match=match):
        ipc.import_array(_received(pipe[0], **changes), stream=None)


def test_import_refusals_before_the_driver(pipe):
    for bad in (b"\x00" * 64, {"shape": (3,)}, None):
        with pytest.raises(ArgumentError, match="must be the ArrayDescriptor"):
            ipc.import_array(bad, stream=make_stream())
    share = ipc.export(shareable(pipe[0]), stream=make_stream(0xE4))
    with pytest.raises(ArgumentError, match="send export.descriptor, not the ArrayExport"):
        ipc.import_array(share, stream=make_stream())
    with pytest.raises(ArgumentError, match="exported by this process"):
        ipc.import_array(share.descriptor, stream=make_stream())
    share.release()
    good = _received(pipe[0])
    with pytest.raises(StreamError, match="stream= is required"):
        ipc.import_array(good, stream=None)
    other = make_stream(0x0DD, device=FakeDevice("GPU-0dd00000-0000-0000-0000-000000000000"))
    with pytest.raises(DeviceMismatchError, match="GPU-fa4e0000.*GPU-0dd00000"):
        ipc.import_array(good, stream=other)
    capturing = make_stream()
    capturing._capture = []
    with pytest.raises(StreamError, match="captured"):
        ipc.import_array(good, stream=capturing)
    fabricated = good._replace()
    fabricated._fd_closer()
    fabricated._fd = None
    with pytest.raises(ipc.IPCError, match="no pool handle"):
        ipc.import_array(fabricated, stream=make_stream())


def test_a_pool_handle_that_never_arrived_is_named(pipe):
    """The fd could not be received (a sender in another multiprocessing family, or gone): the
    import says so once cuda.core's registry has no mapping of that pool either."""
    good = _received(pipe[0])
    fields = {n: getattr(good, n) for n in ipc._FIELDS}
    lost = ipc._rebuild(fields, ipc._received_fd(object()))  # detach() fails
    assert lost._fd is None and lost._fd_error
    with pytest.raises(ipc.IPCError, match="pool handle did not arrive .*AttributeError"):
        ipc.import_array(lost, stream=make_stream())
    with pytest.raises(ipc.IPCError, match="no pool handle to send on"):
        pickle.dumps(lost)


# ---- close_import, signals, empty_shareable ------------------------------------------------

def _fake_import(freed, n=64):
    s = make_stream(0x1A)
    a = Array._make(0x7E0000000000, (n,), np.dtype(np.float32), (4,), "device", DEV, s,
                    owner=ipc._Imported(("id", 777)))
    a._finalizer = weakref.finalize(a, freed.append, "unmapped")
    return a, s


def test_close_import_unmaps_then_signals_and_is_idempotent():
    freed: list = []
    imp, import_stream = _fake_import(freed)
    v = imp[8:16]
    s = make_stream(0xC105E)
    before = events_live()
    with pytest.raises(ArgumentError, match="from import_array"):
        ipc.close_import(np.zeros(3), stream=s)
    with pytest.raises(ArgumentError, match="from import_array"):
        ipc.close_import(Array._make(0x1000, (4,), np.dtype(np.float32), (4,), "device", DEV, None), stream=s)
    sig = ipc.close_import(v, stream=s)  # a view closes the whole import
    assert freed == ["unmapped"] and imp.is_closed and v.is_closed
    assert s in imp._used  # the unmap was ordered after s's work ...
    assert import_stream.core in s.core.waited  # ... and s waits for the stream it was queued on
    assert isinstance(sig, ipc.Signal) and sig.pid == os.getpid() and sig.device_uuid == DEV.uuid
    assert len(s.core.recorded) == 1 and events_live() == before + 1
    sig2 = ipc.close_import(imp, stream=s)  # idempotent: a signal, no second unmap
    assert freed == ["unmapped"] and len(s.core.recorded) == 2
    imp.close()
    assert freed == ["unmapped"]
    sig.close()
    sig.close()
    sig2.close()
    assert events_live() == before


def test_close_import_refuses_while_a_dlpack_consumer_holds_it():
    freed: list = []
    imp, _ = _fake_import(freed)
    imp._exports += 1  # what a live DLPack capsule does
    with pytest.raises(ipc.IPCError, match="DLPack consumer"):
        ipc.close_import(imp, stream=make_stream())
    assert freed == [] and not imp.is_closed


def test_signal_pickling_and_checks():
    s = make_stream(0x516)
    before = events_live()
    sig = ipc.signal(stream=s)
    assert events_live() == before + 1 and not sig.is_closed and "local" in repr(sig)
    got = pickle.loads(pickle.dumps(sig))
    assert got._core is None and got._finalizer is None and "received" in repr(got)
    assert (got.device_uuid, got.pid, got._desc.__reduce__()[1]) == (sig.device_uuid, sig.pid, sig._desc.__reduce__()[1])
    ipc.wait(sig, stream=make_stream(0x517))  # this process's own event: waited on directly
    with pytest.raises(ArgumentError, match="must be a Signal"):
        ipc.wait(b"signal", stream=s)
    with pytest.raises(ipc.IPCError, match="this one 3 bytes"):
        ipc.wait(ipc.Signal._make(IPCEventDescriptor(payload=b"abc"), DEV.uuid, 1), stream=s)
    with pytest.raises(StreamError, match="stream= is required"):
        ipc.wait(got, stream=None)
    elsewhere = make_stream(0x0DD, device=FakeDevice("GPU-0dd00000-0000-0000-0000-000000000000"))
    with pytest.raises(DeviceMismatchError, match="GPU-fa4e0000"):
        ipc.wait(got, stream=elsewhere)
    with sig:
        pass
    assert sig.is_closed and events_live() == before
    with pytest.raises(ClosedError):
        ipc.wait(sig, stream=s)
    with pytest.raises(ClosedError):
        pickle.dumps(sig)
    got.close()  # a received signal owns nothing
    with pytest.raises(TypeError, match="signal"):
        ipc.Signal()
    with pytest.raises(StreamError, match="stream= is required"):
        ipc.signal(stream=None)


def test_empty_shareable_checks_arguments_before_the_driver():
    with pytest.raises(ShapeError):
        ipc.empty_shareable((-1,), stream=None)
    with pytest.raises(DTypeError):
        ipc.empty_shareable(4, dtype=object, stream=None)
    with pytest.raises(StreamError, match="stream= is required"):
        ipc.empty_shareable(4, stream=None)


def test_public_names():
    for name in ipc.__all__:
        assert hasattr(ipc, name), name
    assert set(ipc.__all__) >= {"empty_shareable", "export", "import_array", "close_import", "signal", "wait",
                                "ArrayExport", "ArrayDescriptor", "Signal", "IPCError"}


def test_several_descriptors_of_one_pool_pickle_its_fd_once(pipe):
    """A Process's arguments (or one message) holding several descriptors of one pool pass the
    pool's file descriptor once: multiprocessing refuses an fd listed twice for a child, and the
    receiver shares the one fd it gets between them."""
    import pickle

    from multiprocessing import reduction

    r, w = pipe
    share = ipc.export(shareable(r, n=1000)[3:-5:2], stream=make_stream(0xE5))
    d = share.descriptor
    sent = []
    real = reduction.DupFd
    reduction.DupFd = lambda fd: sent.append(fd) or real(fd)
    try:
        data = pickle.dumps([d, d._replace(offset=0), d._replace(shape=(1,))])
    finally:
        reduction.DupFd = real
    assert len(sent) == 1
    got = pickle.loads(data)
    assert len({g._fd for g in got}) == 1 and got[0]._fd is not None and got[0]._fd_closer is got[2]._fd_closer
    os.write(w, b"once")
    assert os.read(got[1]._fd, 4) == b"once"
    share.release()
