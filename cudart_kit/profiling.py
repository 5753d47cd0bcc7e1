"""NVTX ranges around the kit's work, for Nsight Systems and Nsight Compute (``--nvtx``).

Off by default. ``cudart_kit.profiling.enable()`` (or ``CUDART_KIT_NVTX=1`` in the environment
before the first kit call) turns them on; then every op, copy, launch, matmul, graph replay
and overlap stage pushes a range named after it (``ops.add``, ``copy``, ``launch:<kernel>``,
``matmul:<algo>``, ``graph.replay``, ``overlap:<stage>``) in the NVTX domain ``cudart_kit``.
Ranges need the optional ``nvtx`` package (extra ``nvtx``). When off, an instrumented call
costs one read of a module attribute: ``if profiling.ENABLED:``.
"""

from __future__ import annotations

import contextlib
import os
import threading

from .errors import CudaKitError

__all__ = ["ENABLED", "DOMAIN", "enable", "disable", "is_enabled", "push", "pop", "range", "traced"]

DOMAIN = "cudart_kit"
ENABLED = False  # read directly by the instrumented hot paths

_lock = threading.Lock()
_domain = None
_attrs: dict[str, object] = {}


def _load():
    global _domain
    if _domain is None:
        try:
            import nvtx  # the PyPI package "nvtx" (NVIDIA's NVTX bindings)
        except ImportError as exc:
            raise CudaKitError(
                "NVTX ranges need the 'nvtx' package: pip install 'cudart-kit[nvtx]' (or pip install nvtx)"
            ) from exc
        _domain = nvtx.get_domain(DOMAIN)
    return _domain


def enable(on: bool = True) -> None:
    """Turn the kit's NVTX ranges on (or off with ``on=False``). Raises CudaKitError naming
    the missing extra when ``nvtx`` is not installed."""
    global ENABLED
    with _lock:
        if on:
            _load()
        ENABLED = bool(on)


def disable() -> None:
    enable(False)


def is_enabled() -> bool:
    return ENABLED


def push(name: str) -> None:
    """Open a range called ``name`` on this thread (no-op when off). Pair with :func:`pop`."""
    if not ENABLED:
        return
    attrs = _attrs.get(name)
    d = _domain
    if attrs is None:
        attrs = _attrs[name] = d.get_event_attributes(message=name)
    d.push_range(attrs)


def pop() -> None:
    if ENABLED:
        _domain.pop_range()


@contextlib.contextmanager
def _range(name: str):
    push(name)
    try:
        yield
    finally:
        pop()


_NULL = contextlib.nullcontext()


def range(name: str):  # noqa: A001 - the NVTX word
    """``with profiling.range("my step"):`` — a range of your own in the kit's domain."""
    return _range(name) if ENABLED else _NULL


def traced(name: str):
    """Decorator: the call runs inside a range ``name`` when ranges are on. When off it costs
    one flag test and the argument forwarding of a wrapper; the hottest ops test the flag
    inline instead (``if profiling.ENABLED:``) and pay only the test."""
    def deco(fn):
        def wrapper(*args, **kwargs):
            if not ENABLED:
                return fn(*args, **kwargs)
            push(name)
            try:
                return fn(*args, **kwargs)
            finally:
                pop()

        wrapper.__name__, wrapper.__qualname__, wrapper.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
        wrapper.__module__, wrapper.__wrapped__ = fn.__module__, fn
        return wrapper

    return deco


if os.environ.get("CUDART_KIT_NVTX", "").strip() not in ("", "0"):
    try:
        enable()
    except CudaKitError as _exc:  # asked for in the environment, cannot be honoured: say so once
        import warnings

        warnings.warn(f"CUDART_KIT_NVTX is set but ranges stay off: {_exc}", RuntimeWarning, stacklevel=2)
