"""CPU tests of the house: imports point one way (no cycle among module-level imports; a lazy
import that points up the layering, or closes a cycle, only from the allow-list below), the
public names and import paths work without a driver, events never import streams, and the one
explanation of CUDA_VISIBLE_DEVICES (errors.visible_devices_hint).

No private cuda.core module is imported anywhere in the package: that test already lives in
tests/test_gemm_cpu.py (test_no_private_cuda_core_imports, with a test that its scanner catches
every form), so it is not repeated here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import pytest

PACKAGE = "cudart_kit"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

# The layering, bottom first: a module may import (at module level) from its own layer or a
# lower one. Names are relative to the package and match a module and everything under it
# ("memory" covers cudart_kit.memory.alloc); the longest name wins. A new module must be
# placed here. The order is the house's (issue 13): errors <- _driver <- device <- event <-
# stream <- module <- memory <- launcher <- ops <- trace/experiments <- cli, with the helpers
# that import nothing but errors at the bottom and the launch core (_launch, which memory's
# strided copies use) between module and memory.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("_census", "profiling", "image", "_dlpack", "build"),  # pure helpers over errors
    ("_driver",),
    ("device",),
    ("event",),
    ("stream",),
    ("module",),
    ("_launch",),
    ("memory",),
    ("bench",),  # below launcher, which re-exports benchmark
    ("launcher",),
    ("ops",),
    ("graph", "accounting"),
    ("trace", "query"),
    ("bandwidth", "experiments", "collectives"),
    ("doctor",),
    ("cli", "__main__"),
)

# Lazy (function-level) imports allowed to point up the layering or to close a cycle of
# module-level imports: (importer, imported) -> why. The house allows at most one (a stale
# entry fails the test too, so a fixed one must be struck off).
ALLOWED_LAZY: dict[tuple[str, str], str] = {
    ("module", "launcher"): "Kernel.launch(...) is launcher.launch(kernel, ...): packing needs arrays (memory)",
}


# --- the import graph ---------------------------------------------------------------------------

def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name, as Python resolves them: a package
    (a directory with __init__.py) shadows a module file of the same name."""
    found: dict[str, Path] = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("").parts
        is_pkg = rel[-1] == "__init__"
        name = ".".join(rel[:-1] if is_pkg else rel)
        if name in found and not is_pkg:
            continue  # memory.py next to memory/__init__.py: the package is what imports
        found[name] = path
    return found


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _imports(name: str, path: Path, modules) -> list[tuple[str, int, bool]]:
    """(imported module, line, lazy) for every intra-package import of one module, module-level
    and inside functions (lazy). ``from .x import y`` names ``x.y`` when that is a module. The
    parent packages an import executes count too, except the importer's own ancestors (always
    loaded before it) and the package root. ``if TYPE_CHECKING:`` blocks never run: skipped."""
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    out: list[tuple[str, int, bool]] = []

    def add(target: list[str], line: int, lazy: bool) -> None:
        parts = list(target)
        while len(parts) > 1:
            dotted = ".".join(parts)
            if dotted in modules and dotted != name and not name.startswith(dotted + ".") \
                    and (dotted, line, lazy) not in out:
                out.append((dotted, line, lazy))
            parts.pop()

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking(child):
                for sub in child.orelse:
                    visit(ast.Module(body=[sub], type_ignores=[]), lazy)
                continue
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == PACKAGE:
                        add(alias.name.split("."), child.lineno, inner)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = here[: len(here) - (child.level - 1)]
                    mod = base + (child.module.split(".") if child.module else [])
                else:
                    mod = (child.module or "").split(".")
                if mod[0] != PACKAGE:
                    continue
                for alias in child.names:
                    sub = mod + [alias.name]
                    add(sub if ".".join(sub) in modules else mod, child.lineno, inner)
            visit(child, inner)

    visit(ast.parse(path.read_text(), str(path)), False)
    return out


def _rel(name: str) -> str:
    return name[len(PACKAGE) + 1:] if name.startswith(PACKAGE + ".") else name


def _rank(name: str) -> int | None:
    rel, best, rank = _rel(name), -1, None
    for i, layer in enumerate(LAYERS):
        for entry in layer:
            if (rel == entry or rel.startswith(entry + ".")) and len(entry) > best:
                best, rank = len(entry), i
    return rank


def _graph():
    """(modules, module-level edges {a: {b: line}}, lazy imports [(a, b, line)])."""
    modules = _modules()
    eager: dict[str, dict[str, int]] = {m: {} for m in modules}
    lazy: list[tuple[str, str, int]] = []
    for name, path in modules.items():
        for target, line, is_lazy in _imports(name, path, modules):
            if is_lazy:
                lazy.append((name, target, line))
            else:
                eager[name].setdefault(target, line)
    return modules, eager, lazy


def _reaches(eager, start: str, goal: str) -> bool:
    seen, todo = {start}, [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        for nxt in eager.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


def _cycles(eager) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in eager.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(eager):
        if v not in index:
            strong(v)
    return out


def _where(modules, name: str, line: int) -> str:
    return f"{modules[name].relative_to(ROOT.parent)}:{line}"


def _lazy_violations(modules, eager, lazy) -> dict[tuple[str, str], list[str]]:
    """Lazy imports that point up the layering or close a cycle of module-level imports."""
    bad: dict[tuple[str, str], list[str]] = {}
    for src, dst, line in lazy:
        rs, rd = _rank(src), _rank(dst)
        upward = rs is not None and rd is not None and rd > rs
        if upward or _reaches(eager, dst, src):
            bad.setdefault((_rel(src), _rel(dst)), []).append(_where(modules, src, line))
    return bad


def test_every_module_has_a_layer():
    modules = _modules()
    assert f"{PACKAGE}.errors" in modules and f"{PACKAGE}.stream" in modules
    unplaced = sorted(_rel(m) for m in modules if m != PACKAGE and _rank(m) is None)
    assert not unplaced, f"place these modules in LAYERS (tests/test_house_cpu.py): {unplaced}"


def test_no_import_cycle_at_module_level():
    _, eager, _ = _graph()
    cycles = _cycles(eager)
    assert not cycles, "module-level import cycles: " + "; ".join(" <-> ".join(map(_rel, c)) for c in cycles)


def test_module_level_imports_point_down():
    modules, eager, _ = _graph()
    up = [f"{_where(modules, a, line)} {_rel(a)} -> {_rel(b)}"
          for a, targets in eager.items() for b, line in targets.items()
          if _rank(a) is not None and _rank(b) is not None and _rank(b) > _rank(a)]
    assert not up, "module-level imports pointing up the layering (fix the import or LAYERS):\n" + "\n".join(up)


def test_lazy_upward_imports_only_from_the_allow_list():
    modules, eager, lazy = _graph()
    bad = _lazy_violations(modules, eager, lazy)
    new = {k: v for k, v in bad.items() if k not in ALLOWED_LAZY}
    stale = sorted(k for k in ALLOWED_LAZY if k not in bad)
    assert not new, "lazy imports pointing up the layering or closing a cycle (move the code down, or the " \
        "import to module level):\n" + "\n".join(f"{' '.join(v)}: {a} -> {b}" for (a, b), v in sorted(new.items()))
    assert not stale, f"fixed, strike them off ALLOWED_LAZY: {stale}"


def test_at_most_one_lazy_upward_import():
    # the house allows one, documented in docs/design.md: Kernel.launch (module -> launcher)
    assert len(ALLOWED_LAZY) <= 1, sorted(ALLOWED_LAZY)


def test_the_graph_checks_can_fail(tmp_path, monkeypatch):
    """The checks above on a made-up package: a module-level cycle, an upward module-level
    import, a lazy upward import and a lazy import closing a cycle are all found; a lazy
    import under TYPE_CHECKING or pointing down is not."""
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "errors.py": "",
        "device.py": "from . import errors\n",
        "event.py": "from .device import x\n",  # down: fine
        "stream.py": "from .event import Event\nfrom . import cli\n",  # up, eagerly
        "cli.py": "from .stream import Stream\n",  # ... and back: a cycle
        "module.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .cli import main\n"
                     "def f():\n    from .cli import main\n    from .device import d\n",
        "sub/__init__.py": "from .a import A\n",
        "sub/a.py": "from . import b\n",
        "sub/b.py": "def g():\n    from .a import A\n",  # closes sub.a -> sub.b
    }
    for rel, text in files.items():
        (pkg / rel).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", pkg)
    monkeypatch.setattr(sys.modules[__name__], "LAYERS",
                        (("errors",), ("device",), ("event",), ("stream",), ("module",), ("sub",), ("cli",)))
    modules, eager, lazy = _graph()
    assert [sorted(map(_rel, c)) for c in _cycles(eager)] == [["cli", "stream"]]
    assert _rank(f"{PACKAGE}.sub.b") == 5 and _rank(f"{PACKAGE}.nowhere") is None
    bad = _lazy_violations(modules, eager, lazy)
    assert set(bad) == {("module", "cli"), ("sub.b", "sub.a")}
    assert bad[("module", "cli")] == [f"{PACKAGE}/module.py:5"]
    with pytest.raises(AssertionError, match="stream.py:2 stream -> cli"):
        test_module_level_imports_point_down()
    with pytest.raises(AssertionError, match="cycles: cli <-> stream"):
        test_no_import_cycle_at_module_level()
    with pytest.raises(AssertionError, match="module.py:5: module -> cli"):
        test_lazy_upward_imports_only_from_the_allow_list()


def test_event_never_imports_stream():
    """stream -> event, never back (cuda.core's direction): not at module level, not lazily."""
    _, eager, lazy = _graph()
    assert f"{PACKAGE}.event" in eager[f"{PACKAGE}.stream"]
    assert f"{PACKAGE}.stream" not in eager[f"{PACKAGE}.event"]
    assert not [x for x in lazy if x[0] == f"{PACKAGE}.event" and x[1] == f"{PACKAGE}.stream"]
    assert not [x for x in lazy if x[0] == f"{PACKAGE}.device" and _rank(x[1]) > _rank(x[0])]


# --- the public API without a driver ---------------------------------------------------------------

USER_PATHS = ("cudart_kit.memory", "cudart_kit.launcher", "cudart_kit.stream", "cudart_kit.event",
              "cudart_kit.device", "cudart_kit.module", "cudart_kit.graph", "cudart_kit.trace",
              "cudart_kit.accounting", "cudart_kit.build", "cudart_kit.ops.vector", "cudart_kit.ops.gemm",
              "cudart_kit.experiments.overlap", "cudart_kit.bench", "cudart_kit.memory.ipc",
              "cudart_kit.memory.peer", "cudart_kit.collectives", "cudart_kit.bandwidth")


def _import_in_fresh_interpreter(paths) -> subprocess.CompletedProcess:
    code = f"""
import importlib, os, sys, types
import cudart_kit as ck
missing = [n for n in ck.__all__ if getattr(ck, n, None) is None]
assert not missing, f"cudart_kit.__all__ names that do not resolve: {{missing}}"
for path in {tuple(paths)!r}:
    mod = importlib.import_module(path)
    assert isinstance(mod, types.ModuleType), path
    gone = [n for n in getattr(mod, "__all__", ()) if not hasattr(mod, n)]
    assert not gone, f"{{path}}.__all__ names that do not resolve: {{gone}}"
import cudart_kit._driver as d
assert d._driver is None and d._init_error is None, "importing touched the driver"
if os.path.exists("/proc/self/maps"):
    with open("/proc/self/maps") as f:
        assert "libcuda.so" not in f.read(), "importing loaded libcuda"
print("ok")
"""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_public_api_imports_without_a_driver():
    """In a fresh interpreter: every name of cudart_kit.__all__ resolves, every module path users
    import imports (and each of its own __all__ resolves), and the driver was not initialised
    (no cuInit: the kit's loader untouched and, where /proc tells, no libcuda mapped)."""
    out = _import_in_fresh_interpreter(USER_PATHS)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == "ok"


def test_public_api_check_can_fail():
    out = _import_in_fresh_interpreter(USER_PATHS + ("cudart_kit.no_such_module",))
    assert out.returncode != 0 and "cudart_kit.no_such_module" in out.stderr


# --- Event.record through the stream -------------------------------------------------------------

class _FakeDevice:
    def __init__(self, ordinal: int):
        self.ordinal = ordinal

    def activate(self):
        return nullcontext(self)


class _FakeCore:
    def __init__(self):
        self.recorded = []

    def record(self, event_core):
        self.recorded.append(event_core)


def _fake_pair(stream_device=0, event_device=0):
    from cudart_kit.event import Event
    from cudart_kit.stream import Stream

    dev = _FakeDevice(0)
    s = object.__new__(Stream)
    s._core, s._handle, s.device = _FakeCore(), 0x1234, dev if stream_device == 0 else _FakeDevice(stream_device)
    s.owned, s._owner, s._finalizer, s._capture = False, None, None, None
    ev = object.__new__(Event)
    ev._core, ev.device, ev.timing, ev._recorded = object(), dev if event_device == 0 else _FakeDevice(event_device), True, False
    return s, ev


def test_event_record_is_the_streams_record():
    import cudart_kit as ck

    s, ev = _fake_pair()
    assert ev.record(s) is ev and ev._recorded and s._core.recorded == [ev._core]
    s2, ev2 = _fake_pair()
    assert s2.record(ev2) is ev2 and ev2._recorded and s2._core.recorded == [ev2._core]
    # foreign streams: coerce first, the event module knows no stream coercion
    for foreign in (0, object(), type("CupyLike", (), {"record": lambda self, e=None: None})()):
        with pytest.raises(ck.StreamError, match="as_stream"):
            ev.record(foreign)
    s3, ev3 = _fake_pair(stream_device=1)
    with pytest.raises(ck.DeviceMismatchError, match="device 0 recorded on a stream of device 1"):
        ev3.record(s3)
    assert not ev3._recorded and s3._core.recorded == []
    s4, ev4 = _fake_pair()
    s4._core = None
    with pytest.raises(ck.ClosedError, match="0x1234"):
        ev4.record(s4)
    assert not ev4._recorded


# --- CUDA_VISIBLE_DEVICES, explained once -------------------------------------------------------

def test_visible_devices_hint(monkeypatch):
    from cudart_kit.errors import visible_devices_hint

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    unset = visible_devices_hint()
    assert "nvidia-smi" in unset and "CUDA_VISIBLE_DEVICES is not set" in unset
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    empty = visible_devices_hint("no device")
    assert empty.startswith("no device; CUDA_VISIBLE_DEVICES='' hides every GPU")
    assert visible_devices_hint(empty) == empty  # said once, however many layers wrap it
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    some = visible_devices_hint()
    assert "CUDA_VISIBLE_DEVICES='1,3'" in some and "numbered from 0" in some
    assert visible_devices_hint(empty) != empty  # a different value is named again


def test_errors_that_explain_visible_devices_use_the_hint(monkeypatch):
    import cudart_kit as ck
    from cudart_kit import device as device_mod
    from cudart_kit import errors

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    for code, name in ((100, "CUDA_ERROR_NO_DEVICE"), (101, "CUDA_ERROR_INVALID_DEVICE")):
        err = errors.CudaDriverError(name, code, "cuDeviceGet")
        assert "CUDA_VISIBLE_DEVICES='7' limits this process" in str(err)
    assert "CUDA_VISIBLE_DEVICES" not in str(errors.CudaDriverError("CUDA_ERROR_INVALID_VALUE", 1, "cuX"))
    monkeypatch.setattr(device_mod.drv, "device_count", lambda: 1)
    with pytest.raises(ck.NoDeviceError) as info:
        device_mod.get_device(5)
    assert str(info.value).startswith("device index 5 out of range: 1 device(s) visible; CUDA_VISIBLE_DEVICES='7'")
