"""The kit's one launch core: launch geometry (checked against the device and the kernel, never
clamped), cached cuda.core LaunchConfigs, the single cuLaunchKernel path every launch of the kit
ends in, and LaunchPlan (a launch packed once whose slots, its pointers and other per-call
arguments, are rebound per call): the kit's one "plan once, launch many" (the benchmark's gate,
matmul's plans and cached fast paths).

It sits below memory and the public launcher (cudart_kit.launcher): it knows kernels, streams
and devices, not arrays. Everything here takes already-coerced kit objects.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np

from . import _driver as drv
from .device import Device
from .errors import ArgumentError, LaunchConfigError, driver_error, translate
from .event import begin_timing, end_timing
from .module import Kernel
from .stream import Stream, closed_stream_error

__all__ = ["blocks_for", "check_geometry", "config", "config_1d", "do_launch", "fast_launch", "LaunchPlan"]


def _whole(v, what: str) -> int:
    """``v`` as a Python int (ints and numpy integers only; bools, floats and strings refused)."""
    if type(v) is int:
        return v
    try:
        if isinstance(v, (bool, np.bool_)):
            raise TypeError
        return operator.index(v)
    except TypeError:
        raise ArgumentError(f"{what} must be an integer, got {v!r} ({type(v).__name__})") from None


def blocks_for(n: int, per_block: int) -> int:
    """ceil(n / per_block), at least 1 (a grid is never empty): the blocks that cover ``n`` work
    items (n >= 0) with ``per_block`` items each (>= 1). LaunchConfigError (a ValueError) for a
    negative ``n`` or a ``per_block`` below 1, ArgumentError (a TypeError) for non-integers,
    each naming the argument; nothing is clamped."""
    n = _whole(n, "blocks_for: n")
    per_block = _whole(per_block, "blocks_for: per_block")
    if per_block <= 0:
        raise LaunchConfigError(f"blocks_for: per_block must be >= 1, got {per_block}")
    if n < 0:
        raise LaunchConfigError(f"blocks_for: n must be >= 0 (a count of work items), got {n}")
    return max(1, -(-n // per_block))


def _dim3(v, what: str) -> tuple[int, int, int]:
    """A grid or block as three ints: an integer, or a tuple / list of 1 to 3 integers (numpy
    integers too). ArgumentError (a TypeError) for anything else (a float, a string, a bool),
    never a silent truncation; LaunchConfigError for a count or a dimension out of range."""
    if type(v) is int or (isinstance(v, np.integer) and not isinstance(v, np.bool_)):
        t = (int(v), 1, 1)
    else:
        if not isinstance(v, (tuple, list)):
            raise ArgumentError(f"{what} must be an integer or a tuple of 1 to 3 integers, got {v!r} "
                                f"({type(v).__name__})")
        t = tuple(_whole(x, f"{what}[{i}]") for i, x in enumerate(v))
        if not 1 <= len(t) <= 3:
            raise LaunchConfigError(f"{what} must have 1 to 3 dimensions, got {v!r}")
        t = t + (1,) * (3 - len(t))
    if any(x < 1 for x in t):
        raise LaunchConfigError(f"{what} dimensions must be >= 1, got {t}")
    return t


@dataclass(frozen=True)
class _Limits:
    max_block: tuple
    max_grid: tuple
    max_threads: int
    max_shared_optin: int


_limits_cache: dict[int, _Limits] = {}


def _limits(device: Device) -> _Limits:
    lim = _limits_cache.get(device.ordinal)
    if lim is None:
        a = device.attribute
        lim = _limits_cache[device.ordinal] = _Limits(
            (a("max_block_dim_x"), a("max_block_dim_y"), a("max_block_dim_z")),
            (a("max_grid_dim_x"), a("max_grid_dim_y"), a("max_grid_dim_z")),
            a("max_threads_per_block"),
            a("max_shared_memory_per_block_optin"),
        )
    return lim


def check_geometry(kernel: Kernel, device: Device, grid, block, shared_mem_bytes: int = 0):
    """Validate grid / block / dynamic shared memory against the device and the kernel.

    Returns normalized (grid3, block3). Nothing is clamped: out-of-range values raise
    LaunchConfigError naming the limit."""
    g = _dim3(grid, "grid")
    b = _dim3(block, "block")
    lim = _limits(device)
    threads = b[0] * b[1] * b[2]
    for i, axis in enumerate("xyz"):
        if b[i] > lim.max_block[i]:
            raise LaunchConfigError(f"block.{axis}={b[i]} exceeds the device limit {lim.max_block[i]}")
        if g[i] > lim.max_grid[i]:
            raise LaunchConfigError(f"grid.{axis}={g[i]} exceeds the device limit {lim.max_grid[i]}")
    if threads > lim.max_threads:
        raise LaunchConfigError(f"block of {threads} threads exceeds the device limit of {lim.max_threads} threads per block")
    kmax = kernel.max_threads_per_block(device)
    if threads > kmax:
        raise LaunchConfigError(
            f"block of {threads} threads exceeds {kernel.name}'s limit of {kmax} threads per block "
            "(set by its register use)"
        )
    if shared_mem_bytes < 0 or shared_mem_bytes > lim.max_shared_optin:
        raise LaunchConfigError(
            f"{shared_mem_bytes} bytes of dynamic shared memory outside 0..{lim.max_shared_optin} (device per-block opt-in limit)"
        )
    return g, b


_config_cache: dict = {}


def config(grid3, block3, shared_mem_bytes: int):
    key = (grid3, block3, shared_mem_bytes)
    cfg = _config_cache.get(key)
    if cfg is None:
        from cuda.core import LaunchConfig

        cfg = LaunchConfig(grid=grid3, block=block3, shmem_size=shared_mem_bytes)
        if len(_config_cache) > 4096:
            _config_cache.clear()
        _config_cache[key] = cfg
    return cfg


_core_launch = None


def do_launch(stream: Stream, cfg, kernel: Kernel, packed: tuple) -> None:
    """One cuLaunchKernel through cuda.core. A CUkernel launched on a real stream runs in that
    stream's context, so no context switch is needed; the default-stream handles use the
    current context, which is then made the stream device's primary one."""
    global _core_launch
    launch_fn = _core_launch
    if launch_fn is None:
        from cuda.core import launch as launch_fn

        _core_launch = launch_fn
    core = stream._core
    if core is None:  # every launch path of the kit ends here: no launch on a closed stream
        raise closed_stream_error(stream)
    try:
        if stream._handle <= 2:  # 0, 1, 2: the NULL, legacy and per-thread default streams
            with stream.device.activate():
                launch_fn(core, cfg, kernel.core, *packed)
        else:
            launch_fn(core, cfg, kernel.core, *packed)
    except Exception as exc:
        raise translate(exc, "cuLaunchKernel", f"launching {kernel.name}") from exc


def fast_launch(kernel: Kernel, grid: int, block: int, args: tuple, stream: Stream, timed: bool = False):
    """Launch path of the kit's own ops, whose geometry (1-D, at most ``block`` <= 256 threads,
    grid from blocks_for) and argument types the wrapper already guarantees. ``args`` must be
    already packed (ints for pointers and 8-byte integers, numpy scalars otherwise).
    Returns a TimingRecord when ``timed``, else None."""
    cfg = _fast_configs.get((grid, block)) or config_1d(grid, block)
    if not timed:
        do_launch(stream, cfg, kernel, args)
        return None
    start = begin_timing(stream, True)
    do_launch(stream, cfg, kernel, args)
    return end_timing(kernel.name, stream, start, {"grid": (grid, 1, 1), "block": (block, 1, 1), "shared_mem_bytes": 0})


_fast_configs: dict = {}


def config_1d(grid: int, block: int):
    """Cached cuda.core LaunchConfig for a 1-D launch (grid checked against 2^31-1)."""
    cfg = _fast_configs.get((grid, block))
    if cfg is None:
        if grid > 2147483647:
            raise LaunchConfigError(f"grid.x={grid} exceeds 2^31-1 blocks: the array is too large for one launch")
        cfg = config((grid, 1, 1), (block, 1, 1), 0)
        if len(_fast_configs) > 4096:
            _fast_configs.clear()
        _fast_configs[(grid, block)] = cfg
    return cfg




_cu_launch = None  # cuda.bindings' cuLaunchKernel, looked up on the first direct launch


def issue(args: tuple, name: str) -> None:
    """cuLaunchKernel(*args) (a LaunchPlan.direct_args tuple); a failure raises the kit's
    translated error naming kernel ``name``."""
    global _cu_launch
    f = _cu_launch
    if f is None:
        f = _cu_launch = drv.driver().cuLaunchKernel
    try:
        (res,) = f(*args)
    except Exception as exc:
        raise translate(exc, "cuLaunchKernel", f"launching {name}") from exc
    if res:
        raise driver_error(res, "cuLaunchKernel", f"launching {name}")


class LaunchPlan:
    """A launch packed once: kernel, LaunchConfig and the argument tuple, with the positions of
    its per-call arguments (``slots``) rebound per call. Geometry and the argument count are
    checked when the plan is made, argument widths by whoever packed ``args`` (``pack_args``, or
    a kit op that packs fixed-width numpy scalars itself).

    A slot is usually a pointer (a Python int), but any value cuda.core's launch packs may be
    bound there: a numpy scalar (matmul's alpha and beta) or a cuda.core tensor-map descriptor
    (the sm90 matmul's ``CUtensorMap`` parameters, passed by value). Bound values go to the
    launch as they are: the caller gives them the parameter's type.

    Launched without rebinding (``ptrs`` empty), a plan whose arguments are all ints and numpy
    scalars is packed once more, into the driver's ``void*[]``, and issued with cuLaunchKernel
    directly (cuda.core's launch re-packs its arguments on every call); default-stream handles
    (0, 1, 2), rebound plans and plans holding other objects take cuda.core's launch."""

    __slots__ = ("kernel", "cfg", "args", "slots", "grid", "block", "shared_mem_bytes", "_raw", "_cu")

    def __init__(self, kernel: Kernel, device: Device, grid, block, args: tuple, slots: tuple = (),
                 shared_mem_bytes: int = 0):
        g, b = check_geometry(kernel, device, grid, block, shared_mem_bytes)
        if len(args) != len(kernel.param_sizes):
            raise ArgumentError(f"{kernel.name} takes {len(kernel.param_sizes)} arguments, got {len(args)}")
        kernel.ensure_dynamic_shared(device, shared_mem_bytes)
        self.kernel = kernel
        self.cfg = config(g, b, shared_mem_bytes)
        self.args = tuple(args)
        self.slots = tuple(slots)
        self.grid, self.block, self.shared_mem_bytes = g, b, shared_mem_bytes
        self._raw = None  # (CUfunction, keep-alive, params address), False when not packable
        self._cu = None  # (kit Stream, its CUstream object) of the last direct launch

    def bind(self, ptrs) -> tuple:
        """The argument tuple with ``ptrs`` in the pointer slots (in slot order)."""
        if not self.slots:
            return self.args
        args = list(self.args)
        for i, p in zip(self.slots, ptrs):
            args[i] = p
        return tuple(args)

    def _pack(self):
        if all(type(v) is int or isinstance(v, np.generic) for v in self.args):
            try:
                keep, addr = drv.kernel_params(self.args, self.kernel.param_sizes)
                self._raw = (drv.function_handle(int(self.kernel.core.handle)), keep, addr)
                return self._raw
            except Exception:  # anything unusual: cuda.core's launch packs it
                pass
        self._raw = False
        return False

    def direct_args(self, stream: Stream, remember: bool = True) -> "tuple | None":
        """The whole argument tuple of ``cuLaunchKernel`` for this plan on ``stream`` (an open
        kit Stream): ``issue(args)`` queues it. Made once per stream and kept with the plan when
        ``remember`` (the plan then holds ``stream``); with ``remember=False`` nothing holds the
        stream (a caller that checks the stream's life itself). None when the plan cannot launch
        directly (rebindable slots, objects cuda.core must pack, a default-stream handle). The
        tuple names the stream's handle: use it only while that stream exists."""
        cu = self._cu
        if cu is not None and cu[0] is stream and stream._core is not None:  # a handle is fixed for a Stream's life
            return cu[1]
        raw = self._raw
        if raw is None:
            raw = self._pack()
        if not raw or self.slots or stream._handle <= 2 or stream._core is None:
            return None
        g, b = self.grid, self.block
        args = (raw[0], g[0], g[1], g[2], b[0], b[1], b[2], self.shared_mem_bytes,
                drv.stream_handle_object(stream._handle), raw[2], 0)
        if remember:
            self._cu = (stream, args)
        return args

    def _direct(self, stream: Stream) -> bool:
        """Issue the packed arguments with cuLaunchKernel; False when this launch cannot."""
        args = self.direct_args(stream)
        if args is None:
            return False
        issue(args, self.kernel.name)
        return True

    def launch(self, stream: Stream, ptrs=(), timed: bool = False):
        """Queue the plan on ``stream`` (a kit Stream) with ``ptrs`` bound; a TimingRecord when
        ``timed``, else None."""
        start = begin_timing(stream, True) if timed else None
        if ptrs:
            do_launch(stream, self.cfg, self.kernel, self.bind(ptrs))
        elif not self._direct(stream):
            do_launch(stream, self.cfg, self.kernel, self.args)
        if start is None:
            return None
        return end_timing(self.kernel.name, stream, start,
                          {"grid": self.grid, "block": self.block, "shared_mem_bytes": self.shared_mem_bytes})
