"""The calls moved from hand-written driver calls to cuda.core's public API give the same
answers as the driver: device attributes (Device.properties), event queries and timing."""

from __future__ import annotations

import threading

import numpy as np

import cudart_kit as ck
from cudart_kit import _driver as drv


def test_attributes_through_properties_match_the_driver(device):
    props = device.core.properties
    enum = drv.attribute_enum()
    checked = 0
    for member in enum:
        key = member.name.removeprefix("CU_DEVICE_ATTRIBUTE_").lower()
        if not isinstance(getattr(props, key, None), (bool, int)):
            continue
        try:
            want = drv.device_attribute(member, device.ordinal)
        except ck.CudaKitError:
            continue
        assert device.attribute(key) == want, key
        checked += 1
    assert checked >= 50  # cuda.core names most of the enum


def test_event_done_and_elapsed_through_core(device, stream):
    from cudart_kit import ops
    from cudart_kit.module import load_kit_module

    load_kit_module("vector").preload(device)  # no lazy-loading wait inside the timed region
    x = ck.to_device(np.arange(1 << 20, dtype=np.float32), stream=stream)
    stream.sync()
    start = ck.Event.create(device)
    stop = ck.Event.create(device)
    gate = threading.Event()
    start.record(stream)
    stream.add_callback(lambda: gate.wait(20))
    ops.scale(2.0, x, x, stream=stream)  # a kernel, not a pageable copy (which may wait for the stream)
    stop.record(stream)
    try:
        from cuda.bindings import driver

        (raw,) = driver.cuEventQuery(driver.CUevent(stop.handle))
        core_says = stop.core.is_done
        print(f"raw cuEventQuery: {raw.name}; cuda.core is_done: {core_says}")
        assert raw.name == "CUDA_ERROR_NOT_READY"
        assert core_says is False  # cuda.core's query agrees with the driver
        assert stop.done() is False
        try:
            stop.elapsed_ms(start)
        except ck.NotReadyError:
            pass
        else:
            raise AssertionError("elapsed_ms of an unfinished event must raise NotReadyError")
    finally:
        gate.set()
    stop.sync()
    assert stop.done() is True
    ms = start.elapsed_ms(stop)
    assert 0.0 < ms < 20_000.0
    assert x.to_numpy(stream=stream)[-1] == 2 * ((1 << 20) - 1)
