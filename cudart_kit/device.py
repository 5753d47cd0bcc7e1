"""Devices: enumeration, attribute snapshots, memory info, peer access and scoped "make this
device current".

Every kit call that creates or allocates on a device runs inside ``device.activate()``, because
cuda.core <= 1.2 creates streams and allocations in the *current* context whatever Device they
are called on (NVIDIA/cuda-python#2311).
"""

from __future__ import annotations

import operator
import os
import threading
from dataclasses import dataclass

from . import _driver as drv
from .errors import (
    ArgumentError, CudaKitError, NoDeviceError, PeerAccessError, translate, visible_devices_hint,
)

__all__ = ["Device", "devices", "device_count", "get_device", "POOL_RELEASE_THRESHOLD_ENV"]

POOL_RELEASE_THRESHOLD_ENV = "CUDART_KIT_POOL_RELEASE_THRESHOLD"
_UINT64_MAX = (1 << 64) - 1

_tls = threading.local()  # .inited: set of ordinals whose cuda.core Device was set current on this thread
_lock = threading.Lock()
_devices: dict[int, "Device"] = {}
_primary: dict[int, int] = {}  # ordinal -> primary context handle (same for every thread)
# (accessing primary context, owning primary context) pairs whose peer access the kit enabled;
# _peer_lock serializes the changes (a pool's access list is rewritten as a whole)
_peer_enabled: set[tuple[int, int]] = set()
_peer_lock = threading.Lock()


def device_count() -> int:
    """Number of visible devices (honours CUDA_VISIBLE_DEVICES). Raises NoDriverError without a driver."""
    return drv.device_count()


def get_device(index: "int | Device | None" = None) -> "Device":
    """The kit Device for an ordinal (default 0): a Device (returned as is), an int or numpy
    integer, a string of decimal digits ("1"), or None. Raises ArgumentError (a TypeError) for
    anything else (e.g. "gpu0", 1.5, True) and for a negative ordinal NoDeviceError, both before
    any driver call; NoDeviceError for an ordinal past the visible devices."""
    if isinstance(index, Device):
        return index
    if index is None:
        index = 0
    elif type(index) is not int:
        if isinstance(index, str) and index.strip().isdigit():
            index = int(index)
        else:
            try:
                if isinstance(index, bool):
                    raise TypeError
                index = operator.index(index)
            except TypeError:
                raise ArgumentError(
                    f"device must be a cudart_kit.Device, an ordinal (int) or None; got {index!r} "
                    f"({type(index).__name__})"
                ) from None
    dev = _devices.get(index)
    if dev is not None:
        return dev
    if index < 0:
        raise NoDeviceError(f"device index {index} out of range: ordinals start at 0")
    n = device_count()
    if not 0 <= index < n:
        raise NoDeviceError(visible_devices_hint(f"device index {index} out of range: {n} device(s) visible"))
    with _lock:
        dev = _devices.get(index)
        if dev is None:
            dev = _devices[index] = Device._create(index)
    return dev


def devices() -> list["Device"]:
    """Every visible device, in ordinal order."""
    return [get_device(i) for i in range(device_count())]


def _parse_threshold(text: str | None, total: int) -> int:
    """Release threshold from the env var: bytes, a size with K/M/G suffix, a % of total, or 'max'."""
    if text is None or text.strip() == "" or text.strip().lower() == "max":
        return _UINT64_MAX
    t = text.strip().lower()
    if t.endswith("%"):
        return int(total * float(t[:-1]) / 100)
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(t[-1:], 1)
    if mult != 1:
        t = t[:-1]
    try:
        return int(float(t) * mult)
    except ValueError:
        raise ValueError(
            f"{POOL_RELEASE_THRESHOLD_ENV}={text!r}: expected bytes (e.g. 2G, 512M), a percentage (25%) or 'max'"
        ) from None


class _Activation:
    """Context manager behind Device.activate(): cheap when the device is already current."""

    __slots__ = ("_dev", "_prev")

    def __init__(self, dev: "Device"):
        self._dev = dev
        self._prev = None

    def __enter__(self):
        dev = self._dev
        prev = drv.ctx_get_current()
        inited = getattr(_tls, "inited", None)
        if prev == dev._primary_ctx and inited is not None and dev.ordinal in inited:
            self._prev = None
            return dev
        dev._make_current()
        # Restore only a context the caller really had; with none current we leave the primary
        # context bound, as the CUDA runtime does on first use.
        self._prev = prev if prev not in (0, dev._primary_ctx) else None
        return dev

    def __exit__(self, *exc):
        if self._prev is not None:
            drv.ctx_set_current(self._prev)
            self._prev = None
        return False


def _describe(dev: "Device") -> str:
    try:
        return f"device {dev.ordinal} ({dev.name}, {dev.pci_bus_id})"
    except Exception:  # the message must not fail on a device that cannot be asked
        return f"device {dev.ordinal}"


def _no_peer_path(dev: "Device", other: "Device") -> str:
    return (f"{_describe(dev)} cannot access {_describe(other)}'s memory directly: cuDeviceCanAccessPeer "
            "reports no peer path between them (no NVLink or PCIe peer-to-peer route: GPUs under different "
            "PCIe root complexes, or P2P disabled by the platform or a hypervisor; `nvidia-smi topo -p2p r` "
            "shows the matrix). Copies between them still work, through host memory (cudart_kit.copy); "
            "kernels on one cannot read the other's arrays")


def _set_pool_access(owner: "Device", accessor: "Device", *, grant: bool, what: str) -> None:
    """Add ``accessor`` to (or remove it from) the access list of ``owner``'s stream-ordered pool,
    the one kit arrays come from (cuda.core's ``Device.memory_resource``, the device's current
    pool). Written through the ``peer_accessible_by`` setter with the whole new set: cuda.core
    1.2 releases differ in what the getter returns (a tuple of ordinals, or a live set of
    Devices), and every release's setter takes a set of ordinals."""
    with owner.activate():
        try:
            mr = owner.core.memory_resource
            if not hasattr(mr, "peer_accessible_by"):  # no stream-ordered pool on this device
                return
            current = {d if isinstance(d, int) else int(d.device_id) for d in mr.peer_accessible_by}
            wanted = current | {accessor.ordinal} if grant else current - {accessor.ordinal}
            mr.peer_accessible_by = sorted(wanted)  # cuda.core calls the driver only for a change
        except Exception as exc:
            raise translate(exc, "cuMemPoolSetAccess", what) from exc


@dataclass(frozen=True)
class MemoryInfo:
    free_bytes: int
    total_bytes: int


class Device:
    """One GPU. Obtain with :func:`get_device` / :func:`devices`; one instance per ordinal."""

    def __init__(self, *_a, **_k):
        raise TypeError("use cudart_kit.get_device(index) or cudart_kit.devices()")

    @classmethod
    def _create(cls, ordinal: int) -> "Device":
        self = object.__new__(cls)
        self.ordinal = ordinal
        self._primary_ctx = drv.primary_ctx_retain(ordinal)  # held for the life of the process
        self._pool_configured = False
        self._attr_cache: dict | None = None
        self._one_attr: dict[str, int] = {}
        self._peer_capable: dict[int, bool] = {}
        return self

    # -- identity ---------------------------------------------------------------------------
    @property
    def core(self):
        """The cuda.core Device (thread-local singleton)."""
        from cuda.core import Device as CoreDevice

        return CoreDevice(self.ordinal)

    @property
    def name(self) -> str:
        return self.core.name

    @property
    def uuid(self) -> str:
        return self.core.uuid

    @property
    def pci_bus_id(self) -> str:
        return self.core.pci_bus_id

    @property
    def compute_capability(self) -> tuple[int, int]:
        cc = self.core.compute_capability
        return (int(cc.major), int(cc.minor))

    @property
    def arch(self) -> str:
        """e.g. '90' for compute capability 9.0."""
        major, minor = self.compute_capability
        return f"{major}{minor}"

    @property
    def multiprocessor_count(self) -> int:
        return self.attribute("multiprocessor_count")

    @property
    def primary_context(self) -> int:
        return self._primary_ctx

    def __repr__(self) -> str:
        try:
            return f"<cudart_kit.Device {self.ordinal}: {self.name} sm_{self.arch}>"
        except Exception:
            return f"<cudart_kit.Device {self.ordinal}>"

    def __int__(self) -> int:
        return self.ordinal

    def __eq__(self, other) -> bool:
        return isinstance(other, Device) and other.ordinal == self.ordinal

    def __hash__(self) -> int:
        return hash(("cudart_kit.Device", self.ordinal))

    # -- attributes -------------------------------------------------------------------------
    def attribute(self, name: str) -> int:
        """One driver attribute by name, e.g. ``"multiprocessor_count"`` (CU_DEVICE_ATTRIBUTE_ prefix optional)."""
        value = self._one_attr.get(name)
        if value is not None:
            return value
        key = name.lower().removeprefix("cu_device_attribute_")
        # cuda.core's Device.properties names most attributes like the driver enum does; the
        # driver call stays for the ones it does not name (and for the full snapshot below).
        try:
            value = getattr(self.core.properties, key, None)
        except Exception:
            value = None
        if isinstance(value, (bool, int)):
            value = int(value)
        else:
            enum = drv.attribute_enum()
            member = getattr(enum, "CU_DEVICE_ATTRIBUTE_" + key.upper(), None)
            if member is None:
                raise KeyError(f"no device attribute named {name!r}")
            value = drv.device_attribute(member, self.ordinal)
        # attributes are fixed for the life of the process (clock rates aside, which we read
        # once like the CUDA runtime's cudaGetDeviceProperties does)
        self._one_attr[name] = value
        return value

    def attributes(self) -> dict[str, int]:
        """Snapshot of every CUdevice_attribute the driver reports, keyed by lower-case name.

        Attributes the driver rejects (deprecated or unknown to this driver) are left out.
        """
        if self._attr_cache is None:
            enum = drv.attribute_enum()
            out: dict[str, int] = {}
            for member in enum:
                name = member.name
                if name.endswith("_MAX") and name == "CU_DEVICE_ATTRIBUTE_MAX":
                    continue
                key = name.removeprefix("CU_DEVICE_ATTRIBUTE_").lower()
                if key in out:  # aliases share a value
                    continue
                try:
                    out[key] = drv.device_attribute(member, self.ordinal)
                except CudaKitError:
                    continue
            self._attr_cache = out
        return dict(self._attr_cache)

    def memory_info(self) -> MemoryInfo:
        """Free and total device memory in bytes (cuMemGetInfo in this device's primary context)."""
        with self.activate():
            free, total = drv.mem_get_info()
        return MemoryInfo(free, total)

    # -- peers ------------------------------------------------------------------------------
    def can_access_peer(self, other: "Device | int") -> bool:
        """Whether this device can access ``other``'s memory directly (cuDeviceCanAccessPeer):
        the hardware path exists; it still has to be enabled (:meth:`enable_peer_access`). True
        for the device itself. Fixed for the life of the process, so asked once per pair."""
        other = get_device(other)
        if other.ordinal == self.ordinal:
            return True
        known = self._peer_capable.get(other.ordinal)
        if known is None:
            known = self._peer_capable[other.ordinal] = bool(drv.call(
                "cuDeviceCanAccessPeer", self.ordinal, other.ordinal,
                context=f"asking whether device {self.ordinal} can access device {other.ordinal}'s memory"))
        return known

    def enable_peer_access(self, other: "Device | int") -> None:
        """Let kernels and copies running on this device access ``other``'s memory directly.

        One direction: ``a.enable_peer_access(b)`` lets ``a`` reach ``b``'s memory; call
        ``b.enable_peer_access(a)`` for the reverse. Two grants, because CUDA keeps two lists:

        - kit arrays live in ``other``'s stream-ordered pool, whose accessibility does not follow
          context peer access: this device is added to that pool's access list
          (cuMemPoolSetAccess, through cuda.core's ``DeviceMemoryResource.peer_accessible_by``);
          it covers the pool's existing and future allocations;
        - memory allocated in ``other``'s primary context with cuMemAlloc (foreign arrays, e.g.
          from libraries with their own allocator) is reached through context peer access
          (cuCtxEnablePeerAccess from this device's primary context).

        Idempotent (an already enabled pair, CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED, is success);
        the device itself is a no-op. Not needed for copies: :func:`cudart_kit.memory.peer.copy_peer`
        works without it (through host memory when there is no direct path), and runs directly
        once it is enabled. Queues nothing and does not synchronize; the driver updates every
        existing mapping of the pool, which can take a while for a large pool.

        Raises PeerAccessError (a DeviceCapabilityError) when the devices have no peer path (cuDeviceCanAccessPeer
        is 0), naming both devices; CudaDriverError naming the result when the driver refuses
        (e.g. CUDA_ERROR_TOO_MANY_PEERS).
        """
        other = get_device(other)
        if other.ordinal == self.ordinal:
            return
        key = (self._primary_ctx, other._primary_ctx)
        if key in _peer_enabled:
            return
        if not self.can_access_peer(other):
            raise PeerAccessError(_no_peer_path(self, other))
        what = f"enabling access from device {self.ordinal} to device {other.ordinal}'s memory"
        with _peer_lock:
            with self.activate():
                drv.ctx_enable_peer_access(other._primary_ctx, what)
            _set_pool_access(other, self, grant=True, what=what)
            _peer_enabled.add(key)

    def disable_peer_access(self, other: "Device | int") -> None:
        """Undo :meth:`enable_peer_access`: this device loses direct access to ``other``'s
        pool (kit arrays) and primary-context allocations. Idempotent; the device itself is a
        no-op. Work already queued on this device that reads or writes ``other``'s memory must
        have finished (synchronize first): access is revoked now, not in stream order. Copies
        with copy_peer keep working, through host memory."""
        other = get_device(other)
        if other.ordinal == self.ordinal:
            return
        what = f"disabling access from device {self.ordinal} to device {other.ordinal}'s memory"
        with _peer_lock:
            with self.activate():
                drv.ctx_disable_peer_access(other._primary_ctx, what)
            _set_pool_access(other, self, grant=False, what=what)
            _peer_enabled.discard((self._primary_ctx, other._primary_ctx))

    def peer_access_enabled(self, other: "Device | int") -> bool:
        """Whether :meth:`enable_peer_access` made ``other``'s memory accessible from this
        device (and :meth:`disable_peer_access` has not revoked it since), as the kit recorded
        it per pair of primary contexts. True for the device itself. Access granted outside
        the kit (another library's cuCtxEnablePeerAccess) is not seen: the driver has no query
        for context peer access. Makes no driver call."""
        other = get_device(other)
        if other.ordinal == self.ordinal:
            return True
        return (self._primary_ctx, other._primary_ctx) in _peer_enabled

    @property
    def stream_priority_range(self) -> tuple[int, int]:
        """(lowest, highest) priority as numbers; numerically lower means higher priority."""
        with self.activate():
            return drv.stream_priority_range()

    # -- context ----------------------------------------------------------------------------
    def activate(self) -> _Activation:
        """Make this device's primary context current for a ``with`` block, then restore.

        The context that was current before is restored on exit. When no context was current,
        the primary context stays bound afterwards (as the CUDA runtime does).
        """
        return _Activation(self)

    def _make_current(self) -> None:
        inited = getattr(_tls, "inited", None)
        if inited is None:
            inited = _tls.inited = set()
        if self.ordinal not in inited:
            try:
                self.core.set_current()  # lets cuda.core objects of this thread use the device
            except Exception as exc:
                raise translate(exc, "Device.set_current") from exc
            inited.add(self.ordinal)
            if not self._pool_configured:
                self._configure_pool()
        else:
            drv.ctx_set_current(self._primary_ctx)

    def _configure_pool(self) -> None:
        """Set the stream-ordered pool's release threshold once per process.

        The driver default (0) hands freed memory back to the OS at every synchronization,
        making the next allocation a slow cuMemAlloc (NVIDIA/cuda-python#771). The kit keeps
        freed memory in the pool instead (threshold 'max'); CUDART_KIT_POOL_RELEASE_THRESHOLD
        overrides it (bytes, 512M, 4G, 25% of total, or max). Allocation failures trim the pool
        and retry once, so cached memory never causes an out-of-memory by itself.
        """
        with _lock:
            if self._pool_configured:
                return
            try:
                total = int(drv.call("cuDeviceTotalMem", self.ordinal))
                threshold = _parse_threshold(os.environ.get(POOL_RELEASE_THRESHOLD_ENV), total)
                drv.mempool_set_release_threshold(self.ordinal, threshold)
            finally:
                self._pool_configured = True

    def pool_stats(self) -> dict[str, int]:
        """Bytes reserved/used by the device's default pool, now and at their high-water marks."""
        out = {}
        for key in ("reserved_mem_current", "reserved_mem_high", "used_mem_current", "used_mem_high", "release_threshold"):
            out[key] = drv.mempool_get_attribute(self.ordinal, key)
        return out

    def trim_pool(self, keep_bytes: int = 0) -> None:
        """Return cached pool memory above ``keep_bytes`` to the driver."""
        with self.activate():
            drv.mempool_trim(self.ordinal, keep_bytes)

    def sync(self) -> None:
        """Block until all work on this device is done."""
        with self.activate():
            drv.call("cuCtxSynchronize")
