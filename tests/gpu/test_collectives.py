"""Collectives through nccl4py on the GPU, against numpy float64 references on fresh random
data at awkward counts: one rank (``init_all([0])`` and a unique-id init, also from another
process), every collective out of place and in place, contiguous views zero-copy, a foreign
stream, the errors raised before NCCL, send/recv to oneself in a group, and the nccl-tests
style benchmark through the CLI with ``#wrong == 0``. Two-GPU tests run where there are two.

nccl4py missing: the tests skip, unless CUDART_KIT_REQUIRE_NCCL=1, which turns that into a
failure (use it on the device machine, with CUDART_KIT_REQUIRE_GPU=1)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cudart_kit as ck
from cudart_kit import cli
from cudart_kit.memory import bfloat16

REPO = Path(__file__).resolve().parents[2]
N = 1000003
COUNTS = [1, 31, 257, N]
OPS = ["all_reduce", "all_gather", "reduce_scatter", "broadcast", "sendrecv"]
INT_DTYPES = [np.int8, np.uint8, np.int32, np.uint32, np.int64, np.uint64]
FLOAT_DTYPES = [np.float16, np.float32, np.float64] + ([bfloat16] if bfloat16 is not None else [])


def _require_nccl() -> bool:
    return os.environ.get("CUDART_KIT_REQUIRE_NCCL", "") not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def cc():
    """cudart_kit.collectives with nccl4py and libnccl usable (a unique id was made)."""
    from cudart_kit import collectives

    try:
        collectives.unique_id()  # imports nccl4py and loads libnccl
    except collectives.MissingExtraError as exc:
        if _require_nccl():
            pytest.fail(f"CUDART_KIT_REQUIRE_NCCL=1 but {exc} ({exc.detail})", pytrace=False)
        pytest.skip(f"nccl4py is not usable here: {exc.detail or exc}")
    return collectives


@pytest.fixture(scope="module")
def comm(cc):
    """Rank 0 of a one-rank communicator on device 0 (init_all)."""
    clique = cc.Communicator.init_all([0])
    assert len(clique) == 1 and (clique[0].rank, clique[0].nranks, clique[0].device.ordinal) == (0, 1, 0)
    yield clique[0]
    clique.close()


def rand(rng, n, dtype):
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        lo = 0 if dt.kind == "u" else -50
        return rng.integers(lo, 50, n).astype(dt)
    x = rng.uniform(-2.0, 2.0, n)
    x[np.abs(x) < 1e-3] = 0.5
    return x.astype(dt)


def poisoned(n, dtype, stream):
    out = ck.empty(n, dtype, stream=stream)
    ck.memset(out, 0x7F if np.dtype(dtype).kind == "i" else 0xFF, stream=stream)  # NaN for floats
    return out


def assert_close(got, ref64, dtype):
    """Within one rounding of ``dtype`` (exact for integers); the poison (NaN) is never close."""
    dt = np.dtype(dtype)
    got64 = np.asarray(got).astype(np.float64)
    assert not np.isnan(got64).any(), "some elements were never written (still NaN poison)"
    if dt.kind in "iu":
        assert np.array_equal(np.asarray(got), np.asarray(ref64).astype(dt))
        return
    eps = {"float16": 9.8e-4, "float32": 1.2e-7, "float64": 2.3e-16, "bfloat16": 7.9e-3}[dt.name]
    bad = np.abs(got64 - ref64) > eps * np.abs(ref64) + 1e-30
    assert not bad.any(), f"{bad.sum()} of {bad.size} off; first at {np.argmax(bad)}: {got64[bad][0]} vs {ref64[bad][0]}"


REDUCE = {"sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min, "avg": np.mean}


# --- one rank: every collective against numpy ------------------------------------------------------

@pytest.mark.parametrize("in_place", [False, True], ids=["out-of-place", "in-place"])
@pytest.mark.parametrize("op", ["sum", "max", "avg", "prod", "min"])
def test_all_reduce(comm, stream, rng, op, in_place):
    xh = rand(rng, N, np.float32)
    x = ck.to_device(xh, stream=stream)
    ref = REDUCE[op]([xh.astype(np.float64)], axis=0)
    if in_place:
        assert comm.all_reduce(x, op=op, stream=stream) is x
        got = x.to_numpy(stream=stream)
    else:
        y = poisoned(N, np.float32, stream)
        assert comm.all_reduce(x, y, op=op, stream=stream) is y
        got = y.to_numpy(stream=stream)
        assert np.array_equal(x.to_numpy(stream=stream), xh)  # the input is left alone
    assert_close(got, ref, np.float32)


@pytest.mark.parametrize("dtype", INT_DTYPES + FLOAT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n", [257, N])
def test_all_reduce_dtypes(comm, stream, rng, dtype, n):
    xh = rand(rng, n, dtype)
    x, y = ck.to_device(xh, stream=stream), poisoned(n, dtype, stream)
    comm.all_reduce(x, y, op="sum", stream=stream)
    assert_close(y.to_numpy(stream=stream), xh.astype(np.float64), dtype)


@pytest.mark.parametrize("n", COUNTS)
def test_all_gather(comm, stream, rng, n):
    xh = rand(rng, n, np.float32)
    x = ck.to_device(xh, stream=stream)
    y = poisoned(n, np.float32, stream)
    assert comm.all_gather(x, y, stream=stream) is y
    assert_close(y.to_numpy(stream=stream), xh.astype(np.float64), np.float32)
    fresh = comm.all_gather(x, stream=stream)  # recv allocated on the stream
    assert fresh.shape == (n,) and np.array_equal(fresh.to_numpy(stream=stream), xh)
    inplace = ck.to_device(xh, stream=stream)  # send is rank 0's block of recv: the whole of it
    comm.all_gather(inplace[0:n], inplace, stream=stream)
    assert np.array_equal(inplace.to_numpy(stream=stream), xh)


@pytest.mark.parametrize("n", COUNTS)
@pytest.mark.parametrize("op", ["sum", "max"])
def test_reduce_scatter(comm, stream, rng, n, op):
    xh = rand(rng, n, np.float64)
    x, y = ck.to_device(xh, stream=stream), poisoned(n, np.float64, stream)
    assert comm.reduce_scatter(x, y, op=op, stream=stream) is y
    assert_close(y.to_numpy(stream=stream), REDUCE[op]([xh], axis=0), np.float64)
    comm.reduce_scatter(x, x[0:n], op=op, stream=stream)  # in place: recv is rank 0's block of send
    assert_close(x.to_numpy(stream=stream), xh, np.float64)


@pytest.mark.parametrize("n", COUNTS)
def test_broadcast(comm, stream, rng, n):
    xh = rand(rng, n, np.int32)
    x, y = ck.to_device(xh, stream=stream), poisoned(n, np.int32, stream)
    assert comm.broadcast(x, y, root=0, stream=stream) is y
    assert np.array_equal(y.to_numpy(stream=stream), xh)
    z = ck.to_device(xh, stream=stream)
    assert comm.broadcast(z, root=0, stream=stream) is z  # in place
    assert np.array_equal(z.to_numpy(stream=stream), xh)


def test_contiguous_views_are_passed_zero_copy(comm, stream, rng):
    bh = rand(rng, N + 64, np.float32)
    big = ck.to_device(bh, stream=stream)
    out_big = poisoned(N + 64, np.float32, stream)
    x, y = big[7:7 + N], out_big[13:13 + N]  # offset slices (28 and 52 bytes into their arrays)
    comm.all_reduce(x, y, stream=stream)
    got = out_big.to_numpy(stream=stream)
    assert np.array_equal(got[13:13 + N], bh[7:7 + N])
    assert np.isnan(got[:13]).all() and np.isnan(got[13 + N:]).all()  # nothing outside the view was written
    mh = rand(rng, (100, 1003), np.float32)
    m = ck.to_device(mh, stream=stream)
    comm.all_reduce(m[10:20].reshape(-1), op="max", stream=stream)  # contiguous rows, reshaped
    assert np.array_equal(m.to_numpy(stream=stream), mh)


def test_managed_memory(comm, stream, rng):
    xh = rand(rng, 4099, np.float32)
    x = ck.empty(4099, np.float32, stream=stream, kind="managed")
    ck.copy(x, xh, stream=stream)
    comm.all_reduce(x, op="sum", stream=stream)
    stream.sync()
    assert np.array_equal(x.numpy(), xh)


def _foreign_stream(device):
    """A stream the kit did not create: PyTorch's or CuPy's when installed, else a raw CUstream."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.Stream(device=device.ordinal), "torch", None
    except ImportError:
        pass
    try:
        import cupy

        return cupy.cuda.Stream(non_blocking=True), "cupy", None
    except ImportError:
        pass
    owner = ck.Stream.create(device)
    return owner.handle, "raw handle", owner


def test_foreign_stream(comm, stream, device, rng):
    foreign, kind, owner = _foreign_stream(device)
    xh = rand(rng, N, np.float32)
    x, y = ck.to_device(xh, stream=stream), poisoned(N, np.float32, stream)
    stream.sync()  # the foreign stream knows nothing of the kit stream's work
    comm.all_reduce(x, y, op="sum", stream=foreign)
    assert np.array_equal(y.to_numpy(stream=foreign), xh), kind
    if owner is not None:
        owner.close()


def test_arrays_record_the_collectives_stream(comm, stream, device, rng):
    x = ck.to_device(rand(rng, 1000, np.float32), stream=stream)
    with ck.Stream.create(device) as other:
        stream.sync()
        comm.all_reduce(x, stream=other)
        assert other in x._used  # so x's free waits for the all_reduce on `other`
        other.sync()


def test_bfloat16_goes_through_dlpack(comm, stream, rng):
    if bfloat16 is None:
        pytest.skip("bfloat16 needs ml_dtypes (the bf16 extra)")
    xh = rand(rng, N, bfloat16)
    x, y = ck.to_device(xh, stream=stream), poisoned(N, bfloat16, stream)
    comm.all_reduce(x, y, stream=stream)
    assert_close(y.to_numpy(stream=stream), xh.astype(np.float64), bfloat16)


# --- errors before NCCL ----------------------------------------------------------------------------

def test_errors_before_anything_is_queued(cc, comm, stream, rng):
    m = ck.to_device(rand(rng, (64, 100), np.float32), stream=stream)
    with pytest.raises(ck.ShapeError, match="non-contiguous view"):
        comm.all_reduce(m[:, ::2], stream=stream)
    with pytest.raises(ck.ShapeError, match="non-contiguous view"):
        comm.broadcast(m.T, root=0, stream=stream)
    x = ck.to_device(rand(rng, 100, np.float32), stream=stream)
    with pytest.raises(ck.DTypeError, match="float32 but recv is float64"):
        comm.all_reduce(x, ck.empty(100, np.float64, stream=stream), stream=stream)
    with pytest.raises(ck.DTypeError, match="NCCL has no type"):
        comm.all_reduce(ck.empty(100, np.int16, stream=stream), stream=stream)
    with pytest.raises(ck.ShapeError, match="recv has 99 elements"):
        comm.all_reduce(x, ck.empty(99, np.float32, stream=stream), stream=stream)
    with pytest.raises(ck.ShapeError, match="need 100"):
        comm.all_gather(x, ck.empty(101, np.float32, stream=stream), stream=stream)
    with pytest.raises(ck.ShapeError, match="overlap"):
        comm.all_reduce(x[0:50], x[10:60], stream=stream)
    with pytest.raises(ck.DeviceMismatchError, match="pinned host memory"):
        comm.all_reduce(ck.empty(100, np.float32, stream=stream, kind="pinned"), stream=stream)
    with pytest.raises(cc.RankError, match="root 1 is not a rank"):
        comm.broadcast(x, root=1, stream=stream)
    with pytest.raises(cc.RankError, match="inside one collectives.group"):
        comm.send(x, 0, stream=stream)
    with pytest.raises(ValueError, match="sum, prod"):
        comm.all_reduce(x, op="mean", stream=stream)


def _two_gpus() -> None:
    try:
        n = ck.device_count()
    except ck.CudaKitError:
        n = 0
    if n < 2:
        pytest.skip(f"needs two GPUs, {n} visible")


def test_device_mismatch_with_two_gpus(comm, stream, rng):
    _two_gpus()
    with ck.Stream.create(1) as s1:
        x1 = ck.to_device(rand(rng, 100, np.float32), stream=s1)
        with pytest.raises(ck.DeviceMismatchError, match="on device 1 but the communicator"):
            comm.all_reduce(x1, stream=stream)
        with pytest.raises(ck.DeviceMismatchError, match="the stream is on device 1"):
            comm.all_reduce(ck.empty(4, np.float32, stream=stream), stream=s1)
        s1.sync()


def test_send_recv_to_oneself_in_a_group(cc, comm, stream, rng):
    xh = rand(rng, N, np.float32)
    x, y = ck.to_device(xh, stream=stream), poisoned(N, np.float32, stream)
    try:
        with cc.group():
            comm.send(x, 0, stream=stream)
            comm.recv(y, 0, stream=stream)
        got = y.to_numpy(stream=stream)
    except cc.NcclError as exc:  # NCCL documents self send/recv inside a group; say so if this one refuses
        pytest.skip(f"this NCCL refused a send to itself with one rank: {exc}")
    assert np.array_equal(got, xh)


# --- lifetime, unique ids, other processes ---------------------------------------------------------

def test_unique_id_init_single_rank(cc, stream, rng):
    uid = cc.unique_id()
    again = pickle.loads(pickle.dumps(uid))
    assert again == uid and len(bytes(uid)) == 128
    with cc.Communicator.init(1, 0, bytes(again), device=0) as c:
        assert (c.rank, c.nranks, c.device.ordinal) == (0, 1, 0) and c.ptr != 0
        xh = rand(rng, N, np.float32)
        x = ck.to_device(xh, stream=stream)
        c.all_reduce(x, op="avg", stream=stream)
        assert_close(x.to_numpy(stream=stream), xh.astype(np.float64), np.float32)
        c.check_async()
    assert c.is_closed
    c.close()  # idempotent
    with pytest.raises(ck.ClosedError, match="closed"):
        c.all_reduce(x, stream=stream)


def test_init_local_single_rank(cc, stream, rng):
    with cc.Communicator.init_local(1, [0], cc.unique_id(), [0]) as clique:
        xh = rand(rng, 4097, np.int64)
        x = ck.to_device(xh, stream=stream)
        clique[0].all_reduce(x, op="max", stream=stream)
        assert np.array_equal(x.to_numpy(stream=stream), xh)
    assert clique[0].is_closed


def test_unique_id_carried_to_another_process(cc):
    """The id's bytes cross a process boundary (as any launcher carries them): the child joins it."""
    uid = cc.unique_id()
    code = ("import sys, numpy as np, cudart_kit as ck\n"
            "from cudart_kit import collectives as cc\n"
            "uid = cc.UniqueId.fromhex(sys.argv[1])\n"
            "with cc.Communicator.init(1, 0, uid, device=0) as c, ck.Stream.create(0) as s:\n"
            "    x = ck.to_device(np.arange(1000, dtype=np.float32), stream=s)\n"
            "    c.all_reduce(x, op='max', stream=s)\n"
            "    print(float(x.to_numpy(stream=s).sum()))\n")
    env = _child_env()
    out = subprocess.run([sys.executable, "-c", code, uid.hex()], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.strip().splitlines()[-1]) == float(np.arange(1000).sum())


def test_clique_close_and_abort(cc, stream):
    clique = cc.Communicator.init_all([0])
    clique.close()
    clique.close()
    assert clique[0].is_closed
    clique2 = cc.Communicator.init_all([0])
    clique2.abort()
    assert clique2[0].is_closed and "aborted" in repr(clique2[0])


def test_two_gpus_all_reduce_and_all_gather(cc, rng):
    _two_gpus()
    clique = cc.Communicator.init_all([0, 1])
    streams = [ck.Stream.create(d) for d in (0, 1)]
    try:
        hs = [rand(rng, N, np.float32) for _ in range(2)]
        xs = [ck.to_device(h, stream=s) for h, s in zip(hs, streams)]
        gathered = [ck.empty(2 * N, np.float32, stream=s) for s in streams]
        with cc.group():
            for c, x, s in zip(clique, xs, streams):
                c.all_reduce(x, op="sum", stream=s)
        ref = hs[0].astype(np.float64) + hs[1]
        for x, s in zip(xs, streams):
            assert_close(x.to_numpy(stream=s), ref, np.float32)
        with cc.group():
            for c, x, g, s in zip(clique, xs, gathered, streams):
                c.all_gather(x[:N], g, stream=s)
        for g, s in zip(gathered, streams):
            got = g.to_numpy(stream=s)
            assert_close(got[:N], ref, np.float32)
            assert_close(got[N:], ref, np.float32)
    finally:
        clique.close()
        for s in streams:
            s.close()


# --- the benchmark -------------------------------------------------------------------------------

@pytest.mark.parametrize("op", OPS)
def test_cli_benchmark_json(cc, op, capsys):
    code = cli.main(["collectives", op, "-b", "8", "-e", "4M", "-f", "8", "-n", "3", "-w", "1", "--devices", "0",
                     "--json"])
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert code == 0, doc
    assert doc["schema"] == "cudart-kit/collectives/1" and doc["op"] == op and doc["nranks"] == 1
    assert doc["wrong_total"] == 0 and doc["errors"] == 0 and doc["results"]
    assert doc["ranks"][0]["device"] == 0 and doc["ranks"][0]["pid"] == os.getpid()
    assert any("bus bandwidth needs more than one rank" in n for n in doc["notes"])
    for r in doc["results"]:
        assert r["out_of_place"]["wrong"] == 0
        assert r["in_place"]["wrong"] == (None if op == "sendrecv" else 0)
        for cell in (r["out_of_place"], r["in_place"]):
            assert cell["time_us"] > 0 and cell["algbw_gbps"] > 0
            factor = 0.0 if op in ("all_reduce", "all_gather", "reduce_scatter") else 1.0
            assert cell["busbw_gbps"] == pytest.approx(cell["algbw_gbps"] * factor)


@pytest.mark.parametrize("args", [["-d", "half", "-o", "max"], ["-d", "int8", "-o", "prod"],
                                  ["-d", "uint64", "-o", "avg"], ["-d", "double", "-o", "min"]])
def test_cli_benchmark_dtypes(cc, args, capsys):
    code = cli.main(["collectives", "all_reduce", "-b", "1K", "-e", "1M", "-f", "32", "-n", "2", "-w", "1",
                     "--devices", "0", "--json", *args])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["wrong_total"] == 0 and doc["redop"] == args[3]


def _child_env() -> dict:
    """The environment of a child Python: this one's, with the checkout first on the path (and
    whatever path this process has, e.g. extras installed with --target)."""
    path = os.pathsep.join([str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    return dict(os.environ, PYTHONPATH=path)


def test_cli_benchmark_text_like_nccl_tests(cc):
    env = _child_env()
    out = subprocess.run([sys.executable, "-m", "cudart_kit.cli", "collectives", "reduce_scatter", "-b", "8", "-e",
                          "64K", "-n", "2", "-w", "1", "--devices", "0"], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[1].startswith("# nThread 1 nGpus 1 minBytes 8 maxBytes 65536 step: 2(factor)")
    assert "# Using devices" in lines and any(line.startswith("#  Rank  0 Group  0 Pid") for line in lines)
    assert any(line.split()[:2] == ["#", "size"] for line in lines)
    rows = [line for line in lines if line and not line.startswith("#")]
    assert len(rows) == 14 and all(len(r.split()) == 13 for r in rows)  # 8 B .. 64 KiB
    assert lines[-3] == "# Out of bounds values : 0 OK" and lines[-2].startswith("# Avg bus bandwidth    : ")


def test_bench_run_streams_lines(comm):
    from cudart_kit.collectives import bench

    lines = []
    doc = bench.run([comm], bench.Options(op="all_gather", min_bytes=4, max_bytes=4096, iters=2, warmup=0),
                    out=lines.append)
    assert lines == bench.report_lines(doc) and doc["wrong_total"] == 0
    assert [r["size"] for r in doc["results"]] == [4 << i for i in range(11)]
