"""The bad-input matrix: every public entry point that takes arrays or streams, against every kind
of bad (or merely unusual) input.

Each cell is one of two things, decided by the EXPECT table below:

* a typed kit error: the exact class is asserted, and a regular expression over the message
  that names the argument (``add: x is a view of a closed array``) or the stream
  (``stream <cudart_kit.Stream 0x... owned device=0 closed> is closed``);
* a correct result against a numpy (float64 where arithmetic is involved) reference on fresh
  random data.

After every cell a normal op on the same stream must still be right (``ops.add`` of two fresh
random arrays checked against numpy): a refused call leaves everything usable.

Conditions (CONDS): closed array, view of a closed array, closed stream, stream of another
device (skipped with one GPU), wrong dtype, wrong shape, non-contiguous (a strided foreign
tensor), zero-size, huge size (a foreign array claiming 2**62+ elements, or a size no device
holds), foreign array (a PyTorch tensor) where accepted. Cells that mean nothing for an entry
point (a closed array given to ``empty``, which takes none) are not in the table.
"""

from __future__ import annotations

import gc
import re
import weakref
from dataclasses import dataclass

import numpy as np
import pytest

import cudart_kit as ck
from cudart_kit import ops

N = 257                       # an awkward size: not a multiple of any vector width or block
M, K, NN = 33, 17, 29         # matmul: op(a) is M x K, op(b) is K x NN
HUGE = 2**62                  # elements of the "huge" foreign array: 2**64 bytes of float32

CONDS = ["closed", "view_of_closed", "closed_stream", "other_device", "wrong_dtype", "wrong_shape",
         "non_contiguous", "zero_size", "huge", "foreign"]


@dataclass(frozen=True)
class Err:
    cls: type
    pattern: str


OK = object()  # the cell must give a correct result
STREAM_CLOSED = Err(ck.ClosedError, r"^stream <cudart_kit\.Stream 0x[0-9a-f]+ owned device=0 closed> is closed")


# ---- the environment of one cell --------------------------------------------------------

class FakeHuge:
    """A foreign array claiming more memory than any address space holds (never dereferenced:
    the kit must refuse it from its shape alone)."""

    def __init__(self, shape=(HUGE,), typestr="<f4"):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (0x10000, False),
                                         "strides": None, "version": 3}


class FakeCAI:
    """A foreign array with an arbitrary CAI dict (for malformed typestr / shape cells)."""

    def __init__(self, shape, typestr="<f4"):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (0x10000, False),
                                         "strides": None, "version": 3}


class Env:
    def __init__(self, device, stream, rng):
        self.dev, self.s, self.rng = device, stream, rng
        self._own: list = []

    # -- inputs ---------------------------------------------------------------------------
    def host(self, shape, dtype=np.float32):
        x = self.rng.uniform(-2.0, 2.0, shape)
        x[np.abs(x) < 1e-3] = 0.5  # away from zero: relative checks mean something
        return x.astype(dtype)

    def rand(self, shape, dtype=np.float32, stream=None):
        h = self.host(shape, dtype)
        return ck.to_device(h, stream=stream or self.s), h

    def poison(self, shape, dtype=np.float32, stream=None):
        return ck.to_device(np.full(shape, np.nan, dtype), stream=stream or self.s)

    def closed(self, shape, dtype=np.float32):
        a = ck.empty(shape, dtype, stream=self.s)
        a.close()
        return a

    def view_closed(self, shape, dtype=np.float32):
        root = ck.empty(int(np.prod(shape)), dtype, stream=self.s)
        view = root.reshape(shape)
        root.close()
        return view

    def closed_stream(self):
        s = ck.Stream.create(self.dev)
        s.close()
        return s

    def other_stream(self):
        if ck.device_count() < 2:
            pytest.skip("a stream of another device needs a second GPU; this machine has one")
        s = ck.Stream.create(1)
        self._own.append(s)
        return s

    @property
    def torch(self):
        return pytest.importorskip("torch")

    def trand(self, shape, dtype=np.float32):
        h = self.host(shape, dtype)
        t = self.torch.from_numpy(h).cuda()
        self.torch.cuda.synchronize()  # torch's stream is not ordered with the kit's
        return t, h

    def tpoison(self, shape, dtype=None):
        t = self.torch.full(shape if isinstance(shape, tuple) else (shape,), float("nan"),
                            dtype=dtype or self.torch.float32, device="cuda")
        self.torch.cuda.synchronize()
        return t

    def strided(self):
        """A (16, 8) float32 torch view with a column stride of 2 (not contiguous) and its host copy."""
        t, h = self.trand((16, 16))
        return t[:, ::2], h[:, ::2]

    # -- checks -----------------------------------------------------------------------------
    def check(self, got, ref, rtol=1.2e-7, atol=1e-30):
        got64 = np.asarray(got, dtype=np.float64)
        ref64 = np.asarray(ref, dtype=np.float64)
        assert got64.shape == ref64.shape, f"shape {got64.shape}, want {ref64.shape}"
        assert not np.isnan(got64).any(), "some outputs were never written (still NaN poison)"
        bad = np.abs(got64 - ref64) > rtol * np.abs(ref64) + atol
        assert not bad.any(), f"{bad.sum()} of {bad.size} elements off: got {got64[bad][:3]}, want {ref64[bad][:3]}"

    def tnumpy(self, t):
        self.s.sync()  # the kit wrote it on self.s
        return t.cpu().numpy()

    def still_works(self):
        still_works(self.s, self.rng)

    def close(self):
        for s in self._own:
            s.sync()
            s.close()


def still_works(stream, rng):
    """A normal op on ``stream`` is right: two fresh random arrays, ops.add, numpy reference."""
    hx, hy = rng.standard_normal(1000).astype(np.float32), rng.standard_normal(1000).astype(np.float32)
    x, y = ck.to_device(hx, stream=stream), ck.to_device(hy, stream=stream)
    out = ops.add(x, y, stream=stream)
    np.testing.assert_array_equal(out.to_numpy(stream=stream), hx + hy)  # one float32 rounding, as numpy


def f64(*hs):
    return [np.asarray(h, np.float64) for h in hs]


# ---- entry points -----------------------------------------------------------------------
# Each runs one cell: it makes the inputs for the condition, calls the entry point (the call
# raises in error cells) and checks the result (reached in OK cells only).

ELEMENTWISE = {
    # name: (argument changed for wrong dtype / shape, call, float64 reference)
    "add": ("y", lambda x, y, o, s: ops.add(x, y, o, stream=s), lambda x, y: x + y),
    "sub": ("y", lambda x, y, o, s: ops.sub(x, y, o, stream=s), lambda x, y: x - y),
    "mul": ("y", lambda x, y, o, s: ops.mul(x, y, o, stream=s), lambda x, y: x * y),
    "axpy": ("y", lambda x, y, o, s: ops.axpy(1.5, x, y, o, stream=s), lambda x, y: 1.5 * x + y),
    "scale": ("out", lambda x, y, o, s: ops.scale(1.5, x, o, stream=s), lambda x, y: 1.5 * x),
    "ops.copy": ("out", lambda x, y, o, s: ops.copy(x, o, stream=s), lambda x, y: x),
}


def run_elementwise(name):
    other, call, ref = ELEMENTWISE[name]

    def run(c, E):
        s = E.s
        if c == "zero_size":
            (x, hx), (y, hy) = E.rand(0), E.rand(0)
            res = call(x, y, None, s)
            assert isinstance(res, ck.Array) and res.shape == (0,)
            assert res.to_numpy(stream=s).shape == (0,)
            return
        if c == "foreign":
            (tx, hx), (ty, hy) = E.trand(N), E.trand(N)
            to = E.tpoison(N)
            res = call(tx, ty, to, s)
            assert res is to, f"{name}: a foreign out= must come back as the caller's object, got {type(res).__name__}"
            E.check(E.tnumpy(to), ref(*f64(hx, hy)), rtol=2.4e-7)
            return
        shape = (16, 8) if c == "non_contiguous" else (N,)
        (x, hx), (y, hy) = E.rand(shape), E.rand(shape)
        out = E.poison(shape)
        if c == "closed":
            x = E.closed(N)
        elif c == "view_of_closed":
            x = E.view_closed((N,))
        elif c == "closed_stream":
            s = E.closed_stream()
        elif c == "other_device":
            s = E.other_stream()
        elif c == "wrong_dtype":
            if other == "y":
                y = E.rand(N, np.float64)[0]
            else:
                out = E.poison(N, np.float64)
        elif c == "wrong_shape":
            if other == "y":
                y = E.rand(N + 1)[0]
            else:
                out = E.poison(N + 1)
        elif c == "non_contiguous":  # a strided torch view: read through the strided kernels
            x, hx = E.strided()
        elif c == "huge":
            x = FakeHuge()
        call(x, y, out, s)
        E.check(out.to_numpy(stream=E.s), ref(*f64(hx, hy)), rtol=2.4e-7)

    return run


def run_fill(c, E):
    s = E.s
    out = E.poison(N)
    if c == "zero_size":
        z = ck.empty(0, np.float32, stream=s)
        assert ops.fill(z, 1.0, stream=s) is z
        return
    if c == "foreign":
        t = E.tpoison(N)
        assert ops.fill(t, 2.5, stream=s) is t, "a foreign out must come back as the caller's object"
        np.testing.assert_array_equal(E.tnumpy(t), np.full(N, 2.5, np.float32))
        return
    if c == "closed":
        out = E.closed(N)
    elif c == "view_of_closed":
        out = E.view_closed((N,))
    elif c == "closed_stream":
        s = E.closed_stream()
    elif c == "other_device":
        s = E.other_stream()
    elif c == "wrong_dtype":
        out = ck.empty(N, np.complex128, stream=s)
    elif c == "non_contiguous":  # every other column of a torch matrix: only those are written
        t, _ = E.trand((16, 16))
        before = E.tnumpy(t)
        assert ops.fill(t[:, ::2], 2.5, stream=s) is not None
        after = E.tnumpy(t)
        np.testing.assert_array_equal(after[:, ::2], np.full((16, 8), 2.5, np.float32))
        np.testing.assert_array_equal(after[:, 1::2], before[:, 1::2])
        return
    elif c == "huge":
        out = FakeHuge()
    ops.fill(out, 2.5, stream=s)
    np.testing.assert_array_equal(out.to_numpy(stream=E.s), np.full(N, 2.5, np.float32))


def run_dot(c, E):
    s = E.s
    if c == "zero_size":
        z = ck.empty(0, np.float32, stream=s)
        assert float(ops.dot(z, z, stream=s).to_numpy(stream=s)) == 0.0
        return
    if c == "foreign":
        (tx, hx), (ty, hy) = E.trand(N), E.trand(N)
        to = E.tpoison(())
        assert ops.dot(tx, ty, to, stream=s) is to
        got = float(E.tnumpy(to))
        ref = float(np.dot(*f64(hx, hy)))
        assert abs(got - ref) <= 1e-6 * np.dot(*f64(np.abs(hx), np.abs(hy)))
        return
    shape = (16, 8) if c == "non_contiguous" else (N,)
    (x, hx), (y, hy) = E.rand(shape), E.rand(shape)
    if c == "closed":
        x = E.closed(N)
    elif c == "view_of_closed":
        x = E.view_closed((N,))
    elif c == "closed_stream":
        s = E.closed_stream()
    elif c == "other_device":
        s = E.other_stream()
    elif c == "wrong_dtype":
        y = E.rand(N, np.float64)[0]
    elif c == "wrong_shape":
        y = E.rand(N + 1)[0]
    elif c == "non_contiguous":  # a strided torch view: read through the strided kernels
        x, hx = E.strided()
    elif c == "huge":
        x = FakeHuge()
    got = float(ops.dot(x, y, stream=s).to_numpy(stream=E.s))
    assert abs(got - float(np.vdot(*f64(hx, hy)))) <= 1e-6 * np.vdot(*f64(np.abs(hx), np.abs(hy)))


def _check_matmul(E, got, ha, hb):
    a64, b64 = f64(ha, hb)
    tol = 1e-5 * (np.abs(a64) @ np.abs(b64)) + 1e-6
    bad = np.abs(np.asarray(got, np.float64) - a64 @ b64) > tol
    assert not np.isnan(got).any() and not bad.any(), f"{bad.sum()} elements off"


def run_matmul(c, E):
    s = E.s
    if c == "foreign":
        (ta, ha), (tb, hb) = E.trand((M, K)), E.trand((K, NN))
        to = E.tpoison((M, NN))
        res = ops.matmul(ta, tb, to, stream=s)
        assert res is to, f"matmul: a foreign out= must come back as the caller's object, got {type(res).__name__}"
        _check_matmul(E, E.tnumpy(to), ha, hb)
        return
    (a, ha), (b, hb) = E.rand((M, K)), E.rand((K, NN))
    out = E.poison((M, NN))
    if c == "closed":
        a = E.closed((M, K))
    elif c == "view_of_closed":
        a = E.view_closed((M, K))
    elif c == "closed_stream":
        s = E.closed_stream()
    elif c == "other_device":
        s = E.other_stream()
    elif c == "wrong_dtype":
        b = E.rand((K, NN), np.float16)[0]
    elif c == "wrong_shape":
        b = E.rand((K + 1, NN))[0]
    elif c == "non_contiguous":
        t, h = E.trand((K, M))
        a, ha = t.T, h.T           # column-major (M, K): matmul reads it as transposed
    elif c == "zero_size":
        (a, ha), (b, hb) = E.rand((M, 0)), E.rand((0, NN))
    elif c == "huge":
        a = FakeHuge((2**31, 2**31))
    res = ops.matmul(a, b, out, stream=s)
    assert res is out
    _check_matmul(E, out.to_numpy(stream=E.s), ha, hb)


def run_ck_copy(c, E):
    s = E.s
    (src, h) = E.rand(N)
    dst = E.poison(N)
    if c == "foreign":
        t = E.tpoison(N)
        ck.copy(t, src, stream=s)
        np.testing.assert_array_equal(E.tnumpy(t), h)
        return
    if c == "closed":
        src = E.closed(N)
    elif c == "view_of_closed":
        dst = E.view_closed((N,))
    elif c == "closed_stream":
        s = E.closed_stream()
    elif c == "other_device":
        s = E.other_stream()   # a device-0 copy queued on device 1's stream: peer / UVA copy
    elif c == "wrong_dtype":
        src = E.rand(N, np.float64)[0]
    elif c == "wrong_shape":
        src = E.rand(N + 1)[0]
    elif c == "non_contiguous":
        (src, h), dst = E.strided(), E.poison((16, 8))  # gathered by the strided copy kernel
    elif c == "zero_size":
        (src, h), dst = E.rand(0), E.poison(0)
    elif c == "huge":
        src = FakeHuge()
    ck.copy(dst, src, stream=s)
    s.sync()
    np.testing.assert_array_equal(dst.to_numpy(stream=E.s), h)


def run_memset(c, E):
    s = E.s
    arr, dtype = E.poison(N), np.float32
    if c == "foreign":
        t = E.tpoison(N)
        ck.memset(t, 0x3C, stream=s)
        np.testing.assert_array_equal(E.tnumpy(t).view(np.uint8), np.full(4 * N, 0x3C, np.uint8))
        return
    if c == "closed":
        arr = E.closed(N)
    elif c == "view_of_closed":
        arr = E.view_closed((N,))
    elif c == "closed_stream":
        s = E.closed_stream()
    elif c == "other_device":
        s = E.other_stream()
    elif c == "wrong_dtype":     # any dtype is bytes to memset: a correct result
        arr, dtype = E.poison(N, np.float16), np.float16
    elif c == "non_contiguous":  # a view sets only its own elements
        base = E.poison((16, 16))
        ck.memset(base[:, ::2], 0x3C, stream=s)
        got = base.to_numpy(stream=E.s)
        np.testing.assert_array_equal(got[:, ::2].copy().view(np.uint8).ravel(), np.full(16 * 8 * 4, 0x3C, np.uint8))
        assert np.isnan(got[:, 1::2]).all()
        return
    elif c == "zero_size":
        arr = E.poison(0)
    elif c == "huge":
        arr = FakeHuge()
    ck.memset(arr, 0x3C, stream=s)
    got = arr.to_numpy(stream=E.s)
    np.testing.assert_array_equal(got.view(np.uint8), np.full(got.nbytes, 0x3C, np.uint8))
    assert got.dtype == dtype


def run_to_numpy(c, E):
    s = E.s
    a, h = E.rand(N)
    if c == "foreign":
        t, h = E.trand(N)
        a = ck.asarray(t)
    elif c == "closed":
        a = E.closed(N)
    elif c == "view_of_closed":
        a = E.view_closed((N,))
    elif c == "closed_stream":
        s = E.closed_stream()
    elif c == "other_device":
        s = E.other_stream()
    elif c == "non_contiguous":
        t, h = E.strided()
        a = ck.asarray(t)
    elif c == "zero_size":
        a, h = E.rand(0)
    np.testing.assert_array_equal(a.to_numpy(stream=s), h)


def run_copy_from(c, E):
    s = E.s
    dst = E.poison(N)
    h = E.host(N)
    src = h
    if c == "foreign":
        src, h = E.trand(N)
    elif c == "closed":
        dst = E.closed(N)
    elif c == "view_of_closed":
        dst = E.view_closed((N,))
    elif c == "closed_stream":
        s = E.closed_stream()
    elif c == "other_device":
        s = E.other_stream()
    elif c == "wrong_dtype":
        src = h.astype(np.float64)
    elif c == "wrong_shape":
        src = E.host(N + 1)
    elif c == "non_contiguous":
        (src, h), dst = E.strided(), E.poison((16, 8))
    elif c == "zero_size":
        dst, src = E.poison(0), np.empty(0, np.float32)
        h = src
    elif c == "huge":
        src = FakeHuge()
    dst.copy_from(src, stream=s)
    s.sync()
    np.testing.assert_array_equal(dst.to_numpy(stream=E.s), h)


def run_copy_to(c, E):
    s = E.s
    src, h = E.rand(N)
    dst = np.full(N, np.nan, np.float32)
    if c == "foreign":
        t = E.tpoison(N)
        src.copy_to(t, stream=s)
        np.testing.assert_array_equal(E.tnumpy(t), h)
        return
    if c == "closed":
        src = E.closed(N)
    elif c == "view_of_closed":
        src = E.view_closed((N,))
    elif c == "closed_stream":
        s = E.closed_stream()
    elif c == "other_device":
        s = E.other_stream()
    elif c == "wrong_dtype":
        dst = np.full(N, np.nan, np.float64)
    elif c == "wrong_shape":
        dst = np.full(N + 1, np.nan, np.float32)
    elif c == "non_contiguous":  # into every other column of a torch matrix (scatter)
        t, _ = E.trand((16, 16))
        before = E.tnumpy(t)
        src, h = E.rand((16, 8))
        src.copy_to(t[:, ::2], stream=s)
        after = E.tnumpy(t)
        np.testing.assert_array_equal(after[:, ::2], h)
        np.testing.assert_array_equal(after[:, 1::2], before[:, 1::2])
        return
    elif c == "zero_size":
        (src, h), dst = E.rand(0), np.empty(0, np.float32)
    elif c == "huge":
        dst = FakeHuge()
    src.copy_to(dst, stream=s)
    s.sync()  # device -> pageable host returns once the data arrived; the sync is belt and braces
    np.testing.assert_array_equal(dst, h)


def run_array_fill(c, E):
    s = E.s
    a = E.poison(N)
    want = np.full(N, 2.5, np.float32)
    value = 2.5
    if c == "foreign":
        t = E.tpoison(N)
        ck.asarray(t).fill(2.5, stream=s)
        np.testing.assert_array_equal(E.tnumpy(t), want)
        return
    if c == "closed":
        a = E.closed(N)
    elif c == "view_of_closed":
        a = E.view_closed((N,))
    elif c == "closed_stream":
        s = E.closed_stream()
    elif c == "other_device":
        s = E.other_stream()
    elif c == "wrong_dtype":
        a, value = ck.empty(N, np.uint8, stream=s), 300
    elif c == "non_contiguous":
        a, want = ck.asarray(E.strided()[0]), np.full((16, 8), 2.5, np.float32)
    elif c == "zero_size":
        a, want = ck.empty(0, np.float32, stream=s), np.empty(0, np.float32)
    assert a.fill(value, stream=s) is a
    np.testing.assert_array_equal(a.to_numpy(stream=E.s), want)


def _scale_kernel():
    return ck.load_kit_module("vector").kernel("scale_f32_u")  # (float a, const float* x, float* out, uint64 n)


def _launch_inputs(c, E):
    """(x, out, n, expected out) for the launch cells; out is checked on E.s."""
    x, h = E.rand(N)
    out = E.poison(N)
    if c == "closed":
        x = E.closed(N)
    elif c == "view_of_closed":
        out = E.view_closed((N,))
    elif c == "non_contiguous":
        # the kernel gets the view's data pointer: it reads 16 contiguous floats, i.e. row 0
        t, hh = E.trand((16, 16))
        x, h, out = t[:, ::2], hh[0], E.poison(16)
        return x, out, 16, 2 * h, t
    elif c == "zero_size":
        (x, h), out = E.rand(0), E.poison(0)
        return x, out, 0, np.empty(0, np.float32), None
    elif c == "huge":
        x = FakeHuge()
    elif c == "foreign":
        (x, h), out = E.trand(N), E.tpoison(N)
    return x, out, N, 2 * h, None


def _read(E, out):
    return E.tnumpy(out) if not isinstance(out, ck.Array) else out.to_numpy(stream=E.s)


def run_launch(c, E):
    k = _scale_kernel()
    s = E.s
    x, out, n, want, _keep = _launch_inputs(c, E)
    args = (2.0, x, out, n)
    if c == "closed_stream":
        s = E.closed_stream()
    elif c == "other_device":
        s = E.other_stream()
    elif c == "wrong_dtype":
        args = (np.float64(2.0), x, out, n)
    elif c == "wrong_shape":
        args = (2.0, x, out)
    ck.launch(k, ck.blocks_for(n, 256), 256, *args, stream=s)
    np.testing.assert_array_equal(_read(E, out), want)


def run_prepare(c, E):
    k = _scale_kernel()
    s = E.s
    x, out, n, want, _keep = _launch_inputs(c, E)
    args = (2.0, x, out, n)
    if c == "wrong_dtype":
        args = (np.float64(2.0), x, out, n)
    elif c == "wrong_shape":
        args = (2.0, x, out)
    if c == "closed":                       # closed *after* prepare: refused at launch
        x, _ = E.rand(N)
        args = (2.0, x, out, n)
    elif c == "view_of_closed":
        root = ck.empty(N, np.float32, stream=E.s)
        out = root.reshape(N)
        args = (2.0, x, out, n)
    p = ck.prepare(k, ck.blocks_for(n, 256), 256, *args, device=E.dev)
    del args
    if c == "closed":
        x.close()
    elif c == "view_of_closed":
        root.close()
    elif c == "closed_stream":
        s = E.closed_stream()
    elif c == "other_device":
        s = E.other_stream()
    elif c == "foreign":
        ref = weakref.ref(x)
        del x                               # the prepared launch holds what it packed
        gc.collect()
        assert ref() is not None
    p.launch(s)
    np.testing.assert_array_equal(_read(E, out), want)


def run_capture(c, E):
    s = E.s
    shape = (16, 8) if c == "non_contiguous" else (N,)
    (x, hx), (y, hy) = E.rand(shape), E.rand(shape)
    out = E.poison(shape)
    if c == "foreign":
        (x, hx), (y, hy) = E.trand(N), E.trand(N)
        out = E.tpoison(N)
    elif c == "closed":
        x = E.closed(N)
    elif c == "view_of_closed":
        x = E.view_closed((N,))
    elif c == "closed_stream":
        s = E.closed_stream()
    elif c == "other_device":
        other = E.other_stream()
        (x, hx), (y, hy) = E.rand(N, stream=other), E.rand(N, stream=other)
        out = E.poison(N, stream=other)
        other.sync()
    elif c == "wrong_dtype":
        y = E.rand(N, np.float64)[0]
    elif c == "wrong_shape":
        y = E.rand(N + 1)[0]
    elif c == "non_contiguous":  # a strided torch view: read through the strided kernels
        x, hx = E.strided()
    elif c == "huge":
        x = FakeHuge()
    z = ck.empty(0, np.float32, stream=E.s)
    with ck.graph.capture(s) as cap:
        if c == "zero_size":
            ops.add(z, z, z, stream=cap.stream)          # nothing to launch, nothing captured
        res = ops.add(x, y, out, stream=cap.stream)
        assert res is out
    g = cap.graph
    try:
        g.replay(E.s)
        E.check(_read(E, out), hx.astype(np.float64) + hy)
    finally:
        g.close()


def run_replay(c, E):
    s = E.s
    (x, hx), (y, hy) = E.rand(N), E.rand(N)
    out = E.poison(N)
    root = None
    if c == "view_of_closed":
        root = x
        x = x.reshape(N)
    elif c == "foreign":
        (x, hx), (y, hy) = E.trand(N), E.trand(N)
        out = E.tpoison(N)
    with ck.graph.capture(E.s) as cap:
        ops.add(x, y, out, stream=cap.stream)
    g = cap.graph
    try:
        if c == "closed":
            x.close()                                   # after the capture: the graph must refuse
        elif c == "view_of_closed":
            root.close()
        elif c == "closed_stream":
            s = E.closed_stream()
        elif c == "other_device":
            s = E.other_stream()
        elif c == "foreign":
            del x, y                                    # the graph holds what it uses
            gc.collect()
        g.replay(s)
        E.check(_read(E, out), hx.astype(np.float64) + hy)
    finally:
        g.close()


def run_asarray(c, E):
    s = E.s
    if c == "foreign":
        t, h = E.trand(N)
        a = ck.asarray(t, stream=s)
        assert a.ptr == t.data_ptr() and a.shape == (N,) and a.dtype == np.float32
        np.testing.assert_array_equal(a.to_numpy(stream=s), h)
        return
    if c == "non_contiguous":
        t, h = E.strided()
        a = ck.asarray(t, stream=s)
        assert a.ptr == t.data_ptr() and a.shape == (16, 8) and a.strides == (64, 8) and not a.is_c_contiguous
        return
    if c == "zero_size":
        t = E.torch.empty(0, device="cuda")
        a = ck.asarray(t, stream=s)
        assert a.shape == (0,) and a.nbytes == 0 and a.to_numpy(stream=s).shape == (0,)
        return
    obj, h = E.rand(N)
    if c == "closed":
        obj = E.closed(N)
    elif c == "view_of_closed":
        obj = E.view_closed((N,))
    elif c == "closed_stream":
        s = E.closed_stream()
    elif c == "other_device":
        s = E.other_stream()           # a view, not a use: the array keeps its device
    elif c == "wrong_dtype":
        obj = FakeCAI((4,), typestr="<x4")
    elif c == "wrong_shape":
        obj = FakeCAI((-4,))
    elif c == "huge":
        obj = FakeHuge()
    a = ck.asarray(obj, stream=s)
    assert a is obj and a.device == E.dev
    np.testing.assert_array_equal(a.to_numpy(stream=E.s), h)


def run_to_device(c, E):
    s = E.s
    h = E.host(N)
    host = h
    if c == "closed":
        host = E.closed(N)
    elif c == "view_of_closed":
        host = E.view_closed((N,))
    elif c == "closed_stream":
        s = E.closed_stream()
    elif c == "other_device":
        s = E.other_stream()
    elif c == "wrong_dtype":
        host = [object(), object()]
    elif c == "wrong_shape":
        host = [[1.0, 2.0], [3.0]]
    elif c == "non_contiguous":
        full = E.host((16, 16))
        host = h = full[:, ::2]         # a strided numpy source is made contiguous on the host
    elif c == "zero_size":
        host = h = np.empty(0, np.float32)
    elif c == "huge":                   # 2**40 float64 (8 TiB) of one host element: no device holds it
        host = np.lib.stride_tricks.as_strided(np.zeros(1), shape=(2**40,), strides=(0,))
    elif c == "foreign":
        host = E.trand(N)[0]
    a = ck.to_device(host, stream=s)
    assert a.device == s.device and a.shape == np.shape(h)
    np.testing.assert_array_equal(a.to_numpy(stream=s), h)


def run_empty(c, E):
    s = E.s
    shape, dtype, kw = (N,), np.float32, {}
    if c == "closed_stream":
        s = E.closed_stream()
    elif c == "other_device":
        s = E.other_stream()
        kw = {"device": 0}
    elif c == "wrong_dtype":
        dtype = "not-a-dtype"
    elif c == "wrong_shape":
        shape = (4, -1)
    elif c == "zero_size":
        shape = (0, 5)
    elif c == "huge":
        shape, dtype = (2**61,), np.float64
    elif c == "device_too_small":       # fits an address space, not this (or any) device
        shape, dtype = (2**40,), np.uint8
    elif c == "foreign":
        s = E.torch.cuda.Stream()       # a foreign stream is adopted
    a = ck.empty(shape, dtype, stream=s, **kw)
    assert a.shape == shape and a.dtype == np.dtype(dtype)
    h = E.host(shape)
    a.copy_from(h, stream=s)
    np.testing.assert_array_equal(a.to_numpy(stream=s), h)


RUN = {**{name: run_elementwise(name) for name in ELEMENTWISE},
       "fill": run_fill, "dot": run_dot, "matmul": run_matmul, "ck.copy": run_ck_copy, "memset": run_memset,
       "to_numpy": run_to_numpy, "copy_from": run_copy_from, "copy_to": run_copy_to, "Array.fill": run_array_fill,
       "launch": run_launch, "prepare.launch": run_prepare, "graph.capture": run_capture,
       "graph.replay": run_replay, "asarray": run_asarray, "to_device": run_to_device, "empty": run_empty}


# ---- what each cell must do -------------------------------------------------------------

def _elementwise_expect(op, other):
    return {
        "closed": Err(ck.ClosedError, rf"^{op}: x is closed \("),
        "view_of_closed": Err(ck.ClosedError, rf"^{op}: x is a view of a closed array \("),
        "closed_stream": STREAM_CLOSED,
        "other_device": Err(ck.DeviceMismatchError, rf"^{op}: x is on device 0 but the stream is on device 1"),
        "wrong_dtype": Err(ck.DTypeError, rf"^{op}: x is float32 but {other} is float64"),
        "wrong_shape": Err(ck.ShapeError, rf"^{op}: x has shape \({N},\) but {other} has shape \({N + 1},\)"),
        "non_contiguous": OK,     # views of any layout are supported (strided kernels, cuMemcpy2D)
        "zero_size": OK,
        "huge": Err(ck.ShapeError, rf"^{op}: x: shape \({HUGE},\) of float32 .*no address space can hold it"),
        "foreign": OK,
    }


LAUNCH_ARG = r"argument {i} of scale_f32_u \(a {w}-byte parameter\)"

EXPECT_BY_ENTRY = {
    **{name: _elementwise_expect(name.removeprefix("ops."), other) for name, (other, _, _) in ELEMENTWISE.items()},
    "fill": {
        "closed": Err(ck.ClosedError, r"^fill: out is closed \("),
        "view_of_closed": Err(ck.ClosedError, r"^fill: out is a view of a closed array \("),
        "closed_stream": STREAM_CLOSED,
        "other_device": Err(ck.DeviceMismatchError, r"^fill: out is on device 0 but the stream is on device 1"),
        "wrong_dtype": Err(ck.DTypeError, r"^fill: out is complex128 \(16 bytes\)"),
        "non_contiguous": OK,     # views of any layout are supported (strided kernels, cuMemcpy2D)
        "zero_size": OK,
        "huge": Err(ck.ShapeError, r"^fill: out: shape .*no address space can hold it"),
        "foreign": OK,
    },
    "dot": {
        "closed": Err(ck.ClosedError, r"^dot: x is closed \("),
        "view_of_closed": Err(ck.ClosedError, r"^dot: x is a view of a closed array \("),
        "closed_stream": STREAM_CLOSED,
        "other_device": Err(ck.DeviceMismatchError, r"^dot: x is on device 0 but the stream is on device 1"),
        "wrong_dtype": Err(ck.DTypeError, r"^dot: x is float32 but y is float64"),
        "wrong_shape": Err(ck.ShapeError, rf"^dot: x has shape \({N},\) but y has shape \({N + 1},\)"),
        "non_contiguous": OK,     # views of any layout are supported (strided kernels, cuMemcpy2D)
        "zero_size": OK,
        "huge": Err(ck.ShapeError, r"^dot: x: shape .*no address space can hold it"),
        "foreign": OK,
    },
    "matmul": {
        "closed": Err(ck.ClosedError, r"^matmul: a is closed \("),
        "view_of_closed": Err(ck.ClosedError, r"^matmul: a is a view of a closed array \("),
        "closed_stream": STREAM_CLOSED,
        "other_device": Err(ck.DeviceMismatchError, r"^matmul: a is on device 0"),
        "wrong_dtype": Err(ck.DTypeError, r"^matmul: a is float32 but b is float16"),
        "wrong_shape": Err(ck.ShapeError, rf"^matmul: inner dimensions differ: op\(a\) is {M}x{K}, op\(b\) is {K + 1}x{NN}"),
        "non_contiguous": OK,     # a column-major view is a transposed operand: read as such
        "zero_size": Err(ck.ShapeError, rf"^matmul: M, N, K must be >= 1, got {M}, {NN}, 0"),
        "huge": Err(ck.ShapeError, r"^matmul: a: shape \(2147483648, 2147483648\) of float32 .*no address space"),
        "foreign": OK,
    },
    "ck.copy": {
        "closed": Err(ck.ClosedError, r"^copy: src is closed \("),
        "view_of_closed": Err(ck.ClosedError, r"^copy: dst is a view of a closed array \("),
        "closed_stream": STREAM_CLOSED,
        "other_device": OK,       # copies between devices are supported (cuMemcpyAsync, UVA)
        "wrong_dtype": Err(ck.DTypeError, r"^copy: dst is float32 but src is float64"),
        "wrong_shape": Err(ck.ShapeError, rf"^copy: dst has shape \({N},\) \({N} elements\) but src has shape \({N + 1},\)"),
        "non_contiguous": OK,     # views of any layout are supported (strided kernels, cuMemcpy2D)
        "zero_size": OK,
        "huge": Err(ck.ShapeError, r"^copy: src: shape .*no address space can hold it"),
        "foreign": OK,
    },
    "memset": {
        "closed": Err(ck.ClosedError, r"^memset: arr is closed \("),
        "view_of_closed": Err(ck.ClosedError, r"^memset: arr is a view of a closed array \("),
        "closed_stream": STREAM_CLOSED,
        "other_device": Err(ck.DeviceMismatchError, r"^memset: arr is on device 0 but the stream is on device 1"),
        "wrong_dtype": OK,        # bytes are bytes: a float16 array gets 0x3C3C everywhere
        "non_contiguous": OK,     # views of any layout are supported (strided kernels, cuMemcpy2D)
        "zero_size": OK,
        "huge": Err(ck.ShapeError, r"^memset: arr: shape .*no address space can hold it"),
        "foreign": OK,
    },
    "to_numpy": {
        "closed": Err(ck.ClosedError, r"^to_numpy: array is closed \("),
        "view_of_closed": Err(ck.ClosedError, r"^to_numpy: array is a view of a closed array \("),
        "closed_stream": STREAM_CLOSED,
        "other_device": OK,
        "non_contiguous": OK,     # views of any layout are supported (strided kernels, cuMemcpy2D)
        "zero_size": OK,
        "foreign": OK,
    },
    "copy_from": {
        "closed": Err(ck.ClosedError, r"^copy_from: array is closed \("),
        "view_of_closed": Err(ck.ClosedError, r"^copy_from: array is a view of a closed array \("),
        "closed_stream": STREAM_CLOSED,
        "other_device": OK,
        "wrong_dtype": Err(ck.DTypeError, r"^copy: dst is float32 but src is float64"),
        "wrong_shape": Err(ck.ShapeError, rf"^copy: dst has shape \({N},\) \({N} elements\) but src has shape \({N + 1},\)"),
        "non_contiguous": OK,     # views of any layout are supported (strided kernels, cuMemcpy2D)
        "zero_size": OK,
        "huge": Err(ck.ShapeError, r"^copy: src: shape .*no address space can hold it"),
        "foreign": OK,
    },
    "copy_to": {
        "closed": Err(ck.ClosedError, r"^copy_to: array is closed \("),
        "view_of_closed": Err(ck.ClosedError, r"^copy_to: array is a view of a closed array \("),
        "closed_stream": STREAM_CLOSED,
        "other_device": OK,
        "wrong_dtype": Err(ck.DTypeError, r"^copy: dst is float64 but src is float32"),
        "wrong_shape": Err(ck.ShapeError, rf"^copy: dst has shape \({N + 1},\) \({N + 1} elements\) but src has shape \({N},\)"),
        "non_contiguous": OK,     # views of any layout are supported (strided kernels, cuMemcpy2D)
        "zero_size": OK,
        "huge": Err(ck.ShapeError, r"^copy: dst: shape .*no address space can hold it"),
        "foreign": OK,
    },
    "Array.fill": {
        "closed": Err(ck.ClosedError, r"^fill: array is closed \("),
        "view_of_closed": Err(ck.ClosedError, r"^fill: array is a view of a closed array \("),
        "closed_stream": STREAM_CLOSED,
        "other_device": Err(ck.DeviceMismatchError, r"^fill: out is on device 0 but the stream is on device 1"),
        "wrong_dtype": Err(ck.DTypeError, r"^fill: value 300 does not fit in uint8"),
        "non_contiguous": OK,     # views of any layout are supported (strided kernels, cuMemcpy2D)
        "zero_size": OK,
        "foreign": OK,
    },
    "launch": {
        "closed": Err(ck.ClosedError, "^" + LAUNCH_ARG.format(i=1, w=8) + r" is closed \("),
        "view_of_closed": Err(ck.ClosedError, "^" + LAUNCH_ARG.format(i=2, w=8) + r" is a view of a closed array \("),
        "closed_stream": STREAM_CLOSED,
        "other_device": Err(ck.DeviceMismatchError, "^" + LAUNCH_ARG.format(i=1, w=8)
                            + r": array on device 0 passed to a launch on a stream of device 1"),
        "wrong_dtype": Err(ck.ArgumentError, "^" + LAUNCH_ARG.format(i=0, w=4) + r": got float64 \(8 bytes\)"),
        "wrong_shape": Err(ck.ArgumentError, r"^scale_f32_u takes 4 arguments \(sizes \[4, 8, 8, 8\]\), got 3"),
        "non_contiguous": OK,     # a raw launch passes the view's data pointer; strides are the kernel's business
        "zero_size": OK,
        "huge": Err(ck.ShapeError, "^" + LAUNCH_ARG.format(i=1, w=8) + r": shape .*no address space can hold it"),
        "foreign": OK,
    },
    "prepare.launch": {
        "closed": Err(ck.ClosedError, r"^prepared launch of scale_f32_u: argument 1 is closed \("),
        "view_of_closed": Err(ck.ClosedError, r"^prepared launch of scale_f32_u: argument 2 is a view of a closed array \("),
        "closed_stream": STREAM_CLOSED,
        "other_device": Err(ck.DeviceMismatchError, r"^prepared for device 0, launched on device 1"),
        "wrong_dtype": Err(ck.ArgumentError, "^" + LAUNCH_ARG.format(i=0, w=4) + r": got float64 \(8 bytes\)"),
        "wrong_shape": Err(ck.ArgumentError, r"^scale_f32_u takes 4 arguments, got 3"),
        "non_contiguous": OK,
        "zero_size": OK,
        "huge": Err(ck.ShapeError, "^" + LAUNCH_ARG.format(i=1, w=8) + r": shape .*no address space can hold it"),
        "foreign": OK,            # the tensor reference is dropped before the launch: held by it
    },
    "graph.capture": {
        "closed": Err(ck.ClosedError, r"^add: x is closed \("),
        "view_of_closed": Err(ck.ClosedError, r"^add: x is a view of a closed array \("),
        "closed_stream": STREAM_CLOSED,
        "other_device": Err(ck.DeviceMismatchError, r"^add: x is on device 1 but the stream is on device 0"),
        "wrong_dtype": Err(ck.DTypeError, r"^add: x is float32 but y is float64"),
        "wrong_shape": Err(ck.ShapeError, rf"^add: x has shape \({N},\) but y has shape \({N + 1},\)"),
        "non_contiguous": OK,     # views of any layout are supported (strided kernels, cuMemcpy2D)
        "zero_size": OK,
        "huge": Err(ck.ShapeError, r"^add: x: shape .*no address space can hold it"),
        "foreign": OK,
    },
    "graph.replay": {
        "closed": Err(ck.ClosedError, r"^graph replay: an array the graph uses is closed \("),
        "view_of_closed": Err(ck.ClosedError, r"^graph replay: an array the graph uses is closed \("),
        "closed_stream": STREAM_CLOSED,
        "other_device": Err(ck.DeviceMismatchError, r"^graph replay: the graph was captured on device 0, the stream is on device 1"),
        "foreign": OK,            # the tensors' references are dropped before the replay: held by the graph
    },
    "asarray": {
        "closed": Err(ck.ClosedError, r"^asarray: obj is closed \("),
        "view_of_closed": Err(ck.ClosedError, r"^asarray: obj is a view of a closed array \("),
        "closed_stream": STREAM_CLOSED,
        "other_device": OK,
        "wrong_dtype": Err(ck.DTypeError, r"^asarray: obj has an unsupported CAI typestr '<x4'"),
        "wrong_shape": Err(ck.ShapeError, r"^asarray: obj's CAI shape \(-4,\): dimension 0 is negative \(-4\)"),
        "non_contiguous": OK,
        "zero_size": OK,
        "huge": Err(ck.ShapeError, rf"^asarray: obj: shape \({HUGE},\) of float32 .*no address space can hold it"),
        "foreign": OK,
    },
    "to_device": {
        "closed": Err(ck.DeviceMismatchError, r"^to_device: host is a cudart_kit\.Array"),
        "view_of_closed": Err(ck.DeviceMismatchError, r"^to_device: host is a cudart_kit\.Array"),
        "closed_stream": STREAM_CLOSED,
        "other_device": OK,
        "wrong_dtype": Err(ck.DTypeError, r"^to_device: host \(list\) cannot be converted to a numeric array: its elements are Python objects"),
        "wrong_shape": Err(ck.ShapeError, r"^to_device: host \(list\) is not a regular array"),
        "non_contiguous": OK,
        "zero_size": OK,
        "huge": Err(ck.CudaOutOfMemoryError, r"requested 8796093022208 bytes \(8192\.00 GiB\) on device 0 which has [0-9.]+ GiB in total"),
        "foreign": Err(ck.DeviceMismatchError, r"^to_device: host is a Tensor in device memory"),
    },
    "empty": {
        "closed_stream": STREAM_CLOSED,
        "other_device": Err(ck.DeviceMismatchError, r"^empty: device=0 but the stream is on device 1"),
        "wrong_dtype": Err(ck.DTypeError, r"^empty: dtype 'not-a-dtype' is not a dtype"),
        "wrong_shape": Err(ck.ShapeError, r"^empty: shape \(4, -1\): dimension 1 is negative \(-1\)"),
        "zero_size": OK,
        "huge": Err(ck.ShapeError, r"^empty: shape \(2305843009213693952,\) of float64 is 2305843009213693952 elements "
                                   r"= 18446744073709551616 bytes .*no address space can hold it"),
        "device_too_small": Err(ck.CudaOutOfMemoryError, r"^empty failed with CUDA_ERROR_OUT_OF_MEMORY \(2\) .*requested "
                                                         r"1099511627776 bytes \(1024\.00 GiB\) on device 0 which has [0-9.]+ GiB"),
        "foreign": OK,            # a PyTorch stream, adopted
    },
}

CELLS = [(entry, cond) for entry, table in EXPECT_BY_ENTRY.items() for cond in table]
assert all(c in CONDS or c == "device_too_small" for _, c in CELLS)


@pytest.mark.parametrize("entry,cond", CELLS, ids=[f"{e}-{c}" for e, c in CELLS])
def test_bad_input(entry, cond, device, stream, rng):
    if cond == "other_device" and ck.device_count() < 2:
        pytest.skip("a stream of another device needs a second GPU; this machine has one")
    expect = EXPECT_BY_ENTRY[entry][cond]
    env = Env(device, stream, rng)
    try:
        if expect is OK:
            RUN[entry](cond, env)
        else:
            with pytest.raises(Exception) as info:
                RUN[entry](cond, env)
            err = info.value
            assert type(err) is expect.cls, (
                f"{entry} x {cond}: expected {expect.cls.__name__}, got {type(err).__name__}: {err}")
            assert re.search(expect.pattern, str(err)), (
                f"{entry} x {cond}: message {str(err)!r} does not match {expect.pattern!r}")
        env.still_works()
    finally:
        env.close()


# ---- cells of the matrix that need more than one call ------------------------------------

def test_capture_stream_is_closed_after_the_block(stream, rng):
    x = ck.to_device(rng.standard_normal(64).astype(np.float32), stream=stream)
    with ck.graph.capture(stream) as cap:
        ops.scale(2.0, x, x, stream=cap.stream)
    with pytest.raises(ck.ClosedError, match=r"^stream <cudart_kit\.Stream 0x[0-9a-f]+ borrowed device=0 closed> is closed"):
        ops.scale(2.0, x, x, stream=cap.stream)
    cap.graph.close()
    still_works(stream, rng)


def test_view_close_then_every_fast_path(stream, rng):
    """The issue's own reproduction: v = x.reshape(...), x.close(); then every op refuses v,
    including after the fast paths' caches were warmed with the very same signatures."""
    h = rng.standard_normal(4096).astype(np.float32)
    x = ck.to_device(h, stream=stream)
    y = ck.to_device(h, stream=stream)
    out = ck.empty(4096, np.float32, stream=stream)
    for _ in range(3):  # warm the signature caches
        ops.add(x, y, out, stream=stream)
        ops.axpy(1.0, x, y, out, stream=stream)
    k = _scale_kernel()
    v2d, v1d = x.reshape(64, 64), x.reshape(4096)
    x.close()
    assert v2d.is_closed and v1d.is_closed and v2d.ptr == 0 and v1d.ptr == 0
    calls = {
        "add": lambda v: ops.add(v, v, v, stream=stream),
        "scale": lambda v: ops.scale(2.0, v, stream=stream),
        "dot": lambda v: ops.dot(v, v, stream=stream),
        "copy": lambda v: ops.copy(v, stream=stream),
        "launch": lambda v: ck.launch(k, 16, 256, 2.0, v, v, 4096, stream=stream),
    }
    for name, call in calls.items():
        for v in (v2d, v1d):
            with pytest.raises(ck.ClosedError, match="is a view of a closed array"):
                call(v)
    with pytest.raises(ck.ClosedError, match="^add: x is closed"):
        ops.add(x, y, out, stream=stream)         # the warmed fast path, with the closed array itself
    with pytest.raises(ck.ClosedError, match="^axpy: x is closed"):
        ops.axpy(1.0, x, y, out, stream=stream)
    still_works(stream, rng)


def test_close_while_torch_holds_a_dlpack_export(stream, rng):
    torch = pytest.importorskip("torch")
    h = rng.standard_normal(1 << 16).astype(np.float32)
    a = ck.to_device(h, stream=stream)
    t = torch.from_dlpack(a)
    gc.collect()  # earlier garbage must not be counted as this array's free
    before = ck.census()["memory"]["device"]["arrays"]
    a.close()                                  # the kit refuses a at once ...
    with pytest.raises(ck.ClosedError, match="^add: x is closed"):
        ops.add(a, a, stream=stream)
    assert ck.census()["memory"]["device"]["arrays"] == before   # ... but the memory is still torch's
    torch.cuda.synchronize()
    np.testing.assert_array_equal(t.cpu().numpy(), h)
    del t
    gc.collect()
    assert ck.census()["memory"]["device"]["arrays"] == before - 1  # freed once torch let go
    still_works(stream, rng)
