"""CPU tests of peers and the device-to-device matrices, no GPU: Device.enable_peer_access /
disable_peer_access / peer_access_enabled / can_access_peer over a fake driver and fake cuda.core
devices (both grants: the context's and the pool's), the driver wrappers' result handling,
copy_peer's refusals (all before the driver is asked anything), its path choice and ordering
with fake arrays and streams, and the nvbandwidth-style matrices for N devices with a fake
measurement: the plan (diagonal and pairs without a peer path N/A), the JSON document, the
text, the CLI options.
"""

from __future__ import annotations

import contextlib
import io
import json
from types import SimpleNamespace

import numpy as np
import pytest

import cudart_kit as ck
from cudart_kit import _driver, cli
from cudart_kit import bandwidth as bw
from cudart_kit import device as device_mod
from cudart_kit.bandwidth import matrix as mx
from cudart_kit.bandwidth import peer as bw_peer
from cudart_kit.bench import BenchResult
from cudart_kit.device import Device
from cudart_kit.memory import Array
from cudart_kit.memory import peer as peer_mod
from cudart_kit.stream import Stream

READ, WRITE = "device_to_device_memcpy_read_ce", "device_to_device_memcpy_write_ce"
BIREAD, BIWRITE = "device_to_device_bidirectional_memcpy_read_ce", "device_to_device_bidirectional_memcpy_write_ce"


# --- a fake driver and fake cuda.core devices behind real kit Devices ------------------------------

class FakeDriver:
    """Contexts, peer access and topology as the driver would keep them."""

    def __init__(self, no_path=()):
        self.current = 0
        self.no_path = set(no_path)  # (a, b): device a cannot access device b
        self.ctx_peers: set[tuple[int, int]] = set()  # (current context, peer context)
        self.calls: list = []

    def call(self, name, *args, context=""):
        assert name == "cuDeviceCanAccessPeer", name
        self.calls.append((name, *args))
        return int(tuple(args) not in self.no_path)

    def enable(self, peer_ctx, what=""):
        self.calls.append(("enable", self.current, peer_ctx))
        fresh = (self.current, peer_ctx) not in self.ctx_peers
        self.ctx_peers.add((self.current, peer_ctx))
        return fresh

    def disable(self, peer_ctx, what=""):
        self.calls.append(("disable", self.current, peer_ctx))
        was = (self.current, peer_ctx) in self.ctx_peers
        self.ctx_peers.discard((self.current, peer_ctx))
        return was


class FakePeerSet:
    """cuda.core >= 1.2.2's live view: iterates Devices (with device_id)."""

    def __init__(self, ids):
        self._ids = ids

    def __iter__(self):
        return iter([SimpleNamespace(device_id=i) for i in sorted(self._ids)])


class FakeMR:
    def __init__(self, tuple_getter: bool):
        self.granted: set[int] = set()
        self.tuple_getter = tuple_getter  # the 1.2.0-era getter: a tuple of ordinals
        self.sets = 0

    @property
    def peer_accessible_by(self):
        return tuple(sorted(self.granted)) if self.tuple_getter else FakePeerSet(self.granted)

    @peer_accessible_by.setter
    def peer_accessible_by(self, devices):
        self.sets += 1
        self.granted = {int(d) for d in devices}


class FakeCoreDevice:
    def __init__(self, ordinal, tuple_getter, drv):
        self.name, self.pci_bus_id = "Fake H200", f"0000:{0x18 + ordinal:02X}:00.0"
        self.memory_resource = FakeMR(tuple_getter)
        self._drv, self._ctx = drv, 0xC0 + ordinal

    def set_current(self):  # cuda.core makes the primary context current
        self._drv.current = self._ctx


class KitDevice(Device):
    """A real kit Device whose cuda.core Device is a fake."""

    @property
    def core(self):
        return self._fake_core


def _kit_device(ordinal, drv, tuple_getter=False) -> KitDevice:
    dev = object.__new__(KitDevice)
    dev.ordinal, dev._primary_ctx = ordinal, 0xC0 + ordinal
    dev._pool_configured, dev._attr_cache, dev._one_attr, dev._peer_capable = True, None, {}, {}
    dev._fake_core = FakeCoreDevice(ordinal, tuple_getter, drv)
    return dev


@pytest.fixture
def fake_gpus(monkeypatch):
    """Three kit Devices (ordinals 90..92, never a real one) over one fake driver; 92 cannot
    reach 90's memory."""
    drv = FakeDriver(no_path={(92, 90)})
    monkeypatch.setattr(device_mod, "_peer_enabled", set())
    monkeypatch.setattr(_driver, "call", drv.call)
    monkeypatch.setattr(_driver, "ctx_get_current", lambda: drv.current)
    monkeypatch.setattr(_driver, "ctx_set_current", lambda h: setattr(drv, "current", h))
    monkeypatch.setattr(_driver, "ctx_enable_peer_access", drv.enable)
    monkeypatch.setattr(_driver, "ctx_disable_peer_access", drv.disable)
    devs = [_kit_device(90, drv), _kit_device(91, drv, tuple_getter=True), _kit_device(92, drv)]
    return drv, devs


def test_same_device_is_always_accessible_and_a_no_op(fake_gpus):
    drv, (a, _b, _c) = fake_gpus
    assert a.can_access_peer(a) and a.peer_access_enabled(a)
    a.enable_peer_access(a)
    a.disable_peer_access(a)
    assert drv.calls == [] and a.core.memory_resource.sets == 0


def test_can_access_peer_asks_once_per_pair(fake_gpus):
    drv, (a, b, c) = fake_gpus
    assert a.can_access_peer(b) and a.can_access_peer(b) and not c.can_access_peer(a) and c.can_access_peer(b)
    assert drv.calls == [("cuDeviceCanAccessPeer", 90, 91), ("cuDeviceCanAccessPeer", 92, 90),
                         ("cuDeviceCanAccessPeer", 92, 91)]


@pytest.mark.parametrize("owner_index", [0, 1], ids=["live-set getter", "tuple getter"])
def test_enable_grants_context_and_pool_access_once(fake_gpus, owner_index):
    drv, devs = fake_gpus
    owner, accessor = devs[owner_index], devs[2 if owner_index == 1 else 1]
    drv.current = 0x77  # a context of the caller's, restored afterwards
    assert not accessor.peer_access_enabled(owner)
    accessor.enable_peer_access(owner)
    # context access from the accessor's primary context to the owner's ...
    assert ("enable", accessor._primary_ctx, owner._primary_ctx) in drv.calls
    # ... and the accessor on the access list of the owner's pool (where kit arrays live)
    assert owner.core.memory_resource.granted == {accessor.ordinal}
    assert accessor.core.memory_resource.granted == set()  # one direction only
    assert accessor.peer_access_enabled(owner) and not owner.peer_access_enabled(accessor)
    assert drv.current == 0x77
    n = len(drv.calls)
    accessor.enable_peer_access(owner)  # idempotent, and recorded: no driver call the second time
    assert len(drv.calls) == n and owner.core.memory_resource.sets == 1


def test_enable_when_the_driver_already_had_it(fake_gpus):
    drv, (a, b, _c) = fake_gpus
    drv.ctx_peers.add((a._primary_ctx, b._primary_ctx))  # CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED
    a.enable_peer_access(b)
    assert a.peer_access_enabled(b) and b.core.memory_resource.granted == {90}


def test_enable_without_a_peer_path_names_both_devices(fake_gpus):
    drv, (a, _b, c) = fake_gpus
    with pytest.raises(ck.DeviceCapabilityError) as info:
        c.enable_peer_access(a)
    text = str(info.value)
    assert "device 92 (Fake H200, 0000:74:00.0)" in text and "device 90 (Fake H200, 0000:72:00.0)" in text
    assert "cuDeviceCanAccessPeer" in text and "cudart_kit.copy" in text and "nvidia-smi topo" in text
    assert isinstance(info.value, ValueError)
    assert not c.peer_access_enabled(a) and a.core.memory_resource.granted == set()
    assert [x for x in drv.calls if x[0] != "cuDeviceCanAccessPeer"] == []


def test_disable_revokes_both_and_is_idempotent(fake_gpus):
    drv, (a, b, _c) = fake_gpus
    a.enable_peer_access(b)
    a.disable_peer_access(b)
    assert not a.peer_access_enabled(b) and b.core.memory_resource.granted == set()
    assert (a._primary_ctx, b._primary_ctx) not in drv.ctx_peers
    a.disable_peer_access(b)  # not enabled: CUDA_ERROR_PEER_ACCESS_NOT_ENABLED is fine too
    assert not a.peer_access_enabled(b)
    a.enable_peer_access(b)  # and back
    assert a.peer_access_enabled(b) and b.core.memory_resource.granted == {90}


def test_a_pool_failure_is_a_kit_error_naming_the_api(fake_gpus, monkeypatch):
    _drv, (a, b, _c) = fake_gpus

    class Refusing(FakeMR):
        @FakeMR.peer_accessible_by.setter
        def peer_accessible_by(self, devices):
            raise RuntimeError("CUDA_ERROR_INVALID_DEVICE: invalid device ordinal")

    b._fake_core.memory_resource = Refusing(False)
    with pytest.raises(ck.CudaDriverError) as info:
        a.enable_peer_access(b)
    assert info.value.result == "CUDA_ERROR_INVALID_DEVICE" and info.value.api == "cuMemPoolSetAccess"
    assert "enabling access from device 90 to device 91's memory" in str(info.value)
    assert not a.peer_access_enabled(b)  # a retry runs the grants again


# --- the driver wrappers' result handling ---------------------------------------------------------

@pytest.fixture
def fake_bindings(monkeypatch):
    """cuda.bindings' types with recording stand-ins for the calls; no libcuda needed."""
    from cuda.bindings import driver as real

    seen: list = []
    results: dict = {}

    def recorder(name):
        def fn(*args):
            seen.append((name, args))
            return (results.get(name, real.CUresult.CUDA_SUCCESS),)
        return fn

    fake = SimpleNamespace(
        CUresult=real.CUresult, CUcontext=real.CUcontext, CUdeviceptr=real.CUdeviceptr, CUstream=real.CUstream,
        CUmemorytype=real.CUmemorytype, CUDA_MEMCPY3D_PEER=real.CUDA_MEMCPY3D_PEER,
        **{n: recorder(n) for n in ("cuCtxEnablePeerAccess", "cuCtxDisablePeerAccess", "cuMemcpyPeerAsync",
                                    "cuMemcpy3DPeerAsync")})
    monkeypatch.setattr(_driver, "_driver", fake)
    return real, seen, results


def test_ctx_peer_access_wrappers_treat_already_and_not_enabled_as_success(fake_bindings):
    real, seen, results = fake_bindings
    assert _driver.ctx_enable_peer_access(0xC1) is True
    assert int(seen[0][1][0]) == 0xC1 and seen[0][1][1] == 0
    results["cuCtxEnablePeerAccess"] = real.CUresult.CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED
    assert _driver.ctx_enable_peer_access(0xC1) is False
    results["cuCtxDisablePeerAccess"] = real.CUresult.CUDA_ERROR_PEER_ACCESS_NOT_ENABLED
    assert _driver.ctx_disable_peer_access(0xC1) is False
    results["cuCtxEnablePeerAccess"] = real.CUresult.CUDA_ERROR_TOO_MANY_PEERS
    with pytest.raises(ck.CudaDriverError) as info:
        _driver.ctx_enable_peer_access(0xC1, "enabling access from device 0 to device 1's memory")
    assert info.value.result == "CUDA_ERROR_TOO_MANY_PEERS" and info.value.api == "cuCtxEnablePeerAccess"
    assert "while enabling access from device 0 to device 1's memory" in str(info.value)


def test_peer_copy_wrappers_pass_both_contexts(fake_bindings):
    _real, seen, _results = fake_bindings
    _driver.memcpy_peer_async(0x1000, 0xC1, 0x2000, 0xC0, 4096, 0x5EED)
    name, (dst, dst_ctx, src, src_ctx, n, stream) = seen[-1]
    assert name == "cuMemcpyPeerAsync" and (int(dst), int(dst_ctx), int(src), int(src_ctx), n, int(stream)) == (
        0x1000, 0xC1, 0x2000, 0xC0, 4096, 0x5EED)
    _driver.memcpy_2d_peer_async(0x1000, 0xC1, 512, 0x2000, 0xC0, 1024, 96, 7, 0x5EED)
    name, (p, stream) = seen[-1]
    assert name == "cuMemcpy3DPeerAsync"
    assert (int(p.dstDevice), int(p.dstContext), p.dstPitch, int(p.srcDevice), int(p.srcContext), p.srcPitch) == (
        0x1000, 0xC1, 512, 0x2000, 0xC0, 1024)
    assert (p.WidthInBytes, p.Height, p.Depth, p.srcHeight, p.dstHeight) == (96, 7, 1, 7, 7)


# --- copy_peer: refusals, path, ordering (fake arrays and streams) --------------------------------

class FakeDev:
    def __init__(self, ordinal):
        self.ordinal, self.primary_context = ordinal, 0xC0 + ordinal

    def activate(self):
        return contextlib.nullcontext(self)

    def __repr__(self):
        return f"<FakeDev {self.ordinal}>"


class FakeStreamCore:
    def __init__(self, handle):
        self.handle = handle


D0, D1, D2 = FakeDev(80), FakeDev(81), FakeDev(82)


def stream_on(dev, handle=0x5EED) -> Stream:
    return Stream._wrap(FakeStreamCore(handle + dev.ordinal), dev, owned=False)


def arr(dev, shape=(64, 32), dtype=np.float32, kind="device", ptr=None) -> Array:
    dt = np.dtype(dtype)
    strides = tuple(int(np.prod(shape[i + 1:])) * dt.itemsize for i in range(len(shape)))
    return Array._make(ptr or (0x7F00_0000_0000 + dev.ordinal * 0x1_0000_0000), tuple(shape), dt, strides, kind,
                       dev, None)


@pytest.fixture
def driver_calls(monkeypatch):
    calls = []
    monkeypatch.setattr(_driver, "memcpy_peer_async", lambda *a: calls.append(("peer", *a)))
    monkeypatch.setattr(_driver, "memcpy_2d_peer_async", lambda *a: calls.append(("peer2d", *a)))
    return calls


def test_copy_peer_refusals_ask_the_driver_nothing(driver_calls):
    s0 = stream_on(D0)
    a, b = arr(D0), arr(D1)
    with pytest.raises(ck.DeviceMismatchError, match=r"numpy array .*cudart_kit.copy\(dst, src"):
        peer_mod.copy_peer(a, np.zeros((64, 32), np.float32), stream=s0)
    with pytest.raises(ck.DeviceMismatchError, match="dst is a numpy array"):
        peer_mod.copy_peer(np.zeros((64, 32), np.float32), b, stream=s0)
    for kind in ("pinned", "managed"):
        with pytest.raises(ck.DeviceMismatchError, match=f"src is {kind} memory.*cudart_kit.copy"):
            peer_mod.copy_peer(a, arr(D1, kind=kind), stream=s0)
    with pytest.raises(ck.DTypeError, match="dst is float32 but src is float64"):
        peer_mod.copy_peer(a, arr(D1, dtype=np.float64), stream=s0)
    with pytest.raises(ck.ShapeError, match=r"dst has shape \(64, 32\) \(2048 elements\) but src has shape"):
        peer_mod.copy_peer(a, arr(D1, shape=(64, 31)), stream=s0)
    with pytest.raises(ck.ShapeError, match="both sides C-contiguous"):
        peer_mod.copy_peer(a[:, :16], arr(D1, shape=(16, 64)), stream=s0)
    with pytest.raises(ck.DeviceMismatchError, match="stream is on device 82 .* device 81 \\(src\\) and device 80"):
        peer_mod.copy_peer(a, b, stream=stream_on(D2))
    with pytest.raises(ck.ShapeError, match="contiguous run or rows at a pitch.*a\\[:, 3:17\\]"):
        peer_mod.copy_peer(a[:, ::2], b[:, ::2], stream=s0)
    with pytest.raises(ck.ShapeError, match="zero stride"):
        bcast = Array._make(a.ptr, (64, 32), a.dtype, (128, 0), "device", D0, None)
        peer_mod.copy_peer(bcast, b, stream=s0)
    closed = arr(D1)
    closed.close()
    with pytest.raises(ck.ClosedError, match="copy_peer: src is closed"):
        peer_mod.copy_peer(a, closed, stream=s0)
    with pytest.raises(ck.ClosedError, match="copy_peer: dst is a view of a closed array"):
        base = arr(D0)
        view = base[1:3]
        base.close()
        peer_mod.copy_peer(view, b[1:3], stream=s0)
    gone = stream_on(D0, 0xDEAD)
    gone._core = None
    with pytest.raises(ck.ClosedError):
        peer_mod.copy_peer(a, b, stream=gone)
    assert driver_calls == []


def test_copy_peer_of_one_device_is_the_normal_copy(monkeypatch, driver_calls):
    seen = []
    monkeypatch.setattr(Array, "_transfer", SimpleNamespace(
        copy=lambda dst, src, *, stream, timed: seen.append((dst, src, stream, timed)) or "record"))
    s0 = stream_on(D0)
    a, b = arr(D0), arr(D0, ptr=0x7A00_0000_0000)
    assert peer_mod.copy_peer(a, b, stream=s0, timed=True) == "record"
    assert seen == [(a, b, s0, True)] and driver_calls == []


def test_copy_peer_contiguous_and_pitched_paths(driver_calls):
    s0, s1 = stream_on(D0), stream_on(D1)
    a, b = arr(D0), arr(D1)
    rec = peer_mod.copy_peer(a, b, stream=s0)  # a read: dst's device pulls
    assert driver_calls[-1] == ("peer", a.ptr, D0.primary_context, b.ptr, D1.primary_context, a.nbytes, s0.handle)
    assert rec.meta == {"bytes": a.nbytes, "direction": "D2D", "src_device": 81, "dst_device": 80}
    assert rec.stream is s0 and not rec.timed
    peer_mod.copy_peer(b, a, stream=s0)  # a write: src's device pushes
    assert driver_calls[-1] == ("peer", b.ptr, D1.primary_context, a.ptr, D0.primary_context, a.nbytes, s0.handle)
    # a column block: rows of 10 floats at pitches 128 (dst) and 256 (src)
    wide = arr(D1, shape=(64, 64))
    peer_mod.copy_peer(a[:, 2:12], wide[:, 5:15], stream=s1)
    assert driver_calls[-1] == ("peer2d", a.ptr + 8, D0.primary_context, 128, wide.ptr + 20, D1.primary_context,
                                256, 40, 64, s1.handle)
    # one row of a column block is a contiguous run, at its offset
    peer_mod.copy_peer(a[3:4, 2:12], wide[7:8, 5:15], stream=s1)
    assert driver_calls[-1] == ("peer", a.ptr + 3 * 128 + 8, D0.primary_context, wide.ptr + 7 * 256 + 20,
                                D1.primary_context, 40, s1.handle)
    # differently shaped C-contiguous sides copy in row-major order, as cudart_kit.copy does
    peer_mod.copy_peer(a, arr(D1, shape=(2048,)), stream=s0)
    assert driver_calls[-1][5] == a.nbytes
    n = len(driver_calls)
    peer_mod.copy_peer(arr(D0, shape=(0, 4)), arr(D1, shape=(0, 4)), stream=s0)  # nothing to copy
    assert len(driver_calls) == n


class FakeEvent:
    def __init__(self, log, name):
        self.log, self.name = log, name

    def close(self):
        self.log.append(("close", self.name))


class FakeStream:
    """Duck-typed stream for the ordering helper: record() and wait() are logged."""

    def __init__(self, name, log, closed=False):
        self.name, self.log, self.is_closed = name, log, closed

    def record(self):
        self.log.append(("record", self.name))
        return FakeEvent(self.log, self.name)

    def wait(self, ev):
        self.log.append(("wait", self.name, ev.name))


def test_the_copy_waits_for_the_other_devices_uses_of_its_array():
    log: list = []
    s = FakeStream("s", log)
    alloc, used, closed = FakeStream("alloc", log), FakeStream("used", log), FakeStream("closed", log, closed=True)
    far = Array._make(0x7000, (16,), np.dtype(np.float32), (4,), "device", D1, alloc, used={used, closed, s})
    peer_mod._order_after_uses(far[2:9], s)  # a view waits for its base's streams
    assert sorted(x for x in log if x[0] == "wait") == [("wait", "s", "alloc"), ("wait", "s", "used")]
    assert ("record", "closed") not in log and ("record", "s") not in log
    assert sorted(x for x in log if x[0] == "close") == [("close", "alloc"), ("close", "used")]


def test_copy_peer_orders_after_the_array_on_the_other_device(monkeypatch, driver_calls):
    waited = []
    monkeypatch.setattr(peer_mod, "_order_after_uses", lambda far, s: waited.append((far, s)))
    s0, s1 = stream_on(D0), stream_on(D1)
    a, b = arr(D0), arr(D1)
    peer_mod.copy_peer(a, b, stream=s0)
    peer_mod.copy_peer(a, b, stream=s1)
    assert waited == [(b, s0), (a, s1)]


def test_is_peer_copy():
    a, b = arr(D0), arr(D1)
    assert peer_mod.is_peer_copy(a, b) and peer_mod.is_peer_copy(b, a[:3])
    assert not peer_mod.is_peer_copy(a, arr(D0, ptr=0x7A00_0000_0000))
    assert not peer_mod.is_peer_copy(a, arr(D1, kind="pinned")) and not peer_mod.is_peer_copy(arr(D1, kind="managed"), a)
    assert not peer_mod.is_peer_copy(np.zeros(4), b) and not peer_mod.is_peer_copy(a, np.zeros(4))
    assert peer_mod.is_peer_copy(arr(D0, kind="foreign"), b)


# --- the matrices: testcases, plan, document --------------------------------------------------------

def test_testcase_names_and_cells():
    assert mx.TESTCASE_NAMES == (READ, WRITE, BIREAD, BIWRITE)
    read, write, biread, biwrite = (mx.TESTCASES[n] for n in mx.TESTCASE_NAMES)
    # read [r][c]: a copy from c into r issued on r; write [r][c]: from r into c issued on r
    assert read.copy(0, 3) == mx.Copy(src=3, dst=0, issuer=0) and read.mirror(0, 3) is None
    assert write.copy(0, 3) == mx.Copy(src=0, dst=3, issuer=0)
    # the mirror copy is the same kind issued by the column GPU, the other way
    assert biread.copy(0, 3) == read.copy(0, 3) and biread.mirror(0, 3) == mx.Copy(src=0, dst=3, issuer=3)
    assert biwrite.mirror(0, 3) == mx.Copy(src=3, dst=0, issuer=3)
    assert read.accesses(0, 3) == ((0, 3),) and biwrite.accesses(0, 3) == ((0, 3), (3, 0))
    assert read.flow == "column -> row" and write.flow == "row -> column"
    assert "GPU(row) <- GPU(column)" in read.title and "pulls from" in read.title
    assert "GPU(row) -> GPU(column)" in write.title and "mirror" in biwrite.title


def test_resolve_testcases():
    assert mx.resolve_testcases(["all"]) == mx.TESTCASE_NAMES
    assert mx.resolve_testcases([f"{WRITE},{READ}", READ]) == (READ, WRITE)  # table order, once
    with pytest.raises(ValueError, match="unknown testcase device_to_device_memcpy_read_sm: choose from"):
        mx.resolve_testcases(["device_to_device_memcpy_read_sm"])


# four devices; device 3 cannot reach device 1 (one direction only), so [3][1] is N/A in every
# testcase, [1][3] only in the bidirectional ones (their mirror copy needs 3 -> 1)
NO_PATH = {(3, 1)}


def can(a, b):
    return (a, b) not in NO_PATH


def test_plan_of_four_devices():
    plan = mx.plan_matrix(mx.TESTCASES[READ], [0, 1, 2, 3], can)
    assert len(plan) == 16 and [plan[(i, i)] for i in range(4)] == [mx.NA_SAME_DEVICE] * 4
    assert plan[(3, 1)] == mx.NA_NO_PEER and plan[(1, 3)] is None
    assert sum(v is None for v in plan.values()) == 11
    bi = mx.plan_matrix(mx.TESTCASES[BIREAD], [0, 1, 2, 3], can)
    assert bi[(3, 1)] == bi[(1, 3)] == mx.NA_NO_PEER and sum(v is None for v in bi.values()) == 10


SAMPLES_MS = [0.125, 0.124, 0.126]  # median 0.125 ms per copy, 1.6 % spread


def fake_result(name="x"):
    return BenchResult(name, list(SAMPLES_MS), batch=4, warmup_stable=True, stop="min_time", gated=True)


def test_cell_and_document():
    tc = mx.TESTCASES[WRITE]
    cell = mx.matrix_cell(tc, 2, 0, 32 << 20, fake_result())
    assert (cell["row"], cell["column"], cell["src"], cell["dst"], cell["issued_on"]) == (2, 0, 2, 0, 2)
    assert cell["gbps"] == pytest.approx((32 << 20) / 0.125e-3 / 1e9)  # each byte once
    assert (cell["median_ms"], cell["samples"], cell["copies_per_sample"]) == (0.125, 3, 4)
    plan = mx.plan_matrix(tc, [0, 2], can)
    cells = {(0, 2): mx.matrix_cell(tc, 0, 2, 1024, fake_result()), (2, 0): mx.matrix_cell(tc, 2, 0, 1024, fake_result())}
    doc = mx.matrix_document(tc, [0, 2], 1024, plan, cells)
    assert doc["status"] == "passed" and doc["note"] is None and doc["devices"] == [0, 2]
    assert doc["gbps"] == [[None, cells[(0, 2)]["gbps"]], [cells[(2, 0)]["gbps"], None]]
    assert doc["na"] == [[mx.NA_SAME_DEVICE, None], [None, mx.NA_SAME_DEVICE]]
    assert doc["sum_gbps"] == pytest.approx(2 * cells[(0, 2)]["gbps"]) and len(doc["cells"]) == 2
    one = mx.matrix_document(tc, [0], 1024, mx.plan_matrix(tc, [0], can), {})
    assert one["status"] == "waived" and one["gbps"] == [[None]] and one["sum_gbps"] == 0
    assert one["note"].startswith("peer tests need 2+ GPUs: 1 device in this run")
    none = mx.matrix_document(tc, [1, 3], 1024, mx.plan_matrix(tc, [1, 3], lambda a, b: False), {})
    assert none["status"] == "waived" and "no pair of devices [1, 3] has a peer path" in none["note"]


# --- the matrices measured with a fake bench, through run() and the CLI --------------------------

class MatrixGPU:
    def __init__(self, ordinal):
        self.ordinal, self.name, self.pci_bus_id = ordinal, "Fake H200", f"0000:{0x18 + ordinal:02X}:00.0"

    def can_access_peer(self, other):
        return can(self.ordinal, other.ordinal)


class FakePeerBench:
    """Stands in for bandwidth.peer._PeerBench: a fixed figure per cell, through the real cell builder."""

    made: list = []

    def __init__(self, devs, nbytes):
        self.devs, self.nbytes, self.measured, self.closed = devs, nbytes, [], False
        FakePeerBench.made.append(self)

    def measure(self, tc, row, column, nbytes, *, opts):
        self.measured.append((tc.name, row, column, nbytes))
        return mx.matrix_cell(tc, row, column, nbytes, fake_result(tc.name))

    def close(self):
        self.closed = True


@pytest.fixture
def four_gpus(monkeypatch):
    gpus = [MatrixGPU(i) for i in range(4)]
    FakePeerBench.made = []
    monkeypatch.setattr(bw_peer, "_PeerBench", FakePeerBench)
    monkeypatch.setattr(device_mod, "device_count", lambda: len(gpus))
    monkeypatch.setattr(device_mod, "get_device", lambda i=0: gpus[int(i)])
    monkeypatch.setattr(bw.runner, "_device_info", lambda d: {"index": d.ordinal, "name": d.name, "pci_bus_id": d.pci_bus_id,
                                                       "theoretical_memory_gbps": 4800.0, "pcie": None})
    return gpus


def test_run_measures_every_cell_with_a_peer_path(four_gpus):
    opts = bw.Options(testcases=(READ, BIWRITE), directions=(), sizes=[1 << 20, 32 << 20], repeat=3, warmup=0)
    seen = []
    doc = bw.run(opts, progress=lambda n, r: seen.append((n, r["testcase"], r["row"], r["column"])))
    assert doc["schema"] == bw.SCHEMA and doc["results"] == [] and "aggregate" not in doc
    assert [d["index"] for d in doc["devices"]] == [0, 1, 2, 3] and "testcases" in doc["units"]
    assert [(t["name"], t["bytes"]) for t in doc["testcases"]] == [
        (READ, 1 << 20), (READ, 32 << 20), (BIWRITE, 1 << 20), (BIWRITE, 32 << 20)]
    (bench,) = FakePeerBench.made
    assert bench.closed and bench.nbytes == 32 << 20 and sorted(bench.devs) == [0, 1, 2, 3]
    assert len(bench.measured) == 2 * 11 + 2 * 10 == len(seen) and [n for n, *_ in seen] == list(range(1, 43))
    read = doc["testcases"][0]
    assert read["status"] == "passed" and len(read["gbps"]) == 4 and all(len(row) == 4 for row in read["gbps"])
    assert read["gbps"][3][1] is None and read["na"][3][1] == mx.NA_NO_PEER and read["gbps"][1][3] > 0
    assert [read["gbps"][i][i] for i in range(4)] == [None] * 4
    assert read["sum_gbps"] == pytest.approx(11 * read["cells"][0]["gbps"])
    biwrite = doc["testcases"][2]
    assert biwrite["gbps"][1][3] is None and biwrite["na"][1][3] == mx.NA_NO_PEER and len(biwrite["cells"]) == 10
    assert bw.total_tests(opts) == 42
    assert json.loads(json.dumps(doc, allow_nan=False)) == doc


def test_one_gpu_is_waived_without_touching_memory(four_gpus):
    doc = bw.run(bw.Options(testcases=mx.TESTCASE_NAMES, directions=(), peer_devices=[2]))
    assert FakePeerBench.made == [] and [d["index"] for d in doc["devices"]] == [2]
    for t in doc["testcases"]:
        assert t["status"] == "waived" and t["gbps"] == [[None]] and t["na"] == [[mx.NA_SAME_DEVICE]]
        assert "2+ GPUs" in t["note"]
    text = io.StringIO()
    cli.print_bandwidth(doc, cli.Printer(text, rich=False))
    out = text.getvalue()
    assert out.count("waived: peer tests need 2+ GPUs") == 4 and "       N/A" in out
    assert f"SUM {READ} 0.00" in out and "mode quick" not in out  # no host table without host tests


def test_host_tests_and_matrices_in_one_document(four_gpus, monkeypatch):
    class OneFigure:
        def __init__(self, dev, tests):
            self.dev = dev

        def measure(self, direction, memory, nbytes, **_):
            return bw.figure(self.dev.ordinal, direction, memory, nbytes, fake_result())

        def close(self):
            pass

    monkeypatch.setattr(bw.host, "_DeviceBench", OneFigure)
    opts = bw.Options(devices=[0], directions=("H2D",), memories=("pinned",), testcases=(WRITE,),
                      peer_devices=[0, 1])
    doc = bw.run(opts)
    assert [r["direction"] for r in doc["results"]] == ["H2D"] and doc["results"][0]["peer"] is None
    assert [d["index"] for d in doc["devices"]] == [0, 1] and doc["testcases"][0]["devices"] == [0, 1]
    text = io.StringIO()
    cli.print_bandwidth(doc, cli.Printer(text, rich=False))
    out = text.getvalue()
    assert "mode quick" in out and "H2D pinned" in out and f"{WRITE}, 32 MiB: copy-engine memcpy" in out
    assert bw.total_tests(opts) == 1 + 2


def test_matrix_text_layout():
    tc = mx.TESTCASES[READ]
    ords = [0, 1, 2, 3]
    plan = mx.plan_matrix(tc, ords, can)
    cells = {k: dict(mx.matrix_cell(tc, *k, 1 << 20, fake_result()), gbps=100.0 * k[0] + k[1] + 0.5)
             for k, reason in plan.items() if reason is None}
    cells[(0, 1)]["noisy"] = True
    lines = cli.render.bandwidth.matrix_lines(mx.matrix_document(tc, ords, 1 << 20, plan, cells))
    assert lines[0] == f"{READ}, 1 MiB: {tc.title}"
    assert lines[1] == "  " + "".join(str(i).rjust(10) for i in ords)
    assert lines[2] == " 0" + "       N/A      1.50      2.50      3.50"
    assert lines[5] == " 3" + "    300.50       N/A    302.50       N/A"
    assert lines[6] == "" and lines[7] == f"SUM {READ} {sum(c['gbps'] for c in cells.values()):.2f}"
    assert lines[8] == "noisy (spread above the limit): [0][1]"


def test_progress_line_of_a_cell():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    p = cli.Progress(10, stream=tty)
    p(3, {"testcase": READ, **mx.matrix_cell(mx.TESTCASES[READ], 1, 2, 1 << 20, fake_result())})
    assert f"[3/10] {READ} [1][2] 1 MiB: 8.4 GB/s" in tty.getvalue()


def test_cli_options_for_testcases():
    p = cli.build_parser()
    opts = cli.bandwidth_options(p.parse_args(["bandwidth", "--testcase", READ]))
    assert opts.testcases == (READ,) and opts.directions == () and opts.peer_devices is None and opts.devices == [0]
    opts = cli.bandwidth_options(p.parse_args(["bandwidth", "--matrix", "--htod", "--device", "0,2", "--size", "1M"]))
    assert opts.testcases == mx.TESTCASE_NAMES and opts.directions == ("H2D",)
    assert opts.peer_devices == [0, 2] and opts.devices == [0, 2] and opts.sizes == [1 << 20]
    opts = cli.bandwidth_options(p.parse_args(["bandwidth", "--testcase", f"{WRITE},{READ}", "--testcase", WRITE]))
    assert opts.testcases == (READ, WRITE)
    opts = cli.bandwidth_options(p.parse_args(["bandwidth"]))
    assert opts.testcases == () and opts.directions == bw.DIRECTIONS and opts.peer_devices is None


@pytest.mark.parametrize("argv, words", [
    (["bandwidth", "--testcase", "device_to_device_memcpy_read_sm"], "unknown testcase"),
    (["bandwidth", "--matrix", "--csv"], "--csv has one row per host figure"),
])
def test_cli_testcase_usage_errors(argv, words, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_cli_matrix_json_and_text(four_gpus, capsys):
    assert cli.main(["bandwidth", "--testcase", READ, "--size", "1M", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == bw.SCHEMA and doc["results"] == [] and [t["name"] for t in doc["testcases"]] == [READ]
    assert doc["testcases"][0]["gbps"][3][1] is None and doc["testcases"][0]["gbps"][0][1] > 0
    assert cli.main(["bandwidth", "--matrix", "--device", "1,2", "--size", "1M"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Device 1: Fake H200 (0000:19:00.0); DRAM 4800 GB/s theoretical\nDevice 2: ")
    assert all(f"SUM {name} " in out for name in mx.TESTCASE_NAMES) and "waived" not in out


MATRIX_KEYS = {"name", "status", "note", "bytes", "title", "description", "flow", "issued_on", "bidirectional",
               "devices", "gbps", "na", "sum_gbps", "cells"}
CELL_KEYS = {"row", "column", "src", "dst", "issued_on", "bytes", "gbps", "median_ms", "spread", "noisy"}


def test_matrix_document_keys_are_documented():
    from pathlib import Path

    doc = mx.matrix_document(mx.TESTCASES[READ], [0, 1], 1024, mx.plan_matrix(mx.TESTCASES[READ], [0, 1], can),
                             {(0, 1): mx.matrix_cell(mx.TESTCASES[READ], 0, 1, 1024, fake_result())})
    assert MATRIX_KEYS <= set(doc) and CELL_KEYS <= set(doc["cells"][0])
    text = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    if READ not in text:
        pytest.skip("docs/cli.md has no device-to-device section yet (drafted in the peers session's report)")
    block = text.split("schema `cudart-kit/bandwidth/1`", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    for key in MATRIX_KEYS | CELL_KEYS | {"testcases"}:
        assert f'"{key}"' in block, key


# --- the matrix bench's wiring, with fakes for streams, buffers, copies and timing -----------------

class WiredGPU:
    def __init__(self, ordinal, log):
        self.ordinal, self.primary_context, self.log = ordinal, 0xC0 + ordinal, log

    def memory_info(self):
        return SimpleNamespace(free_bytes=1 << 40)

    def enable_peer_access(self, other):
        self.log.append(("enable", self.ordinal, other.ordinal))

    def activate(self):
        return contextlib.nullcontext(self)


class WiredStream:
    def __init__(self, dev, log):
        self.dev, self.log, self.handle = dev, log, 0x5000 + dev.ordinal

    def record(self, ev):
        self.log.append(("record", self.dev.ordinal))

    def wait(self, ev):
        self.log.append(("wait", self.dev.ordinal))

    def sync(self):
        self.log.append(("sync", self.dev.ordinal))

    def close(self):
        self.log.append(("close stream", self.dev.ordinal))


class WiredBuffer:
    def __init__(self, dev, nbytes, ptr):
        self.dev, self.nbytes, self.ptr = dev, nbytes, ptr

    def __getitem__(self, key):
        return WiredBuffer(self.dev, key.stop, self.ptr)

    def close(self):
        pass


def test_matrix_bench_wiring(monkeypatch):
    from cudart_kit import event as event_mod
    from cudart_kit import memory as memory_mod
    from cudart_kit import stream as stream_mod

    log: list = []
    gpus = {o: WiredGPU(o, log) for o in (0, 1)}
    ptrs = iter(range(0x10000, 0x100000, 0x1000))
    monkeypatch.setattr(stream_mod.Stream, "create", staticmethod(lambda dev: WiredStream(dev, log)))
    monkeypatch.setattr(memory_mod, "empty", lambda n, dtype, *, stream: WiredBuffer(stream.dev, n, next(ptrs)))
    monkeypatch.setattr(memory_mod, "memset", lambda arr, v, *, stream: None)
    monkeypatch.setattr(peer_mod, "copy_peer", lambda dst, src, *, stream: log.append(
        ("checked", dst.dev.ordinal, src.dev.ordinal, stream.dev.ordinal)) or SimpleNamespace(sync=lambda: None))
    monkeypatch.setattr(event_mod.Event, "create", staticmethod(lambda dev, timing: SimpleNamespace(close=lambda: None)))
    monkeypatch.setattr(_driver, "memcpy_peer_async", lambda *a: log.append(("copy", *a)))

    def timed(issue, s, nbytes, opts, *, name, gate=True):
        log.append(("timing", name, gate))
        issue(s)
        return fake_result(name)

    monkeypatch.setattr(bw_peer, "time_copies", timed)
    bench = bw_peer._PeerBench(gpus, 4096)
    into, out_of = {o: bench.into[o].ptr for o in gpus}, {o: bench.out_of[o].ptr for o in gpus}
    assert len(set(into.values()) | set(out_of.values())) == 4  # two buffers per GPU, all distinct

    log.clear()
    cell = bench.measure(mx.TESTCASES[READ], 0, 1, 1024, opts=bw.Options())
    assert (cell["src"], cell["dst"], cell["issued_on"]) == (1, 0, 0)
    assert log == [("enable", 0, 1), ("checked", 0, 1, 0),
                   ("timing", f"{READ} [0][1] 1024", True),
                   ("copy", into[0], 0xC0, out_of[1], 0xC1, 1024, 0x5000)]

    log.clear()
    bench.measure(mx.TESTCASES[BIWRITE], 0, 1, 2048, opts=bw.Options())
    # both directions enabled; the timed copy 0 -> 1 on GPU 0, its mirror 1 -> 0 on GPU 1 behind an event
    assert log[:4] == [("enable", 0, 1), ("enable", 1, 0), ("checked", 1, 0, 0), ("checked", 0, 1, 1)]
    assert log[4:] == [("timing", f"{BIWRITE} [0][1] 2048", True), ("record", 0), ("wait", 1),
                       ("copy", into[0], 0xC0, out_of[1], 0xC1, 2048, 0x5001),
                       ("copy", into[1], 0xC1, out_of[0], 0xC0, 2048, 0x5000), ("sync", 1)]
    bench.close()
