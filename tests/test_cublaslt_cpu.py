"""matmul(algo="cublas") over cuBLASLt with no GPU and no nvmath-python: a fake
``nvmath.bindings.cublasLt`` (and ``nvmath.bindings.cublas`` for its enums) is put in sys.modules.
The fake keeps every descriptor, layout and preference it hands out, and carries each
cublasLtMatmul out in numpy on host memory *as cuBLAS reads it* (column-major layouts, op flags,
alpha / beta read at their host addresses), so a wrong operand order, leading dimension,
transpose or scalar shows as a wrong result, with the exact arguments checked besides.

What is checked: one plan per geometry, reused (checked path and matmul's cached-plan path);
every key change (alignment, leading dimension, transposes, dtype, TF32) makes a new plan; the
row-major -> column-major convention (cuBLAS's A is the kit's B); one workspace per stream,
reused, never keeping the stream alive, freed in its order when the stream goes; capture
workspaces held by the graph; LRU eviction destroys descriptors; errors (no heuristic result, a
cuBLASLt status, nvmath missing)."""

from __future__ import annotations

import contextlib
import ctypes
import enum
import gc
import sys
import types
import weakref

import numpy as np
import pytest

from cudart_kit.errors import CudaKitError, DeviceMismatchError, MissingExtraError
from cudart_kit.memory import Array
from cudart_kit.ops import _cublaslt
from cudart_kit.ops import gemm
from cudart_kit.stream import Stream


# --- a device, streams and host memory standing in for device memory ----------------------------

class _Dev:
    """Hashable, no driver; ``activate`` records that the device was current."""

    def __init__(self, ordinal=0):
        self.ordinal = ordinal
        self.name = f"fake H200 {ordinal}"
        self.multiprocessor_count = 132
        self.compute_capability = (9, 0)
        self.current = 0

    @contextlib.contextmanager
    def activate(self):
        self.current += 1
        try:
            yield self
        finally:
            self.current -= 1


class _Core(types.SimpleNamespace):  # a cuda.core Stream: a handle and is_closed
    pass


_handles = iter(range(0x7000, 0x8000, 0x10))


def _stream(dev, owned=True, handle=None):
    return Stream._wrap(_Core(handle=handle if handle is not None else next(_handles), is_closed=False), dev,
                        owned=owned)


class _Mem:
    """Host buffers (256-byte aligned, as pool allocations) every emulated access must lie in."""

    def __init__(self):
        self.buffers = []

    def host(self, h: np.ndarray) -> np.ndarray:
        raw = np.zeros(h.nbytes + 512, np.uint8)
        off = -raw.ctypes.data % 256
        a = raw[off:off + h.nbytes].view(h.dtype).reshape(h.shape)
        a[...] = h
        self.buffers.append(a)
        return a

    def owned(self, h, s) -> Array:
        """A kit-owned contiguous Array (what ``empty`` returns) over a copy of ``h``."""
        v = self.host(h)
        return Array._make(v.ctypes.data, v.shape, v.dtype, v.strides, "device", s.device, s, owner=v)

    def view(self, v: np.ndarray, dev) -> Array:
        """A kit Array with a host view's address, shape and strides (a device view's look)."""
        return Array._make(v.ctypes.data, v.shape, v.dtype, v.strides, "foreign", dev, None, owner=v)

    def colmajor(self, ptr, rows, cols, ld, dtype) -> np.ndarray:
        """The column-major rows x cols matrix with leading dimension ld at ptr, as cuBLAS reads it."""
        it = np.dtype(dtype).itemsize
        nbytes = ((cols - 1) * ld + rows) * it
        assert ld >= max(1, rows), f"cuBLAS needs ld >= rows: ld {ld}, rows {rows}"
        assert any(b.ctypes.data <= ptr and ptr + nbytes <= b.ctypes.data + b.nbytes for b in self.buffers), \
            f"a {rows}x{cols} (ld {ld}) access at {ptr:#x} lies outside every buffer"
        raw = np.frombuffer((ctypes.c_char * nbytes).from_address(ptr), np.uint8).view(dtype)
        return np.lib.stride_tricks.as_strided(raw, (rows, cols), (it, ld * it))


# --- the fake nvmath bindings --------------------------------------------------------------------

class ComputeType(enum.IntEnum):
    COMPUTE_32F = 68
    COMPUTE_32F_FAST_TF32 = 77
    COMPUTE_32F_PEDANTIC = 69


class Operation(enum.IntEnum):
    N = 0
    T = 1


class MatmulDescAttribute(enum.IntEnum):
    COMPUTE_TYPE = 0
    SCALE_TYPE = 1
    POINTER_MODE = 2
    TRANSA = 3
    TRANSB = 4


class MatmulPreferenceAttribute(enum.IntEnum):
    MAX_WORKSPACE_BYTES = 1
    MIN_ALIGNMENT_A_BYTES = 5
    MIN_ALIGNMENT_B_BYTES = 6
    MIN_ALIGNMENT_C_BYTES = 7
    MIN_ALIGNMENT_D_BYTES = 8


class PointerMode(enum.IntEnum):
    HOST = 0
    DEVICE = 1


STATUS = {0: "CUBLAS_STATUS_SUCCESS", 7: "CUBLAS_STATUS_INVALID_VALUE", 13: "CUBLAS_STATUS_EXECUTION_FAILED",
          15: "CUBLAS_STATUS_NOT_SUPPORTED"}
_TYPES = {0: np.float32, 2: np.float16}
_RESULT = np.dtype([("algo", "V64"), ("workspace_size", "<u8"), ("state", "<i4"), ("waves_count", "<f4"),
                    ("reserved", "<i4", (4,))])


class cuBLASLtError(Exception):
    def __init__(self, status):
        self.status = status
        super().__init__(f"{STATUS.get(status, '?')} ({status})")


class MatmulHeuristicResult:
    def __init__(self, size=1):
        self._data = np.zeros(size, _RESULT)
        self.ptr = self._data.ctypes.data

    @property
    def workspace_size(self):
        return int(self._data["workspace_size"][0])


class FakeLt:
    """The state behind the fake module: objects alive, calls made, knobs for the heuristic."""

    def __init__(self, mem: _Mem):
        self.mem = mem
        self.objects = {}  # id -> [kind, alive, payload]
        self.next_id = 0x100
        self.calls = []  # every matmul call's arguments, with what the fake saw at the time
        self.heuristics = 0
        self.found = 1  # algorithms the heuristic returns
        self.ws_bytes = 0  # workspace the algorithm needs
        self.fail_matmul = None  # a status to raise from matmul
        self.devices = None  # the fake devices, to check that calls run in their context

    def _new(self, kind, payload):
        self.next_id += 0x10
        self.objects[self.next_id] = [kind, True, payload]
        return self.next_id

    def _get(self, obj, kind):
        entry = self.objects[obj]
        assert entry[0] == kind and entry[1], f"{kind} {obj:#x} is not alive"
        return entry[2]

    def alive(self, kind=None):
        return [k for k, (kd, al, _) in self.objects.items() if al and (kind is None or kd == kind)]

    def in_context(self):
        assert self.devices is None or any(d.current for d in self.devices), "called outside the device context"

    def module(self) -> types.ModuleType:
        m = types.ModuleType("nvmath.bindings.cublasLt")
        m.MatmulDescAttribute, m.MatmulPreferenceAttribute, m.PointerMode = (
            MatmulDescAttribute, MatmulPreferenceAttribute, PointerMode)
        m.MatmulHeuristicResult, m.matmul_heuristic_result_dtype, m.cuBLASLtError = (
            MatmulHeuristicResult, _RESULT, cuBLASLtError)
        m.get_status_name = lambda status: STATUS[status]

        def create():
            self.in_context()
            return self._new("handle", {})

        def desc_create(compute, scale):
            self.in_context()
            return self._new("desc", {"compute": compute, "scale": scale})

        def desc_dtype(attr):
            return np.dtype(np.int32)

        def pref_dtype(attr):
            return np.dtype(np.uint64 if attr == MatmulPreferenceAttribute.MAX_WORKSPACE_BYTES else np.uint32)

        def setter(kind, dtype_of):
            def set_attribute(obj, attr, buf, size):
                dt = dtype_of(attr)
                assert size == dt.itemsize, (attr, size)
                self._get(obj, kind)[attr] = np.frombuffer((ctypes.c_char * size).from_address(buf), dt)[0].item()
            return set_attribute

        def layout_create(type_, rows, cols, ld):
            return self._new("layout", (type_, rows, cols, ld))

        def destroyer(kind):
            def destroy(obj):
                self._get(obj, kind)
                self.objects[obj][1] = False
            return destroy

        def heuristic(handle, desc, a, b, c, d, pref, n, results, count):
            self.in_context()
            for obj, kind in ((handle, "handle"), (desc, "desc"), (a, "layout"), (b, "layout"), (c, "layout"),
                              (d, "layout"), (pref, "pref")):
                self._get(obj, kind)
            assert n == 1
            self.heuristics += 1
            found = min(self.found, n)
            ctypes.c_int32.from_address(count).value = found
            if found:
                res = np.frombuffer((ctypes.c_char * _RESULT.itemsize).from_address(results), _RESULT)
                res["workspace_size"][0] = self.ws_bytes
                res["algo"][0] = b"ALGO" + desc.to_bytes(8, "little") + bytes(52)

        def matmul(handle, desc, alpha, a, adesc, b, bdesc, beta, c, cdesc, d, ddesc, algo, ws, ws_size, stream):
            self.in_context()
            self._get(handle, "handle")
            attrs = self._get(desc, "desc")
            la, lb, lc, ld_ = (self._get(x, "layout") for x in (adesc, bdesc, cdesc, ddesc))
            al = ctypes.c_float.from_address(alpha).value
            be = ctypes.c_float.from_address(beta).value
            marker = bytes((ctypes.c_char * 12).from_address(algo))
            self.calls.append(dict(handle=handle, desc=desc, attrs=dict(attrs), alpha=al, beta=be, a=a, adesc=la,
                                   b=b, bdesc=lb, c=c, cdesc=lc, d=d, ddesc=ld_, same_cd_desc=cdesc == ddesc,
                                   algo_marker=marker, ws=ws, ws_size=ws_size, stream=stream))
            if self.fail_matmul is not None:
                raise cuBLASLtError(self.fail_matmul)
            assert marker == b"ALGO" + desc.to_bytes(8, "little"), "algo is not the heuristic's result"
            assert attrs.get(MatmulDescAttribute.POINTER_MODE) == PointerMode.HOST
            ta, tb = attrs.get(MatmulDescAttribute.TRANSA, 0), attrs.get(MatmulDescAttribute.TRANSB, 0)
            A = self.mem.colmajor(a, la[1], la[2], la[3], _TYPES[la[0]]).astype(np.float64)
            B = self.mem.colmajor(b, lb[1], lb[2], lb[3], _TYPES[lb[0]]).astype(np.float64)
            opa, opb = (A.T if ta else A), (B.T if tb else B)
            m, k = opa.shape
            k2, n = opb.shape
            assert k == k2 and (lc[1], lc[2]) == (m, n) == (ld_[1], ld_[2])
            D = self.mem.colmajor(d, ld_[1], ld_[2], ld_[3], _TYPES[ld_[0]])
            res = al * (opa @ opb)
            if be != 0:  # cuBLAS never reads C with beta == 0
                res = res + be * self.mem.colmajor(c, lc[1], lc[2], lc[3], _TYPES[lc[0]]).astype(np.float64)
            D[...] = res.astype(D.dtype)

        m.create, m.matmul_desc_create, m.matrix_layout_create = create, desc_create, layout_create
        m.matmul_preference_create = lambda: self._new("pref", {})
        m.get_matmul_desc_attribute_dtype, m.get_matmul_preference_attribute_dtype = desc_dtype, pref_dtype
        m.matmul_desc_set_attribute = setter("desc", desc_dtype)
        m.matmul_preference_set_attribute = setter("pref", pref_dtype)
        m.matmul_desc_destroy, m.matrix_layout_destroy = destroyer("desc"), destroyer("layout")
        m.matmul_preference_destroy = destroyer("pref")
        m.matmul_algo_get_heuristic, m.matmul = heuristic, matmul
        return m


@pytest.fixture
def env(monkeypatch):
    """Fake nvmath bindings, fresh caches, workspaces in host memory, no driver."""
    mem = _Mem()
    fake = FakeLt(mem)
    lt = fake.module()
    blas = types.ModuleType("nvmath.bindings.cublas")
    blas.ComputeType, blas.Operation = ComputeType, Operation
    pkg, bindings = types.ModuleType("nvmath"), types.ModuleType("nvmath.bindings")
    pkg.bindings, bindings.cublasLt, bindings.cublas = bindings, lt, blas
    for name, mod in (("nvmath", pkg), ("nvmath.bindings", bindings), ("nvmath.bindings.cublasLt", lt),
                      ("nvmath.bindings.cublas", blas)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(_cublaslt, "_plans", {})
    monkeypatch.setattr(_cublaslt, "_ws", {})
    monkeypatch.setattr(_cublaslt, "_wsb", {})
    monkeypatch.setattr(_cublaslt, "_handles", {})
    monkeypatch.setattr(_cublaslt, "stats", {"plans_made": 0, "plans_evicted": 0, "workspaces_made": 0})
    monkeypatch.setattr(gemm, "_fast", {})
    made = []

    def empty(shape, dtype, *, stream):
        h = mem.host(np.zeros(shape, dtype))
        arr = Array._make(h.ctypes.data, h.shape, h.dtype, h.strides, "device", stream.device, stream, owner=h)
        made.append(arr)
        return arr

    def graph_workspace(n, dtype, s):  # _gemm_sm90.workspace inside a capture: allocated on the side stream
        side = _stream(s.device, owned=False, handle=0x5155)
        h = mem.host(np.zeros(n, dtype))
        w = Array._make(h.ctypes.data, (n,), np.dtype(dtype), (1,), "device", s.device, side, owner=h)
        w.record_stream(s)  # the capture's sink: the graph holds it
        made.append(w)
        return w

    monkeypatch.setattr(_cublaslt, "empty", empty)
    monkeypatch.setattr(_cublaslt._sm90, "workspace", graph_workspace)
    dev = _Dev()
    fake.devices = [dev]
    return types.SimpleNamespace(fake=fake, mem=mem, dev=dev, made=made, monkeypatch=monkeypatch)


def _operands(env, s, M, N, K, dt=np.float32, ta=False, tb=False, seed=0):
    rng = np.random.default_rng(seed)
    ah = rng.uniform(-1, 1, (K, M) if ta else (M, K)).astype(dt)
    bh = rng.uniform(-1, 1, (N, K) if tb else (K, N)).astype(dt)
    ch = rng.uniform(-1, 1, (M, N)).astype(dt)
    return ah, bh, ch


def _ref(ah, bh, ch, alpha, beta, ta, tb):
    A, B = ah.astype(np.float64), bh.astype(np.float64)
    return alpha * ((A.T if ta else A) @ (B.T if tb else B)) + beta * ch.astype(np.float64)


def _rel(got, ref):
    return float(np.linalg.norm(np.asarray(got, np.float64) - ref) / max(np.linalg.norm(ref), 1e-30))


# --- plans ------------------------------------------------------------------------------------------

def test_plan_made_once_per_geometry_and_reused(env):
    """Views (the checked path every call): one heuristic, one descriptor set, new pointers,
    alpha and beta each call, results right."""
    s = _stream(env.dev)
    M, N, K = 17, 33, 65
    for i, (alpha, beta) in enumerate([(1.0, 0.0), (0.5, -2.0), (-1.25, 0.75)]):
        ah, bh, ch = _operands(env, s, M, N, K, seed=i)
        big = env.mem.host(np.full((M + 3, N), np.nan, np.float32))
        big[1:1 + M] = ch
        a, b = env.mem.view(env.mem.host(ah), env.dev), env.mem.view(env.mem.host(bh), env.dev)
        out = env.mem.view(big[1:1 + M], env.dev)  # a row block: not kit-owned, so no fast path
        assert gemm.matmul(a, b, out, alpha=alpha, beta=beta, algo="cublas", stream=s) is out
        assert _rel(big[1:1 + M], _ref(ah, bh, ch, alpha, beta, False, False)) < 1e-6
        assert np.isnan(big[0]).all() and np.isnan(big[1 + M:]).all(), "wrote outside out"
    assert _cublaslt.stats["plans_made"] == 1 and env.fake.heuristics == 1 and _cublaslt.plan_count() == 1
    assert len(env.fake.alive("desc")) == 1 and len(env.fake.alive("layout")) == 3 and len(env.fake.alive("pref")) == 1
    assert len(env.fake.alive("handle")) == 1 and len(env.fake.calls) == 3
    assert [c["alpha"] for c in env.fake.calls] == [1.0, 0.5, -1.25]
    assert [c["beta"] for c in env.fake.calls] == [0.0, -2.0, 0.75]
    assert not gemm._fast


def test_kit_owned_operands_take_the_cached_plan_directly(env, monkeypatch):
    """Kit-owned contiguous arrays: the first call (checked) leaves matmul a cached-plan entry;
    the next calls with other arrays of the same signatures go straight to cublasLtMatmul
    (plan_for is not even asked), with their own pointers and scalars."""
    s = _stream(env.dev)
    M, N, K = 64, 48, 40
    ah, bh, ch = _operands(env, s, M, N, K)
    a, b, out = env.mem.owned(ah, s), env.mem.owned(bh, s), env.mem.owned(ch, s)
    gemm.matmul(a, b, out, algo="cublas", stream=s)
    key = (a.sig, b.sig, out.sig, "cublas", False, False, False)
    assert key in gemm._fast

    def no_planning(*args, **kwargs):
        raise AssertionError("the cached-plan path asked for a plan")

    monkeypatch.setattr(_cublaslt, "plan_for", no_planning)
    for i in range(3):
        ah, bh, ch = _operands(env, s, M, N, K, seed=10 + i)
        a, b, out = env.mem.owned(ah, s), env.mem.owned(bh, s), env.mem.owned(ch, s)
        oh = env.mem.buffers[-1]
        assert gemm.matmul(a, b, out, alpha=2.0 - i, beta=0.5 * i, algo="cublas", stream=s) is out
        assert _rel(oh, _ref(ah, bh, ch, 2.0 - i, 0.5 * i, False, False)) < 1e-6
        call = env.fake.calls[-1]
        assert (call["a"], call["b"], call["c"], call["d"]) == (b.ptr, a.ptr, out.ptr, out.ptr)
    assert _cublaslt.stats["plans_made"] == 1 and len(env.fake.calls) == 4
    # another stream: the same plan, the arrays recorded as used there
    s2 = _stream(env.dev)
    gemm.matmul(a, b, out, algo="cublas", stream=s2)
    assert env.fake.calls[-1]["stream"] == s2.handle and s2 in a._used and s2 in out._used


def test_cached_plan_declines_a_less_aligned_pointer(env):
    """The cached-plan entry serves only pointers aligned as well as the plan's: a kit-owned array
    of the same signature at a 4-byte-aligned address takes the checked path (a new plan)."""
    s = _stream(env.dev)
    ah, bh, ch = _operands(env, s, 8, 8, 8)
    a, b, out = env.mem.owned(ah, s), env.mem.owned(bh, s), env.mem.owned(ch, s)
    gemm.matmul(a, b, out, algo="cublas", stream=s)
    raw = env.mem.host(np.zeros((8 * 8 + 1,), np.float32))[1:].reshape(8, 8)
    raw[...] = ah
    a4 = Array._make(raw.ctypes.data, raw.shape, raw.dtype, raw.strides, "device", s.device, s, owner=raw)
    assert a4.sig is a.sig and a4.ptr % 256 == 4
    gemm.matmul(a4, b, out, algo="cublas", stream=s)
    assert _cublaslt.stats["plans_made"] == 2 and env.fake.calls[-1]["b"] == a4.ptr
    gemm.matmul(a, b, out, algo="cublas", stream=s)  # the aligned one: the first plan, directly
    assert _cublaslt.stats["plans_made"] == 2


@pytest.mark.parametrize("change", ["alignment", "ld", "transpose_a", "transpose_b", "view_T", "dtype", "tf32",
                                    "out_alignment"])
def test_every_key_change_makes_a_new_plan(env, change):
    s = _stream(env.dev)
    M, N, K = 24, 20, 16

    def call(variant: bool):
        dt = np.float16 if variant and change == "dtype" else np.float32
        ta = variant and change == "transpose_a"
        tb = variant and change == "transpose_b"
        ah, bh, ch = _operands(env, s, M, N, K, dt, ta, tb)
        if variant and change == "alignment":  # a starts 4 bytes past a 256-byte boundary
            av = env.mem.host(np.zeros((M, K + 1), dt))[:, 1:]
            av[...] = ah
        elif variant and change == "ld":  # a is a column block of a wider matrix: lda K + 8
            av = env.mem.host(np.zeros((M, K + 8), dt))[:, :K]
            av[...] = ah
        else:
            av = env.mem.host(ah)
        if variant and change == "view_T":  # b passed as the transposed view of an N x K matrix
            bv = env.mem.host(np.ascontiguousarray(bh.T)).T
        else:
            bv = env.mem.host(bh)
        big = env.mem.host(np.zeros((M, N + 1), dt))
        ov = big[:, 1:] if variant and change == "out_alignment" else big[:, :N]
        a, b, out = env.mem.view(av, env.dev), env.mem.view(bv, env.dev), env.mem.view(ov, env.dev)
        gemm.matmul(a, b, out, algo="cublas", transpose_a=ta, transpose_b=tb, allow_tf32=variant and change == "tf32",
                    stream=s)
        tol = 2e-3 if dt == np.float16 else 1e-6
        assert _rel(ov, _ref(ah, bh, ch, 1.0, 0.0, ta, tb)) < tol

    call(False)
    call(False)
    assert _cublaslt.stats["plans_made"] == 1
    call(True)
    assert _cublaslt.stats["plans_made"] == 2
    if change in ("alignment", "out_alignment"):  # the new plan's preference states the pointers' alignment
        pref = env.fake._get(env.fake.alive("pref")[-1], "pref")
        want = {"A": 256, "B": 4 if change == "alignment" else 256}  # cuBLAS's B is the kit's a
        want["C"] = want["D"] = 4 if change == "out_alignment" else 256
        for x, al in want.items():
            assert pref[getattr(MatmulPreferenceAttribute, f"MIN_ALIGNMENT_{x}_BYTES")] == al, x
    call(True)
    call(False)
    assert _cublaslt.stats["plans_made"] == 2 and _cublaslt.plan_count() == 2


# --- the convention and the exact arguments -------------------------------------------------------

@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("via", ["flags", "views"])
def test_matmul_arguments_follow_the_column_major_convention(env, ta, tb, via):
    """C^T = op(B)^T op(A)^T: cuBLAS's A is the kit's B (its stored layout, OP_T when stored
    transposed, ldb), cuBLAS's B the kit's A (lda), C = D = out (N x M column-major, ldc, one
    layout); alpha / beta at host addresses (pointer mode host); compute 32F with an FP32 scale
    (never TF32 unless asked); the preference caps the workspace and states the alignments."""
    s = _stream(env.dev)
    M, N, K = 7, 5, 3
    ah, bh, ch = _operands(env, s, M, N, K, ta=ta, tb=tb)
    if via == "flags":
        av, bv, fa, fb = env.mem.host(ah), env.mem.host(bh), ta, tb
    else:  # the same stored matrices passed as transposed views, no flags
        av = env.mem.host(ah).T if ta else env.mem.host(ah)  # an M x K column-major view of K x M memory
        bv = env.mem.host(bh).T if tb else env.mem.host(bh)
        ah, bh = np.ascontiguousarray(av), np.ascontiguousarray(bv)
        fa = fb = False
    out = env.mem.view(env.mem.host(np.full((M, N), np.nan, np.float32)), env.dev)
    a, b = env.mem.view(av, env.dev), env.mem.view(bv, env.dev)
    gemm.matmul(a, b, out, alpha=0.25, algo="cublas", transpose_a=fa, transpose_b=fb, stream=s)
    (call,) = env.fake.calls
    stored_ta, stored_tb = ta, tb  # as stored, in the kit's letters
    lda = M if stored_ta else K
    ldb = K if stored_tb else N
    assert call["attrs"][MatmulDescAttribute.TRANSA] == (Operation.T if stored_tb else Operation.N)
    assert call["attrs"][MatmulDescAttribute.TRANSB] == (Operation.T if stored_ta else Operation.N)
    assert call["attrs"]["compute"] == ComputeType.COMPUTE_32F and call["attrs"]["scale"] == 0  # CUDA_R_32F
    assert call["a"] == b.ptr and call["adesc"] == (0, *((K, N) if stored_tb else (N, K)), ldb)
    assert call["b"] == a.ptr and call["bdesc"] == (0, *((M, K) if stored_ta else (K, M)), lda)
    assert call["c"] == call["d"] == out.ptr and call["cdesc"] == call["ddesc"] == (0, N, M, N)
    assert call["same_cd_desc"] and call["alpha"] == 0.25 and call["beta"] == 0.0
    assert call["stream"] == s.handle and call["ws"] == 0 and call["ws_size"] == 0
    (pref,) = [env.fake._get(p, "pref") for p in env.fake.alive("pref")]
    assert pref[MatmulPreferenceAttribute.MAX_WORKSPACE_BYTES] == _cublaslt.WORKSPACE_CAP
    for attr in ("A", "B", "C", "D"):
        assert pref[getattr(MatmulPreferenceAttribute, f"MIN_ALIGNMENT_{attr}_BYTES")] == 256
    got = env.mem.buffers[-1]
    assert _rel(got, _ref(ah, bh, ch, 0.25, 0.0, fa, fb)) < 1e-6


def test_tf32_only_when_asked(env):
    s = _stream(env.dev)
    for dt, tf32, want in ((np.float32, False, ComputeType.COMPUTE_32F), (np.float32, True,
                                                                          ComputeType.COMPUTE_32F_FAST_TF32),
                           (np.float16, True, ComputeType.COMPUTE_32F)):
        ah, bh, ch = _operands(env, s, 8, 8, 8, dt)
        a, b, out = (env.mem.view(env.mem.host(x), env.dev) for x in (ah, bh, ch))
        gemm.matmul(a, b, out, algo="cublas", allow_tf32=tf32, stream=s)
        assert env.fake.calls[-1]["attrs"]["compute"] == want, (dt, tf32)


_VIEW_CASES = {  # a view, a base shape, b view, b base shape, transpose flags
    "a_block": (lambda x: x[3:70, 5:42], (74, 46), lambda x: x, (37, 45), False, False),
    "b_col_block": (lambda x: x, (67, 37), lambda x: x[:, 2:47], (37, 50), False, False),
    "T_of_blocks": (lambda x: x[1:38, 3:70].T, (40, 71), lambda x: x[2:47, 1:38].T, (47, 42), False, False),
    "T_and_flags": (lambda x: x.T, (67, 37), lambda x: x.T, (37, 45), True, True),
    "odd_offsets": (lambda x: x[1:68, 1:38], (69, 39), lambda x: x[1:38, 3:48], (39, 49), False, False),
    "single_row": (lambda x: x[2:3], (5, 37), lambda x: x, (37, 45), False, False),
    "single_col": (lambda x: x, (67, 37), lambda x: x[:, 4:5], (37, 9), False, False),
}


@pytest.mark.parametrize("case", list(_VIEW_CASES))
@pytest.mark.parametrize("dt", [np.float32, np.float16])
def test_views_against_numpy(env, case, dt):
    """Views matmul accepts (blocks, transposes of blocks, flags on top, odd starts, single rows
    and columns), out a block of a larger NaN-poisoned array with beta != 0: right result,
    nothing outside the block written."""
    s = _stream(env.dev)
    fa, a_shape, fb, b_shape, ta, tb = _VIEW_CASES[case]
    rng = np.random.default_rng(5)
    av = fa(env.mem.host(rng.uniform(-1, 1, a_shape).astype(dt)))
    bv = fb(env.mem.host(rng.uniform(-1, 1, b_shape).astype(dt)))
    opa, opb = (av.T if ta else av), (bv.T if tb else bv)
    M, N = opa.shape[0], opb.shape[1]
    big = env.mem.host(np.full((M + 5, N + 7), np.nan, dt))
    ch = rng.uniform(-1, 1, (M, N)).astype(dt)
    big[3:3 + M, 4:4 + N] = ch
    before = big.copy()
    out = env.mem.view(big[3:3 + M, 4:4 + N], env.dev)
    gemm.matmul(env.mem.view(av, env.dev), env.mem.view(bv, env.dev), out, alpha=0.5, beta=-1.25, algo="cublas",
                transpose_a=ta, transpose_b=tb, stream=s)
    ref = 0.5 * (opa.astype(np.float64) @ opb.astype(np.float64)) - 1.25 * ch.astype(np.float64)
    assert _rel(big[3:3 + M, 4:4 + N], ref) < (1e-6 if dt == np.float32 else 2e-3)
    rest = np.ones(big.shape, bool)
    rest[3:3 + M, 4:4 + N] = False
    bits = np.uint16 if dt == np.float16 else np.uint32
    assert np.array_equal(big.view(bits)[rest], before.view(bits)[rest]), "wrote outside the out block"


def test_calls_run_in_the_device_context(env):
    s = _stream(env.dev)
    ah, bh, ch = _operands(env, s, 4, 4, 4)
    gemm.matmul(*(env.mem.view(env.mem.host(x), env.dev) for x in (ah, bh, ch)), algo="cublas", stream=s)
    assert env.dev.current == 0  # the fake asserted it was current during create, heuristic and matmul


def test_out_on_another_device_refused(env):
    s = _stream(env.dev)
    ah, bh, ch = _operands(env, s, 4, 4, 4)
    a, b = env.mem.view(env.mem.host(ah), env.dev), env.mem.view(env.mem.host(bh), env.dev)
    out = env.mem.view(env.mem.host(ch), _Dev(1))
    with pytest.raises(DeviceMismatchError, match="out is on device 1"):
        gemm.matmul(a, b, out, algo="cublas", stream=s)
    assert not env.fake.calls


# --- workspaces ----------------------------------------------------------------------------------

def test_workspace_one_per_stream_reused_and_freed_with_the_stream(env):
    env.fake.ws_bytes = 4096
    s1, s2 = _stream(env.dev), _stream(env.dev)
    M, N, K = 16, 16, 16
    arrays = [env.mem.owned(x, s1) for x in _operands(env, s1, M, N, K)]
    for s in (s1, s1, s2, s1, s2):
        gemm.matmul(*arrays, algo="cublas", stream=s)
    ws = {c["stream"]: c["ws"] for c in env.fake.calls}
    assert len(env.made) == 2 and _cublaslt.stats["workspaces_made"] == 2
    assert ws[s1.handle] != ws[s2.handle] and all(c["ws_size"] == 4096 for c in env.fake.calls)
    assert {c["ws"] for c in env.fake.calls if c["stream"] == s1.handle} == {ws[s1.handle]}
    w1 = next(w for w in env.made if w.ptr == ws[s1.handle])
    # allocated on a borrowed twin of s1 (same CUDA stream), so the cache does not hold s1
    assert w1.stream is not s1 and w1.stream._core is s1._core and not w1.stream.owned
    ref = weakref.ref(s1)
    del s1, arrays
    gc.collect()
    assert ref() is None, "the workspace cache keeps the stream alive"
    assert w1.ptr == 0, "the workspace outlived its stream"
    assert len(_cublaslt._ws) == 1


def test_workspace_of_a_closed_stream_is_freed_the_kit_way(env):
    env.fake.ws_bytes = 256
    s = _stream(env.dev)
    gemm.matmul(*(env.mem.owned(x, s) for x in _operands(env, s, 8, 8, 8)), algo="cublas", stream=s)
    (w,) = env.made
    twin = w.stream
    s._core.is_closed = True  # what Stream.close() does to the cuda.core stream
    del s
    gc.collect()
    assert w.ptr == 0 and twin.is_closed  # the twin marked closed: the kit's closed-stream free path


def test_workspace_grows_in_the_streams_order(env):
    s = _stream(env.dev)
    env.fake.ws_bytes = 256
    gemm.matmul(*(env.mem.owned(x, s) for x in _operands(env, s, 8, 8, 8)), algo="cublas", stream=s)
    env.fake.ws_bytes = 8192
    gemm.matmul(*(env.mem.owned(x, s) for x in _operands(env, s, 9, 8, 8)), algo="cublas", stream=s)
    small, big = env.made
    assert small.ptr == 0 and big.ptr and big.nbytes == 8192 and small.stream._core is s._core
    gemm.matmul(*(env.mem.owned(x, s) for x in _operands(env, s, 8, 8, 8)), algo="cublas", stream=s)
    assert len(env.made) == 2 and env.fake.calls[-1]["ws"] == big.ptr  # the larger one serves both


def test_borrowed_streams_share_by_handle_and_are_bounded(env):
    env.fake.ws_bytes = 512
    arrays = None
    for i in range(_cublaslt._BORROWED_WORKSPACES + 3):
        h = 0x9000 + 16 * i
        for _ in range(2):  # two wrappers of one foreign handle: one workspace
            s = _stream(env.dev, owned=False, handle=h)
            arrays = arrays or [env.mem.owned(x, s) for x in _operands(env, s, 8, 8, 8)]
            gemm.matmul(*arrays, algo="cublas", stream=s)
    assert _cublaslt.stats["workspaces_made"] == _cublaslt._BORROWED_WORKSPACES + 3
    assert len(_cublaslt._wsb) == _cublaslt._BORROWED_WORKSPACES and not _cublaslt._ws
    assert [w.ptr == 0 for w in env.made] == [True] * 3 + [False] * _cublaslt._BORROWED_WORKSPACES


def test_per_thread_default_stream_gets_a_workspace_per_thread(env, monkeypatch):
    """Handle 2 (CU_STREAM_PER_THREAD) names another stream in each thread: one workspace each."""
    import threading

    from cudart_kit import _driver

    synced = []
    monkeypatch.setattr(_driver, "call", lambda name, *a: synced.append(name))
    env.fake.ws_bytes = 512
    arrays = [env.mem.owned(x, _stream(env.dev)) for x in _operands(env, None, 8, 8, 8)]

    def run():
        gemm.matmul(*arrays, algo="cublas", stream=_stream(env.dev, owned=False, handle=2))

    run()
    t = threading.Thread(target=run)
    t.start()
    t.join()
    run()
    assert _cublaslt.stats["workspaces_made"] == 2 and len({c["ws"] for c in env.fake.calls}) == 2
    gemm._clear_plans()  # freed after a context synchronize: the freeing thread's handle 2 is not theirs
    assert synced == ["cuCtxSynchronize"] * 2 and all(w.ptr == 0 for w in env.made)


def test_capture_workspace_belongs_to_the_graph(env, monkeypatch):
    """Inside a capture the workspace is the graph's (allocated off the capture, put in its
    sink), one per capture stream, reused by the capture's later calls, never the eager one;
    clearing the caches leaves it to the graph."""
    from cudart_kit import _driver

    monkeypatch.setattr(_driver, "relaxed_capture_mode", contextlib.nullcontext)
    env.fake.ws_bytes = 1024
    s = _stream(env.dev)
    arrays = [env.mem.owned(x, s) for x in _operands(env, s, 8, 8, 8)]
    gemm.matmul(*arrays, algo="cublas", stream=s)  # eager: the stream's own workspace
    eager = env.fake.calls[-1]["ws"]
    cap = _stream(env.dev, owned=False, handle=s.handle + 1)
    cap._capture = sink = []
    gemm.matmul(*arrays, algo="cublas", stream=cap)
    gemm.matmul(*arrays, alpha=2.0, algo="cublas", stream=cap)
    w = env.made[-1]
    assert env.fake.calls[-1]["ws"] == env.fake.calls[-2]["ws"] == w.ptr != eager
    assert any(x is w for x in sink) and all(any(x is arr for x in sink) for arr in arrays)
    cap2 = _stream(env.dev, owned=False, handle=s.handle + 1)  # the next capture, same handle
    cap2._capture = []
    gemm.matmul(*arrays, algo="cublas", stream=cap2)
    assert env.fake.calls[-1]["ws"] not in (w.ptr, eager)  # graphs never share a workspace
    gemm._clear_plans()
    assert w.ptr, "the graph's workspace was freed"


# --- eviction, clearing, errors --------------------------------------------------------------------

def test_lru_eviction_destroys_descriptors(env, monkeypatch):
    monkeypatch.setattr(_cublaslt, "PLAN_CACHE_SIZE", 3)
    s = _stream(env.dev)
    keep = [env.mem.owned(x, s) for x in _operands(env, s, 8, 8, 8)]
    gemm.matmul(*keep, algo="cublas", stream=s)  # the fast-path entry for 8x8x8
    for n in (9, 10, 11):
        gemm.matmul(*(env.mem.owned(x, s) for x in _operands(env, s, n, 8, 8)), algo="cublas", stream=s)
    assert _cublaslt.plan_count() == 3 and _cublaslt.stats["plans_evicted"] == 1
    assert len(env.fake.alive("desc")) == 3 and len(env.fake.alive("layout")) == 9 and len(env.fake.alive("pref")) == 3
    assert len(env.fake.objects) - len(env.fake.alive()) == 5  # 8x8x8's desc, 3 layouts and preference
    # its stale fast-path entry declines; the checked path plans again and the call succeeds
    gemm.matmul(*keep, algo="cublas", stream=s)
    assert _cublaslt.stats["plans_made"] == 5 and env.fake.calls[-1]["desc"] in env.fake.alive("desc")


def test_clear_plans_clears_both_caches(env):
    env.fake.ws_bytes = 256
    s = _stream(env.dev)
    gemm.matmul(*(env.mem.owned(x, s) for x in _operands(env, s, 8, 8, 8)), algo="cublas", stream=s)
    assert gemm._fast and _cublaslt.plan_count() == 1 and _cublaslt._ws
    gemm._clear_plans()
    assert not gemm._fast and _cublaslt.plan_count() == 0 and not _cublaslt._ws and not _cublaslt._wsb
    assert env.fake.alive() == env.fake.alive("handle")  # descriptors destroyed, the handle kept
    assert env.made[0].ptr == 0  # the workspace given back


def test_no_heuristic_result_is_a_kit_error(env):
    env.fake.found = 0
    s = _stream(env.dev)
    ops = [env.mem.view(env.mem.host(x), env.dev) for x in _operands(env, s, 17, 33, 65)]
    with pytest.raises(CudaKitError, match=r"cublasLtMatmulAlgoGetHeuristic found no algorithm for a 17x33x65 "
                                           r"float32 matmul \(layout nn"):
        gemm.matmul(*ops, algo="cublas", stream=s)
    assert env.fake.alive() == env.fake.alive("handle") and _cublaslt.plan_count() == 0 and not env.fake.calls


def test_cublaslt_status_becomes_a_kit_error(env):
    env.fake.fail_matmul = 13
    s = _stream(env.dev)
    ops = [env.mem.view(env.mem.host(x), env.dev) for x in _operands(env, s, 4, 4, 4)]
    with pytest.raises(CudaKitError, match=r"cublasLtMatmul failed for a 4x4x4 float32 matmul .*"
                                           r"CUBLAS_STATUS_EXECUTION_FAILED \(status 13\)") as err:
        gemm.matmul(*ops, algo="cublas", stream=s)
    assert isinstance(err.value.__cause__, cuBLASLtError)


def test_missing_nvmath_is_the_extras_error(env, monkeypatch):
    monkeypatch.setitem(sys.modules, "nvmath", None)  # import nvmath... raises ImportError
    monkeypatch.delitem(sys.modules, "nvmath.bindings")
    monkeypatch.delitem(sys.modules, "nvmath.bindings.cublasLt")
    s = _stream(env.dev)
    ops = [env.mem.view(env.mem.host(x), env.dev) for x in _operands(env, s, 4, 4, 4)]
    with pytest.raises(MissingExtraError,
                       match=r"algo='cublas' needs nvmath-python .*pip install \"cudart-kit\[cublas\]\""):
        gemm.matmul(*ops, algo="cublas", stream=s)
    assert issubclass(MissingExtraError, CudaKitError)


def test_no_launcher_private_and_no_nvmath_at_import():
    """ops reach cuBLASLt through the public Array API (record_stream), not launcher privates, and
    importing the modules imports no nvmath (it is an optional extra)."""
    import ast
    import inspect

    for mod in (_cublaslt, gemm):
        tree = ast.parse(inspect.getsource(mod))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.endswith("launcher"):
                assert all(not a.name.startswith("_") for a in node.names), (mod.__name__, [a.name for a in node.names])
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert not [n for n in top if "nvmath" in ast.dump(n)], mod.__name__


# --- the epilogue after cuBLAS ----------------------------------------------------------------------

@pytest.mark.parametrize("bias_shape,activation", [(b, act) for b in ("col", "row", None)
                                                   for act in (None, "relu", "gelu") if (b, act) != (None, None)])
def test_epilogue_runs_after_the_cublas_call_on_the_same_stream(env, activation, bias_shape):
    """bias= / activation= with algo="cublas": the one cublasLtMatmul (plain, in place), then
    epilogue_f32 over out on the same stream with out's pitch, the bias pointer and its element
    strides (0 along the broadcast dimension) and the activation code; emulated, the result is
    act(alpha op(a) op(b) + beta out + bias) in float64. No cached plan is left for such a call."""
    from cudart_kit.ops._gemm_geometry import EPILOGUE

    s = _stream(env.dev)
    M, N, K = 7, 5, 3
    ah, bh, ch = _operands(env, s, M, N, K, seed=3)
    big = env.mem.host(np.full((M, N + 3), np.nan, np.float32))
    big[:, 1:1 + N] = ch
    out = env.mem.view(big[:, 1:1 + N], env.dev)
    a, b = env.mem.view(env.mem.host(ah), env.dev), env.mem.view(env.mem.host(bh), env.dev)
    bh_ = None
    if bias_shape == "col":
        bh_ = env.mem.host(np.arange(N, dtype=np.float32) - 2.0)
    elif bias_shape == "row":
        bh_ = env.mem.host((np.arange(M, dtype=np.float32) - 3.0).reshape(M, 1))
    bias = None if bh_ is None else env.mem.view(bh_, env.dev)
    launched = []

    def launch(kernel, grid, block, *args, stream, timed=False, shared_mem_bytes=0):
        launched.append((kernel, grid, block, stream, args))
        Mx, Nx, C, ldc, bptr, sm, sn, act = args
        c = np.lib.stride_tricks.as_strided(big[:, 1:], (Mx, Nx), (ldc * 4, 4))
        v = c.astype(np.float64)
        if bias is not None:
            v = v + np.lib.stride_tricks.as_strided(bh_, (Mx, Nx), (int(sm) * 4, int(sn) * 4))
        v = {0: v, 1: np.maximum(v, 0), 2: 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3)))}[
            int(act)]
        c[...] = v.astype(np.float32)

    env.monkeypatch.setattr(gemm, "launch", launch)
    env.monkeypatch.setattr(gemm, "_kernel", lambda name: name)
    gemm.matmul(a, b, out, alpha=0.5, beta=2.0, bias=bias, activation=activation, algo="cublas", stream=s)
    (call,) = env.fake.calls
    assert call["c"] == out.ptr and call["stream"] == s.handle
    ((kname, grid, block, stream, args),) = launched
    assert kname == "epilogue_f32" and stream is s
    assert grid == EPILOGUE.blocks(M * N, 132) and block == EPILOGUE.threads
    assert args[:4] == (M, N, out, N + 3)
    assert (args[4] is bias) if bias is not None else (type(args[4]) is int and args[4] == 0)
    assert (int(args[5]), int(args[6])) == {"col": (0, 1), "row": (1, 0), None: (0, 0)}[bias_shape]
    assert int(args[7]) == {None: 0, "relu": 1, "gelu": 2}[activation]
    ref = _ref(ah, bh, ch, 0.5, 2.0, False, False)
    if bh_ is not None:
        ref = ref + np.broadcast_to(bh_.astype(np.float64), (M, N))
    ref = {None: ref, "relu": np.maximum(ref, 0), "gelu": 0.5 * ref * (1 + np.tanh(np.sqrt(2 / np.pi) * (
        ref + 0.044715 * ref ** 3)))}[activation]
    assert _rel(big[:, 1:1 + N], ref) < 1e-6
    assert np.isnan(big[:, 0]).all() and np.isnan(big[:, 1 + N:]).all()
    assert not gemm._fast
