"""Decides once whether a GPU is usable; tests under tests/gpu/ are marked `gpu` and skipped
without one, or fail when CUDART_KIT_REQUIRE_GPU=1 (so a broken driver cannot pass as skipped)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_GPU_DIR = Path(__file__).parent / "gpu"
_gpu_state: tuple[bool, str] | None = None


def gpu_state() -> tuple[bool, str]:
    """(usable, reason). Any failure, of any kind, means no GPU."""
    global _gpu_state
    if _gpu_state is None:
        try:
            import cudart_kit as ck

            n = ck.device_count()
            if n < 1:
                _gpu_state = (False, "the driver reports no device")
            else:
                dev = ck.get_device(0)
                _gpu_state = (True, f"{n} device(s); device 0 is {dev.name}")
        except Exception as exc:  # noqa: BLE001 - any failure means "no usable GPU"
            _gpu_state = (False, f"{type(exc).__name__}: {exc}")
    return _gpu_state


def require_gpu() -> bool:
    return os.environ.get("CUDART_KIT_REQUIRE_GPU", "") not in ("", "0", "false", "no")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _GPU_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.gpu)


def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu") is None:
        return
    usable, reason = gpu_state()
    if usable:
        return
    if require_gpu():
        pytest.fail(f"CUDART_KIT_REQUIRE_GPU=1 but no usable GPU: {reason}", pytrace=False)
    pytest.skip(f"no usable GPU: {reason}")


def pytest_report_header(config):
    usable, reason = gpu_state()
    return f"cudart_kit GPU: {'yes' if usable else 'no'} ({reason}); require={require_gpu()}"
