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
    start = ck.Event.create(device)
    stop = ck.Event.create(device)
    gate = threading.Event()
    start.record(stream)
    stream.add_callback(lambda: gate.wait(20))
    x = ck.to_device(np.arange(1 << 20, dtype=np.float32), stream=stream)
    stop.record(stream)
    try:
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
    assert x.to_numpy(stream=stream)[-1] == (1 << 20) - 1
