"""NVTX switch: off by default and free, on with the nvtx package, a clear error without it."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from cudart_kit import profiling
from cudart_kit.errors import CudaKitError


class FakeDomain:
    def __init__(self):
        self.calls = []

    def get_event_attributes(self, message):
        return ("attrs", message)

    def push_range(self, attrs):
        self.calls.append(("push", attrs[1]))

    def pop_range(self):
        self.calls.append(("pop",))


@pytest.fixture
def fake_nvtx(monkeypatch):
    dom = FakeDomain()
    mod = types.ModuleType("nvtx")
    mod.get_domain = lambda name: dom if name == "cudart_kit" else None
    monkeypatch.setitem(sys.modules, "nvtx", mod)
    monkeypatch.setattr(profiling, "_domain", None)
    monkeypatch.setattr(profiling, "_attrs", {})
    yield dom
    profiling.disable()


def test_off_by_default_records_nothing(fake_nvtx):
    assert profiling.ENABLED is False
    with profiling.range("x"):
        profiling.push("y")
        profiling.pop()
    assert fake_nvtx.calls == []


def test_enabled_ranges_are_named_and_nested(fake_nvtx):
    profiling.enable()
    assert profiling.is_enabled()
    with profiling.range("outer"):
        profiling.push("ops.add")
        profiling.pop()
    assert fake_nvtx.calls == [("push", "outer"), ("push", "ops.add"), ("pop",), ("pop",)]
    profiling.disable()
    profiling.push("after")
    assert fake_nvtx.calls[-1] == ("pop",)


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "nvtx", None)  # import nvtx -> ImportError
    monkeypatch.setattr(profiling, "_domain", None)
    with pytest.raises(CudaKitError, match=r"cudart-kit\[nvtx\]"):
        profiling.enable()
    assert profiling.ENABLED is False


def test_env_switch_without_package_warns():
    code = ("import sys; sys.modules['nvtx'] = None\n"
            "import warnings; warnings.simplefilter('always')\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    from cudart_kit import profiling\n"
            "print(profiling.ENABLED, any('CUDART_KIT_NVTX' in str(x.message) for x in w))\n")
    import os
    env = dict(os.environ, CUDART_KIT_NVTX="1")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", "True"]


def test_kit_entry_points_open_their_ranges(fake_nvtx):
    """Wiring, without a GPU: each entry point opens and closes its range even when it fails."""
    import cudart_kit as ck
    from cudart_kit import ops

    profiling.enable()
    calls = {
        "ops.add": lambda: ops.add(1, 2, stream=None),
        "ops.axpy": lambda: ops.axpy(1.0, 1, 2, stream=None),
        "ops.fill": lambda: ops.fill(1, 0.0, stream=None),
        "matmul": lambda: ops.matmul(1, 2, stream=None),
        "copy": lambda: ck.copy(1, 2, stream=None),
    }
    for name, call in calls.items():
        fake_nvtx.calls.clear()
        with pytest.raises(Exception):
            call()
        assert fake_nvtx.calls == [("push", name), ("pop",)], name
