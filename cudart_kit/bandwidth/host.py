"""The copy bandwidth test that CUDA samples dropped in 12.9: host->device, device->host and
device->device on one device, with pinned, pageable and write-combined host memory, over one
size, a range or a sweep ("shmoo"), on one device, several one after another, or several at once.

Each figure is the median of event-timed samples on a kit stream (:func:`.common.time_copies`:
warm-up by time until stable, batches of back-to-back copies behind a GPU-side gate, a minimum
measured time, the spread and a ``noisy`` flag), in GB/s (1e9 bytes/s), and is reported next to
its peer from the same run: pageable and write-combined against pinned, pinned against the PCIe
link (or the other direction when NVML cannot say), device-to-device against the theoretical
DRAM bandwidth.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np

from .. import _driver as drv
from .common import DIRECTIONS, HOST_MEMORY, Options, SizeError, bandwidth_gbps, format_size, time_copies

__all__ = ["plan_tests", "attach_peers", "aggregate", "figure", "run_host"]


def plan_tests(directions, memories, sizes) -> list[tuple[str, str, int]]:
    """(direction, memory, bytes) triples in run order. D2D has memory "device" and is run once
    per size, whatever host memories were asked for."""
    tests = []
    for direction in DIRECTIONS:
        if direction not in directions:
            continue
        kinds = ["device"] if direction == "D2D" else [m for m in HOST_MEMORY if m in memories]
        for memory in kinds:
            for nbytes in sizes:
                tests.append((direction, memory, nbytes))
    return tests


# --- peers and aggregates (pure) -----------------------------------------------------------------

def _peer(name: str, gbps: float | None, measured: float) -> dict | None:
    if not gbps:
        return None
    return {"name": name, "gbps": gbps, "ratio": measured / gbps}


def attach_peers(results: list[dict], devices: list[dict]) -> list[dict]:
    """Fill each result's ``peer``: what the figure is compared with, its GB/s and the ratio.

    pageable / wc -> pinned of the same device, direction and size; pinned -> the PCIe link's
    theoretical bandwidth (from ``devices[i]["pcie"]``) or, without it, pinned in the other
    direction; D2D -> the device's theoretical DRAM bandwidth. None when the peer was not
    measured in this run. Modifies and returns ``results``.
    """
    info = {d["index"]: d for d in devices}
    by_key = {(r["device"], r["direction"], r["memory"], r["bytes"]): r for r in results}
    for r in results:
        dev = info.get(r["device"], {})
        key = (r["device"], r["direction"])
        if r["direction"] == "D2D":
            peer = _peer("DRAM theoretical", dev.get("theoretical_memory_gbps"), r["gbps"])
        elif r["memory"] in ("pageable", "wc"):
            pinned = by_key.get((*key, "pinned", r["bytes"]))
            peer = _peer(f"{r['direction']} pinned", pinned and pinned["gbps"], r["gbps"])
        else:
            pcie = dev.get("pcie") or {}
            if pcie.get("gbps"):
                name = f"PCIe gen{pcie['generation']} x{pcie['width']} theoretical"
                peer = _peer(name, pcie["gbps"], r["gbps"])
            else:
                other = "D2H" if r["direction"] == "H2D" else "H2D"
                twin = by_key.get((r["device"], other, "pinned", r["bytes"]))
                peer = _peer(f"{other} pinned", twin and twin["gbps"], r["gbps"])
        r["peer"] = peer
    return results


def aggregate(results: list[dict]) -> list[dict]:
    """Sum of GB/s over devices for each (direction, memory, bytes): the figure of a concurrent
    run, where every device copied at the same time."""
    sums: dict[tuple, dict] = {}
    for r in results:
        key = (r["direction"], r["memory"], r["bytes"])
        entry = sums.setdefault(key, {"direction": key[0], "memory": key[1], "bytes": key[2],
                                      "gbps": 0.0, "devices": 0})
        entry["gbps"] += r["gbps"]
        entry["devices"] += 1
    return list(sums.values())


# --- host memory ----------------------------------------------------------------------------------

class _HostInterface:
    """Lets numpy view raw host memory while keeping its owner alive (numpy keeps this object
    as the array's base). ``cudart_kit.memory.copy`` treats the resulting numpy array as host
    memory, and the driver recognises page-locked pointers by address."""

    __slots__ = ("__array_interface__", "_owner")

    def __init__(self, ptr: int, nbytes: int, owner):
        self.__array_interface__ = {"data": (ptr, False), "shape": (nbytes,), "typestr": "|u1", "version": 3}
        self._owner = owner


def _free_host(ptr: int) -> None:
    try:
        drv.call("cuMemFreeHost", ptr)
    except Exception:  # finalizers never raise (the context may already be gone at exit)
        pass


class _WriteCombined:
    """Write-combined, portable page-locked host memory (cuMemHostAlloc), which the memory
    package does not offer: fast for the GPU to read over PCIe, very slow for the CPU to read."""

    def __init__(self, device, nbytes: int):
        d = drv.driver()
        flags = (int(getattr(d, "CU_MEMHOSTALLOC_WRITECOMBINED", 0x04))
                 | int(getattr(d, "CU_MEMHOSTALLOC_PORTABLE", 0x01)))
        with device.activate():  # cuMemHostAlloc needs a current context
            self.ptr = int(drv.call("cuMemHostAlloc", nbytes, flags,
                                    context=f"allocating {nbytes} bytes of write-combined host memory"))
        self.device = device
        self.nbytes = nbytes
        # safety net only: holds the pointer, never self; close() is the normal path
        self._finalizer = weakref.finalize(self, _free_host, self.ptr)

    def numpy(self) -> np.ndarray:
        """A uint8 view; numpy keeps this object alive through the view's base."""
        return np.asarray(_HostInterface(self.ptr, self.nbytes, self))

    def close(self) -> None:
        """Free now (idempotent). The caller has synchronized the streams that used it."""
        with self.device.activate():
            self._finalizer()


# --- measuring ------------------------------------------------------------------------------------

class _DeviceBench:
    """Buffers and a stream on one device, sized for the largest test, reused for every size."""

    def __init__(self, dev, tests: list[tuple[str, str, int]]):
        from ..stream import Stream

        self.dev = dev
        self.stream = Stream.create(dev)
        self._owned: list = []
        self.host: dict[str, np.ndarray] = {}
        self._views: dict = {}
        try:
            self._allocate(tests)
        except BaseException:
            self.close()  # what was allocated before the failure is freed now, not at exit
            raise

    def _allocate(self, tests) -> None:
        from ..memory import empty

        host_max: dict[str, int] = {}
        dev_max = d2d_max = 0
        for direction, memory, nbytes in tests:
            if direction == "D2D":
                d2d_max = max(d2d_max, nbytes)
            else:
                host_max[memory] = max(host_max.get(memory, 0), nbytes)
            dev_max = max(dev_max, nbytes)
        self._check_fits(dev_max + d2d_max)
        s = self.stream
        self.dev_a = empty(dev_max, np.uint8, stream=s) if dev_max else None
        self.dev_b = empty(d2d_max, np.uint8, stream=s) if d2d_max else None
        self._owned += [a for a in (self.dev_a, self.dev_b) if a is not None]
        for memory, nbytes in host_max.items():
            if memory == "pinned":
                arr = empty(nbytes, np.uint8, stream=s, kind="pinned")
                self._owned.append(arr)
                self.host[memory] = arr.numpy()
            elif memory == "wc":
                wc = _WriteCombined(self.dev, nbytes)
                self._owned.append(wc)
                self.host[memory] = wc.numpy()
            else:
                self.host[memory] = np.empty(nbytes, np.uint8)
            # CPU writes fault the pages in now, so first touches are not timed
            self.host[memory][:] = 0x5A

    def _check_fits(self, device_bytes: int) -> None:
        free = self.dev.memory_info().free_bytes
        if device_bytes > free:
            raise SizeError(
                f"the largest test needs {format_size(device_bytes)} of device memory but device "
                f"{self.dev.ordinal} has {format_size(free)} free; lower --end / --size"
            )

    def _device_view(self, which, nbytes: int):
        key = (id(which), nbytes)
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = which[:nbytes]  # one allocation serves every size of a sweep
        return view

    def measure(self, direction: str, memory: str, nbytes: int, *, opts: Options) -> dict:
        from ..memory import copy

        s = self.stream
        if direction == "D2D":
            dst, src = self._device_view(self.dev_b, nbytes), self._device_view(self.dev_a, nbytes)
        elif direction == "H2D":
            dst, src = self._device_view(self.dev_a, nbytes), self.host[memory][:nbytes]
        else:
            dst, src = self.host[memory][:nbytes], self._device_view(self.dev_a, nbytes)
        # The first copy goes through the kit's checked copy(), so a bad buffer fails with the
        # kit's message; the timed loop then calls the driver directly, because the wrapper's
        # few microseconds of Python per call would otherwise be measured at small sizes.
        copy(dst, src, stream=s).sync()
        raw = _raw_copy(direction, dst, src, nbytes, s.handle)

        def issue(_stream):
            raw()

        with self.dev.activate():
            # a pageable copy blocks the host until the GPU has (nearly) done it: behind a closed
            # gate that would stall until the gate's timeout, so pageable figures run ungated
            result = time_copies(issue, s, nbytes, opts, name=f"{direction} {memory} {nbytes}",
                                 gate=memory != "pageable")
        return figure(self.dev.ordinal, direction, memory, nbytes, result)

    def close(self) -> None:
        try:
            self.stream.sync()
        finally:
            self.host.clear()
            self._views.clear()
            for obj in self._owned:
                obj.close()
            self._owned.clear()
            self.stream.close()


def figure(device: int, direction: str, memory: str, nbytes: int, result) -> dict:
    """One result of the document from a :class:`cudart_kit.bench.BenchResult` of single copies.

    Times are per copy (ms); ``spread`` is (p90 - p10) / median of the samples; ``noisy`` says
    the spread stayed above the limit after the extended measurement."""
    median = result.median_ms
    return {
        "device": device,
        "direction": direction,
        "memory": memory,
        "bytes": nbytes,
        "copies_per_sample": result.batch,
        "samples": len(result.samples_ms),
        "median_ms": median,
        "min_ms": result.min_ms,
        "max_ms": result.max_ms,
        "gbps": bandwidth_gbps(nbytes, 1, median, direction),
        "p10_ms": result.quantile_ms(0.1),
        "p90_ms": result.quantile_ms(0.9),
        "spread": result.spread,
        "noisy": result.noisy,
        "measured_ms": result.measured_ms,
        "warmup_ms": result.warmup_ms,
        "warmup_stable": result.warmup_stable,
        "gated": result.gated,
        "stop": result.stop,
    }


def _raw_copy(direction: str, dst, src, nbytes: int, stream_handle: int):
    """A zero-argument callable issuing one copy with pointers resolved once."""
    if direction == "H2D":
        dptr, hptr = dst.ptr, src.ctypes.data
        return lambda: drv.memcpy_htod_async(dptr, hptr, nbytes, stream_handle)
    if direction == "D2H":
        hptr, dptr = dst.ctypes.data, src.ptr
        return lambda: drv.memcpy_dtoh_async(hptr, dptr, nbytes, stream_handle)
    dptr, sptr = dst.ptr, src.ptr
    return lambda: drv.memcpy_async(dptr, sptr, nbytes, stream_handle)


def _run_device(dev, tests, opts: Options, results: list, lock: threading.Lock,
                barrier: threading.Barrier | None, progress) -> None:
    bench = _DeviceBench(dev, tests)
    try:
        for direction, memory, nbytes in tests:
            if barrier is not None:
                barrier.wait()  # every device starts each test together
            r = bench.measure(direction, memory, nbytes, opts=opts)
            with lock:
                results.append(r)
                if progress is not None:
                    progress(len(results), r)
    finally:
        bench.close()


def run_host(opts: Options, devs: list, tests: list, progress=None, done: int = 0) -> list[dict]:
    """Measure ``tests`` (from :func:`plan_tests`) on ``devs`` (kit Devices), one after another
    or, with ``opts.concurrent``, all at once; the results in device, then plan order (without
    their peers: :func:`attach_peers` adds them). ``progress(done + n, result)`` after each."""
    results: list[dict] = []
    lock = threading.Lock()

    def report(n, r):
        if progress is not None:
            progress(done + n, r)

    if opts.concurrent and len(devs) > 1:
        barrier = threading.Barrier(len(devs))
        errors: list[BaseException] = []

        def worker(dev):
            try:
                _run_device(dev, tests, opts, results, lock, barrier, report)
            except BaseException as exc:  # re-raised below, in the caller's thread
                errors.append(exc)
                barrier.abort()  # release the other devices instead of leaving them waiting

        threads = [threading.Thread(target=worker, args=(d,), name=f"bandwidth-dev{d.ordinal}") for d in devs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
        if real or errors:
            raise (real or errors)[0]
    else:
        for dev in devs:
            _run_device(dev, tests, opts, results, lock, None, report)
    # concurrent workers append in completion order: report in device, then plan order
    position = {t: i for i, t in enumerate(tests)}
    results.sort(key=lambda r: (r["device"], position[(r["direction"], r["memory"], r["bytes"])]))
    return results
