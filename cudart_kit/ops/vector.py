"""Vector ops over kernels/vector.cu: add, sub, mul, axpy, scale, fill, copy, dot.

Each is one explicit launch on ``stream`` (required). Inputs are kit Arrays, views of them
(any rank, offsets, steps, negative steps, transposes) or device arrays with
``__cuda_array_interface__`` / ``__dlpack__`` (strided ones too); shapes, dtypes, device,
element alignment, closed arrays (and views of them) and closed streams are checked before
anything is queued, on the cached fast paths too. C-contiguous operands take the 16-byte
vectorized kernels; any other layout is collapsed to the fewest dimensions and runs the
strided twin of the kernel (kernels/strided.cu). ``out=`` is honoured (it may be one of the inputs) and is what an op
returns: the caller's own object (a PyTorch tensor stays a tensor), as in numpy / CuPy /
PyTorch. With ``timed=True`` an op returns ``(out, TimingRecord)`` instead of ``out``.
"""

from __future__ import annotations

import weakref

import numpy as np

from .. import profiling as _prof
from ..errors import DeviceMismatchError, DTypeError, ShapeError
from ..event import TimingRecord
from .._launch import LaunchPlan, blocks_for, check_geometry, config_1d, do_launch as _do_launch, fast_launch
from .._launch import issue as _issue
from ..memory import Array, bfloat16, closed_error, coerce, copy as _mem_copy, empty, memset
from ..memory.foreign import op_operand, torch_facts
from ..memory import layout as L
from ..memory.strided import element_aligned, launch_strided
from ..memory.transfer import WIDTH_NAMES as _WIDTH, fill_pattern as _bits
from ..module import Kernel, kit_kernel
from ..stream import Stream, as_stream, foreign_handle

__all__ = ["add", "sub", "mul", "axpy", "scale", "fill", "copy", "dot", "SUPPORTED_DTYPES", "BLOCK"]

BLOCK = 256
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64", np.dtype(np.float16): "f16"}
if bfloat16 is not None:
    _SUFFIX[bfloat16] = "bf16"
SUPPORTED_DTYPES = tuple(_SUFFIX)
def _kernel(name: str) -> Kernel:
    return kit_kernel("vector", name)


def _suffix(dtype: np.dtype, op: str, what: str = "x") -> str:
    try:
        return _SUFFIX[dtype]
    except KeyError:
        names = ", ".join(str(d) for d in SUPPORTED_DTYPES)
        raise DTypeError(f"{op}: {what} is {dtype}; {op} supports {names}") from None


def _operand(a, s: Stream, what: str, op: str) -> Array:
    if type(a) is Array:  # the common case, kept cheap: ops are launch-overhead bound on small data
        if a.ptr == 0 and a.nbytes:  # closed, or a view of a closed array (close() zeroes views' ptr)
            raise closed_error(a, f"{op}: {what}")
        arr = a
    else:
        arr = coerce(a, s, f"{op}: {what}", hold=False)
    if arr.device is not s.device and arr.kind in ("device", "foreign") and arr.ptr:
        raise DeviceMismatchError(
            f"{op}: {what} is on device {arr.device.ordinal} but the stream is on device {s.device.ordinal}"
        )
    if arr.nbytes and not element_aligned(arr.ptr, arr.strides, arr.itemsize):
        raise ShapeError(
            f"{op}: {what}'s elements are not {arr.itemsize}-byte aligned (ptr {hex(arr.ptr)}, strides "
            f"{arr.strides}): kernels load whole {arr.dtype} values; copy it to an aligned array with cudart_kit.copy"
        )
    return arr


def _same(arrs: list[Array], names: list[str], op: str) -> None:
    first = arrs[0]
    for a, n in zip(arrs[1:], names[1:]):
        if a.dtype != first.dtype:
            raise DTypeError(f"{op}: {names[0]} is {first.dtype} but {n} is {a.dtype}")
        if a.shape != first.shape:
            raise ShapeError(f"{op}: {names[0]} has shape {first.shape} but {n} has shape {a.shape}")


def _span(a: Array) -> tuple[int, int]:
    if a.c_contiguous:
        return a.ptr, a.ptr + a.nbytes
    lo, hi = L.extent(a.shape, a.strides, a.itemsize)
    return a.ptr + lo, a.ptr + hi


def _check_aliasing(out: Array, inputs: list[Array], op: str) -> None:
    """``out`` may be an input exactly (same address, same layout), never a partial overlap of
    the memory ranges (threads would race), and never hold one element twice (a zero stride)."""
    if not out.nbytes:
        return
    if not out.c_contiguous and L.has_zero_stride(out.shape, out.strides):
        raise ValueError(f"{op}: out has a zero stride (strides {out.strides}): several elements share one address")
    span = None
    for a in inputs:
        if not a.nbytes or (a.ptr == out.ptr and a.strides == out.strides):
            continue
        span = span or _span(out)
        if L.overlaps(span, _span(a)):
            raise ValueError(f"{op}: out partially overlaps an input; use a separate output or exactly the same array (view)")


def _out(out, like: Array, s: Stream, op: str) -> Array:
    if out is None:
        return empty(like.shape, like.dtype, stream=s)
    o = _operand(out, s, "out", op)
    _same([like, o], ["x", "out"], op)
    return o


_checked: set = set()  # (kernel name, device) pairs whose thread limit was verified


def _run(name: str, itemsize: int, n: int, args: tuple, arrays: list[Array], s: Stream, timed: bool):
    """Launch ``name`` (16-byte vectorized, one thread per vector) when every pointer is 16-byte
    aligned, else its scalar twin ``name_u``; its strided twin ``name_s`` when any operand is
    not C-contiguous. ``args`` holds Arrays where pointers go (the output last)."""
    if not all(a.c_contiguous for a in arrays):
        for a in arrays:
            a.record_stream(s)
        scalars = tuple(x for x in args[:-1] if type(x) is not Array)
        return launch_strided(name + "_s", scalars, [a.ptr for a in arrays], [a.strides for a in arrays],
                              arrays[-1].shape, itemsize, s, timed, name)
    vec = True
    for a in arrays:
        if a.ptr & 15:
            vec = False
            break
    if not vec:
        name += "_u"
    kernel = _kernel(name)
    dev = s.device
    if (name, dev.ordinal) not in _checked:
        check_geometry(kernel, dev, 1, BLOCK)
        _checked.add((name, dev.ordinal))
    per = 16 // itemsize if vec else 1
    for a in arrays:
        a.record_stream(s)
    packed = tuple(a.ptr if type(a) is Array else a for a in args)
    return fast_launch(kernel, blocks_for(-(-n // per), BLOCK), BLOCK, packed, s, timed)


def _result(out, rec: TimingRecord | None, timed: bool, s: Stream, name: str):
    """``out`` (the caller's object when one was given) or ``(out, rec)`` when ``timed``."""
    if not timed:
        return out
    if rec is None:  # nothing to launch (empty arrays): an honest zero-length record
        from ..event import begin_timing, end_timing

        rec = end_timing(name, s, begin_timing(s, True))
    return out, rec


_fast: dict = {}  # (op, dtype, vectorized) -> (kernel, elements per block)
_configs: dict = {}  # grid -> LaunchConfig of a BLOCK-thread 1-D launch (filled by config_1d)


def _fast_kernel(base: str, dtype, vec: bool, dev) -> tuple:
    """(kernel, elements per block) for an op; kernels are context-independent (CUlibrary), so
    one entry serves every device, but the thread limit is checked on each device once."""
    key = (base, dtype, vec)
    name = f"{base}_{_suffix(dtype, base)}" + ("" if vec else "_u")
    kernel = _kernel(name)
    if (name, dev.ordinal) not in _checked:
        check_geometry(kernel, dev, 1, BLOCK)
        _checked.add((name, dev.ordinal))
    hit = _fast[key] = (kernel, BLOCK * (16 // dtype.itemsize if vec else 1))
    return hit


def _config_for(grid: int):
    if len(_configs) > 4096:
        _configs.clear()
    cfg = _configs[grid] = config_1d(grid, BLOCK)
    return cfg


def _binary(base: str, x, y, out, stream, timed: bool):
    s = stream
    if type(s) is not Stream or s._core is None:  # one attribute read on the fast path
        if out is not None and not timed and type(s) is not Stream:
            # a foreign stream (a PyTorch stream object) with raw tensors: the plan is keyed by the
            # stream object itself, valid while it is alive and names the same CUstream
            plan = _tplans.get((base, id(x), id(y), id(out), id(s)))
            if plan is not None and plan[0]() is s and foreign_handle(s) == plan[9] and _replay(plan, x, y, out):
                return out
        s = as_stream(stream)
    # Fast path: contiguous kit Arrays (roots, views, wrapped foreign arrays) of one dtype, shape
    # and device (one interned signature, compared by identity), the very same memory or
    # disjoint. Small ops are bound by host overhead, so this case is checked in a few reads.
    if type(x) is Array and type(y) is Array and type(out) is Array:
        sig = x.sig
        xp, yp, op_ = x.ptr, y.ptr, out.ptr
        # kit-owned roots are distinct allocations (the same or disjoint); contiguous views and
        # foreign arrays (ck.asarray of a tensor) may share memory: exactly the same or disjoint
        nb = x.nbytes
        if (sig is y.sig and sig is out.sig and sig[3] and sig[2] is s.device and xp and yp and op_ and (
                sig[4] or ((xp == op_ or xp + nb <= op_ or op_ + nb <= xp)
                           and (yp == op_ or yp + nb <= op_ or op_ + nb <= yp)))):
            hit = _fast.get((base, sig[0], not ((xp | yp | op_) & 15)))
            if hit is None:
                hit = _fast_kernel(base, sig[0], not ((xp | yp | op_) & 15), s.device)
            kernel, per_block = hit
            if x.stream is not s:
                x.record_stream(s)
            if y.stream is not s:
                y.record_stream(s)
            if out.stream is not s:
                out.record_stream(s)
            n = x.size
            grid = (n + per_block - 1) // per_block
            if timed:
                return out, fast_launch(kernel, grid, BLOCK, (xp, yp, op_, n), s, True)
            cfg = _configs.get(grid)
            if cfg is None:
                cfg = _config_for(grid)
            _do_launch(s, cfg, kernel, (xp, yp, op_, n))
            return out
    elif out is not None and not timed and s._capture is None:
        # raw foreign tensors (the kit's first users pass PyTorch tensors straight in): a launch
        # plan per (op, tensors, stream), reused while every tensor is the same live tensor with
        # the same pointer, shape, strides and dtype and the stream is the same open stream (not
        # inside a kit capture: there the checked path makes the graph hold the tensors)
        plan = _tplans.get((base, id(x), id(y), id(out), id(s)))
        if plan is not None and plan[0]() is s and _replay(plan, x, y, out):  # s is open: coerced above
            return out
        # their validated cached Arrays, then the same few checks; anything unusual goes the checked way
        xa, ya, oa = op_operand(x), op_operand(y), op_operand(out)
        if xa is not None and ya is not None and oa is not None:
            sig = xa.sig
            xp, yp, op_ = xa.ptr, ya.ptr, oa.ptr
            if sig is ya.sig and sig is oa.sig and sig[3] and sig[2] is s.device and xp and yp and op_:
                nb = xa.nbytes
                # foreign memory may be views of one storage: exactly the same or disjoint only
                if (xp == op_ or xp + nb <= op_ or op_ + nb <= xp) and (yp == op_ or yp + nb <= op_ or op_ + nb <= yp):
                    hit = _fast.get((base, sig[0], not ((xp | yp | op_) & 15)))
                    if hit is None:
                        hit = _fast_kernel(base, sig[0], not ((xp | yp | op_) & 15), s.device)
                    kernel, per_block = hit
                    n = xa.size
                    grid = (n + per_block - 1) // per_block
                    if s._handle > 2:  # default-stream handles take the generic launch each time
                        _remember_torch(base, x, y, out, stream, s,
                                        LaunchPlan(kernel, s.device, grid, BLOCK, (xp, yp, op_, n)))
                    cfg = _configs.get(grid)
                    if cfg is None:
                        cfg = _config_for(grid)
                    _do_launch(s, cfg, kernel, (xp, yp, op_, n))
                    return out
    return _binary_checked(base, x, y, out, s, timed)


_tplans: dict = {}  # (op, id(x), id(y), id(out), id(stream)) -> plan over raw PyTorch tensors


def _replay(plan: tuple, x, y, out) -> bool:
    """Launch a ``_tplans`` entry if x, y and out are still the live tensors it was made for, with
    the data pointers, dtypes, shapes and strides it recorded (read inline: the hot path of a
    framework's small ops); False, launching nothing, otherwise."""
    fx, fy, fo = plan[4], plan[5], plan[6]
    if not (plan[1]() is x and plan[2]() is y and plan[3]() is out
            and x.data_ptr() == fx[0] and y.data_ptr() == fy[0] and out.data_ptr() == fo[0]
            and x.dtype is fx[3] and y.dtype is fy[3] and out.dtype is fo[3]
            and x.shape == fx[1] and y.shape == fy[1] and out.shape == fo[1]
            and x.stride() == fx[2] and y.stride() == fy[2] and out.stride() == fo[2]):
        return False
    _issue(plan[7], plan[8].kernel.name)
    return True


def _remember_torch(base: str, x, y, out, stream, s: Stream, plan: LaunchPlan) -> None:
    """Keep ``plan`` for these tensors and the stream the caller passed (``stream``: the kit
    Stream ``s`` or the foreign stream object it was adopted from). The entry holds weak
    references only (no tensor or stream is kept alive), the facts each use re-checks (data
    pointer, shape, strides, dtype) and, for a foreign stream, its CUstream handle; ids reused by
    new objects fail the weak-reference identity checks. Raw integer handles are never cached
    (a handle can be reused), nor plans that cannot launch directly."""
    facts = (torch_facts(x), torch_facts(y), torch_facts(out))
    args = plan.direct_args(s, remember=False)  # the entry must not keep a foreign stream alive
    if None in facts or args is None:
        return
    try:
        ref = weakref.ref(stream)
    except TypeError:
        return
    if len(_tplans) > 1024:
        _tplans.clear()
    _tplans[(base, id(x), id(y), id(out), id(stream))] = (
        ref, facts[0][0], facts[1][0], facts[2][0], facts[0][1:], facts[1][1:], facts[2][1:], args, plan, s._handle)


def _binary_checked(base: str, x, y, out, s: Stream, timed: bool):
    xa, ya = _operand(x, s, "x", base), _operand(y, s, "y", base)
    _same([xa, ya], ["x", "y"], base)
    suffix = _suffix(xa.dtype, base, "x")
    o = _out(out, xa, s, base)
    _check_aliasing(o, [xa, ya], base)
    rec = None
    if xa.size:
        rec = _run(f"{base}_{suffix}", xa.itemsize, xa.size, (xa, ya, o, xa.size), [xa, ya, o], s, timed)
    return _result(o if out is None else out, rec, timed, s, base)


def add(x, y, out=None, *, stream, timed: bool = False):
    """out = x + y, element-wise, on ``stream``.

    ``x``, ``y``: kit Arrays, views, or CAI / DLPack device arrays of one shape and dtype
    (float32, float64, float16, bfloat16), any layout, on the stream's device. ``out``: the same shape and
    dtype, any layout (may be ``x`` or ``y`` exactly, never a partial overlap); allocated on ``stream`` if omitted.
    Returns ``out`` itself (a foreign ``out`` comes back as the caller's object), or ``(out,
    TimingRecord)`` when ``timed``. Raises ClosedError (a closed array, a view of one, a closed
    stream), DTypeError, ShapeError, DeviceMismatchError before anything is queued."""
    if _prof.ENABLED:
        with _prof.range("ops.add"):
            return _binary("add", x, y, out, stream, timed)
    return _binary("add", x, y, out, stream, timed)


def sub(x, y, out=None, *, stream, timed: bool = False):
    """out = x - y, element-wise, on ``stream``; arguments, result and errors as :func:`add`."""
    if _prof.ENABLED:
        with _prof.range("ops.sub"):
            return _binary("sub", x, y, out, stream, timed)
    return _binary("sub", x, y, out, stream, timed)


def mul(x, y, out=None, *, stream, timed: bool = False):
    """out = x * y, element-wise, on ``stream``; arguments, result and errors as :func:`add`."""
    if _prof.ENABLED:
        with _prof.range("ops.mul"):
            return _binary("mul", x, y, out, stream, timed)
    return _binary("mul", x, y, out, stream, timed)


def _scalar(a, dtype: np.dtype):
    """The alpha parameter as the kernel takes it: double for float64, float otherwise."""
    if isinstance(a, (complex, np.complexfloating)):
        raise DTypeError("alpha must be real")
    return np.float64(a) if dtype == np.float64 else np.float32(a)


@_prof.traced("ops.axpy")
def axpy(a, x, y, out=None, *, stream, timed: bool = False):
    """out = a * x + y (BLAS axpy) on ``stream``. ``out`` defaults to ``y`` (updated in place).
    Returns ``out`` (``y`` by default) as the caller passed it, or ``(out, TimingRecord)`` when
    ``timed``. Checks as :func:`add`."""
    s = stream
    if type(s) is not Stream or s._core is None:
        s = as_stream(stream)
    o = y if out is None else out
    if type(x) is Array and type(y) is Array and type(o) is Array and type(a) in (float, int):
        sig = x.sig
        xp, yp, op_ = x.ptr, y.ptr, o.ptr
        if sig is y.sig and sig is o.sig and sig[4] and sig[3] and sig[2] is s.device and xp and yp and op_:
            vec = not ((xp | yp | op_) & 15)
            hit = _fast.get(("axpy", sig[0], vec)) or _fast_kernel("axpy", sig[0], vec, s.device)
            for arr in (x, y, o):
                if arr.stream is not s:
                    arr.record_stream(s)
            n = x.size
            alpha = np.float64(a) if sig[0] == np.float64 else np.float32(a)
            rec = fast_launch(hit[0], (n + hit[1] - 1) // hit[1], BLOCK, (alpha, xp, yp, op_, n), s, timed)
            return (o, rec) if timed else o
    xa, ya = _operand(x, s, "x", "axpy"), _operand(y, s, "y", "axpy")
    _same([xa, ya], ["x", "y"], "axpy")
    suffix = _suffix(xa.dtype, "axpy", "x")
    o = ya if out is None else _out(out, xa, s, "axpy")
    _check_aliasing(o, [xa, ya], "axpy")
    rec = None
    if xa.size:
        rec = _run(f"axpy_{suffix}", xa.itemsize, xa.size, (_scalar(a, xa.dtype), xa, ya, o, xa.size), [xa, ya, o], s, timed)
    return _result(y if out is None else out, rec, timed, s, "axpy")


@_prof.traced("ops.scale")
def scale(a, x, out=None, *, stream, timed: bool = False):
    """out = a * x on ``stream``. ``out`` defaults to a new array; a given ``out`` is returned
    as the caller passed it (``(out, TimingRecord)`` when ``timed``). Checks as :func:`add`."""
    s = as_stream(stream)
    xa = _operand(x, s, "x", "scale")
    suffix = _suffix(xa.dtype, "scale", "x")
    o = _out(out, xa, s, "scale")
    _check_aliasing(o, [xa], "scale")
    rec = None
    if xa.size:
        rec = _run(f"scale_{suffix}", xa.itemsize, xa.size, (_scalar(a, xa.dtype), xa, o, xa.size), [xa, o], s, timed)
    return _result(o if out is None else out, rec, timed, s, "scale")


@_prof.traced("ops.fill")
def fill(out, value, *, stream, timed: bool = False):
    """Set every element of ``out`` to ``value`` (converted to its dtype) on ``stream``.
    Works for every dtype of width 1, 2, 4 or 8 bytes. Returns ``out`` as the caller passed it
    (``(out, TimingRecord)`` when ``timed``). DTypeError when ``value`` does not fit the dtype."""
    s = as_stream(stream)
    o = _operand(out, s, "out", "fill")
    width = _WIDTH.get(o.itemsize)
    if width is None:
        raise DTypeError(f"fill: out is {o.dtype} ({o.itemsize} bytes); fill supports element widths 1, 2, 4, 8 bytes")
    rec = None
    if o.size:
        rec = _run(f"fill_{width}", o.itemsize, o.size, (_bits(value, o.dtype), o, o.size), [o], s, timed)
    return _result(out, rec, timed, s, "fill")


@_prof.traced("ops.copy")
def copy(x, out=None, *, stream, timed: bool = False):
    """out = x (a kernel copy, any dtype of width 1/2/4/8) on ``stream``. ``out`` defaults to a
    new array; a given ``out`` is returned as the caller passed it (``(out, TimingRecord)`` when
    ``timed``). For raw byte copies between any memory kinds, see :func:`cudart_kit.copy`."""
    s = as_stream(stream)
    xa = _operand(x, s, "x", "copy")
    o = _out(out, xa, s, "copy")
    _check_aliasing(o, [xa], "copy")
    width = _WIDTH.get(xa.itemsize)
    if width is None:
        raise DTypeError(f"copy: x is {xa.dtype} ({xa.itemsize} bytes); copy supports element widths 1, 2, 4, 8 bytes")
    rec = None
    if xa.size and o.ptr != xa.ptr:
        rec = _run(f"copy_{width}", xa.itemsize, xa.size, (xa, o, xa.size), [xa, o], s, timed)
    return _result(o if out is None else out, rec, timed, s, "copy")


def dot_grid(n: int, vec_width: int, sm_count: int) -> int:
    """Blocks for dot: enough to fill the GPU (8 blocks of 256 per SM), no more than the work."""
    return max(1, min(blocks_for(-(-n // vec_width), BLOCK), sm_count * 8))


@_prof.traced("ops.dot")
def dot(x, y, out=None, *, stream, timed: bool = False):
    """Inner product of two 1-D (or same-shape) arrays, accumulated in float64 on the GPU.

    ``out``: a 0-d or 1-element array of the inputs' dtype (a new 0-d array by default),
    returned as the caller passed it (``(out, TimingRecord)`` when ``timed``). One launch,
    deterministic for a given device; a small workspace is allocated and freed on ``stream``.
    A strided operand is first packed into a contiguous temporary on ``stream`` (one copy
    kernel). Checks as :func:`add`."""
    s = as_stream(stream)
    xa, ya = _operand(x, s, "x", "dot"), _operand(y, s, "y", "dot")
    _same([xa, ya], ["x", "y"], "dot")
    suffix = _suffix(xa.dtype, "dot", "x")
    if out is None:
        o = empty((), xa.dtype, stream=s)
    else:
        o = _operand(out, s, "out", "dot")
        if o.size != 1 or o.dtype != xa.dtype:
            raise ShapeError(f"dot: out must hold one {xa.dtype} element, got shape {o.shape} dtype {o.dtype}")
    ret = o if out is None else out
    n = xa.size
    temps = []
    if n and not (xa.c_contiguous and ya.c_contiguous):
        # a strided operand is packed into a stream-ordered temporary first (one copy kernel);
        # the reduction then reads contiguous data in the same deterministic order as always
        for a in (xa, ya):
            if not a.c_contiguous:
                t = empty(a.shape, a.dtype, stream=s, _in_graph=True)
                _mem_copy(t, a, stream=s)
                temps.append(t)
        xa = temps[0] if not xa.c_contiguous else xa
        ya = temps[-1] if not ya.c_contiguous else ya
    if n == 0:
        fill(o, 0, stream=s)
        return _result(ret, None, timed, s, "dot")
    vec = not (xa.ptr & 15 or ya.ptr & 15)
    per = 16 // xa.itemsize if vec else 1
    grid = dot_grid(n, per, s.device.multiprocessor_count)
    # partials, then the ticket in the last slot; allocated and freed in stream order (inside a
    # graph capture this becomes an alloc node and a free node of the graph)
    work = empty(grid + 1, np.float64, stream=s, _in_graph=True)
    memset(work, 0, stream=s)
    name = f"dot_{suffix}" if vec else f"dot_{suffix}_u"
    kernel = _kernel(name)
    if (name, s.device.ordinal) not in _checked:
        check_geometry(kernel, s.device, grid, BLOCK)
        _checked.add((name, s.device.ordinal))
    for a in (xa, ya, o):
        a.record_stream(s)
    rec = fast_launch(kernel, grid, BLOCK, (xa.ptr, ya.ptr, work.ptr, work.ptr + grid * 8, o.ptr, n), s, timed)
    work.close()
    for t in temps:
        t.close()
    return _result(ret, rec, timed, s, "dot")
