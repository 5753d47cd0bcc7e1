"""CPU tests of cudart_kit.collectives (no GPU, no nccl4py needed): bus-bandwidth factors and
nccl-tests' element counts, the size sweep, the table in nccl-tests' columns (from fabricated
numbers, used only to test formatting), the JSON document's keys, the host reference and its
#wrong count, the kit's argument checks in front of NCCL (over a fake nccl4py communicator),
groups and the teardown of an init_all set (over a fake nccl.core), the launcher environment
and unique ids, the missing-extra error and the CLI's exit code for it, and --help."""

from __future__ import annotations

import contextlib
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
from cudart_kit.collectives import backend, bench, check, report
from cudart_kit.collectives import communicator as comm_mod
from cudart_kit.collectives import errors as cerr
from cudart_kit.collectives import launch
from cudart_kit.collectives.clique import Clique, Team
from cudart_kit.collectives.communicator import Communicator
from cudart_kit.collectives.group import group, in_group
from cudart_kit.memory import Array
from cudart_kit.stream import Stream

REPO = Path(__file__).resolve().parent.parent
INSTALL = 'pip install "cudart-kit[nccl]"'


def run_py(code: str, *args, timeout: int = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("CUDART_KIT_TRACEBACK", None)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=timeout)


# --- bus bandwidth, counts, sweep -----------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_bus_factors(n):
    assert bench.bus_factor("all_reduce", n) == pytest.approx(2 * (n - 1) / n)
    assert bench.bus_factor("all_gather", n) == pytest.approx((n - 1) / n)
    assert bench.bus_factor("reduce_scatter", n) == pytest.approx((n - 1) / n)
    assert bench.bus_factor("broadcast", n) == 1.0 and bench.bus_factor("sendrecv", n) == 1.0
    table = {1: (0.0, 0.0), 2: (1.0, 0.5), 4: (1.5, 0.75), 8: (1.75, 0.875)}[n]
    assert (bench.bus_factor("all_reduce", n), bench.bus_factor("all_gather", n)) == table


def test_bus_factor_refuses_nonsense():
    with pytest.raises(ValueError, match="nranks"):
        bench.bus_factor("all_reduce", 0)
    with pytest.raises(ValueError, match="all_reduce, all_gather"):
        bench.bus_factor("alltoall", 2)


def test_counts_are_nccl_tests_getCollByteCount():
    # 1024 bytes of float32 over 8 ranks
    assert bench.counts("all_reduce", 1024, 4, 8) == bench.Counts(256, 256, 256)
    assert bench.counts("broadcast", 1024, 4, 8) == bench.Counts(256, 256, 256)
    assert bench.counts("sendrecv", 1022, 4, 8) == bench.Counts(255, 255, 255)
    ag = bench.counts("all_gather", 1024, 4, 8)
    assert (ag.send, ag.recv, ag.param, ag.send_in_place, ag.recv_in_place) == (32, 256, 32, 32, 0)
    rs = bench.counts("reduce_scatter", 1000, 4, 8)  # 250 elements -> 31 per rank
    assert (rs.send, rs.recv, rs.param, rs.send_in_place, rs.recv_in_place) == (248, 31, 31, 0, 31)
    assert ag.nbytes(4) == 1024 and rs.nbytes(4) == 992  # the table's size column: the larger buffer
    assert bench.counts("all_gather", 16, 4, 8).param == 0  # below n elements: nothing per rank


def test_bandwidths():
    # 1 MB all_reduce in 100 us on 4 ranks: algbw 10 GB/s, busbw 15 GB/s
    alg, bus = bench.bandwidths("all_reduce", 250_000, 4, 100e-6, 4)
    assert alg == pytest.approx(10.0) and bus == pytest.approx(15.0)
    # all_gather counts the n-rank total: 250k floats per rank x 4 ranks in 1 ms = 4 GB/s, busbw x 3/4
    alg, bus = bench.bandwidths("all_gather", 250_000, 4, 1e-3, 4)
    assert alg == pytest.approx(4.0) and bus == pytest.approx(3.0)
    alg, bus = bench.bandwidths("reduce_scatter", 250_000, 4, 1e-3, 1)
    assert alg == pytest.approx(1.0) and bus == 0.0
    assert bench.bandwidths("broadcast", 10, 4, 0.0, 2) == (0.0, 0.0)


def test_sweep_like_nccl_tests():
    sizes = bench.sweep(8, "128M", 2)
    assert sizes[0] == 8 and sizes[-1] == 128 << 20 and len(sizes) == 25
    assert all(b == 2 * a for a, b in zip(sizes, sizes[1:]))
    assert bench.sweep("1K", "4K", 4) == [1024, 4096]
    assert bench.sweep("1M", "3M", 1, "1M") == [1 << 20, 2 << 20, 3 << 20]  # -f 1: add -i
    assert bench.sweep(100, 1000, 3) == [100, 300, 900]  # the maximum is not added when not reached
    assert bench.sweep("32M", "32M") == [32 << 20]
    with pytest.raises(ck.CudaKitError, match="-b must not exceed -e") as info:
        bench.sweep("1M", 8)
    assert isinstance(info.value, ValueError)
    with pytest.raises(ValueError, match="more than 1000 sizes"):
        bench.sweep(1, "1G", 1, 1)
    with pytest.raises(ValueError, match="factor"):
        bench.sweep(8, 64, 0)
    with pytest.raises(ValueError, match="not a size"):
        bench.sweep("eight", 64)


def test_sweep_uses_the_one_size_parser(monkeypatch):
    seen = []
    monkeypatch.setattr(report, "parse_size", lambda t: seen.append(t) or 64)
    assert bench.sweep("a", "b", 2, "c") == [64] and seen == ["a", "b", "c"]


def test_dtypes_and_ops_match_nccl_h():
    assert {str(k): v for k, v in backend.NCCL_DTYPES.items() if str(k) != "bfloat16"} == {
        "int8": 0, "uint8": 1, "int32": 2, "uint32": 3, "int64": 4, "uint64": 5, "float16": 6, "float32": 7,
        "float64": 8}
    assert backend.REDOPS == {"sum": 0, "prod": 1, "max": 2, "min": 3, "avg": 4}
    for alias, name in (("float", "float32"), ("half", "float16"), ("double", "float64"), ("int8", "int8"),
                        ("uint64", "uint64"), ("FLOAT32", "float32"), ("int", "int32")):
        assert bench.dtype_for(alias) == np.dtype(name)
    for bad in ("int16", "complex64", "bool", "nonsense"):
        with pytest.raises(ValueError, match="NCCL moves"):
            bench.dtype_for(bad)
    with pytest.raises(ck.DTypeError, match="int16"):
        backend.nccl_dtype(np.dtype(np.int16), "x")
    with pytest.raises(ValueError, match="sum, prod, max, min, avg"):
        backend.redop("mulsum")
    assert backend.redop("AVG") == 4


def test_cli_knows_the_same_ops_and_reductions():
    from cudart_kit.cli.commands import collectives as cmd

    assert cmd.OPS == bench.OPS and cmd.REDOPS == tuple(backend.REDOPS)


# --- the table, from fabricated numbers (formatting only) ------------------------------------------

def _c_header():
    """nccl-tests' own printf formats (src/common.cu, Reporter), applied with Python's %."""
    return [
        "# %10s  %12s  %8s  %6s  %6s           out-of-place                       in-place          "
        % ("", "", "", "", ""),
        "# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s %6s  %7s  %6s  %6s %6s"
        % ("size", "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong", "time", "algbw", "busbw",
           "#wrong"),
        "# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %5s  %7s  %6s  %6s  %5s"
        % ("(B)", "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)", ""),
    ]


def _cell(t, alg, bus, wrong):
    return {"time_us": t, "algbw_gbps": alg, "busbw_gbps": bus, "wrong": wrong}


FAKE_ROWS = [  # made-up figures: they only exercise the formatting
    {"size": 8, "count": 2, "type": "float", "redop": "sum", "root": -1,
     "out_of_place": _cell(12.345, 0.000648, 0.000972, 0), "in_place": _cell(11.5, 0.0007, 0.00105, 0)},
    {"size": 1 << 20, "count": 262144, "type": "float", "redop": "sum", "root": -1,
     "out_of_place": _cell(123.456, 8.49, 12.74, 0), "in_place": _cell(120.0, 8.74, 13.11, 3)},
    {"size": 128 << 20, "count": 33554432, "type": "float", "redop": "sum", "root": -1,
     "out_of_place": _cell(12345.6, 10.87, 16.31, 0), "in_place": _cell(1234.5, 108.7, 163.1, 0)},
]


def test_table_header_is_nccl_tests():
    assert bench.table_header() == _c_header()


def test_rows_are_nccl_tests_printf():
    for r in FAKE_ROWS:
        want = "%12li  %12li  %8s  %6s  %6i" % (r["size"], r["count"], r["type"], r["redop"], r["root"])
        for key in ("out_of_place", "in_place"):
            c = r[key]
            want += "  %7s  %6.2f  %6.2f  %5li" % (bench.time_str(c["time_us"]), c["algbw_gbps"], c["busbw_gbps"],
                                                   c["wrong"])
        assert bench.row_line(r) == want
    assert bench.time_str(12.345) == "  12.35" and bench.time_str(123.456) == "  123.5"
    assert bench.time_str(12345.6) == "  12346" and bench.time_str(99.999) == " 100.00"[:7]
    r = dict(FAKE_ROWS[0], in_place=_cell(1.0, 0.0, 0.0, None))  # in-place sendrecv is not checked
    assert bench.row_line(r).endswith("    N/A")


def _doc(nranks=2, results=FAKE_ROWS, op="all_reduce", notes=()):
    ranks = [{"rank": i, "device": i, "name": "NVIDIA H200", "pci_bus_id": f"0000:{0x18 + i:02X}:00.0",
              "pid": 4242, "host": "node1"} for i in range(nranks)]
    return bench.document(bench.Options(op=op, min_bytes=8, max_bytes=128 << 20), nranks=nranks, nprocs=1,
                          local_ranks=nranks, ranks=ranks, results=list(results), notes=list(notes),
                          versions={"nccl4py": "0.6.0", "nccl": "2.32.3", "nccl_path": None})


def test_report_header_and_footer():
    doc = _doc()
    lines = bench.report_lines(doc)
    assert lines[0].startswith("# cudart-kit collectives all_reduce: 2 rank(s) in 1 process(es); nccl4py 0.6.0, "
                               "NCCL 2.32.3")
    assert lines[1] == ("# nThread 1 nGpus 2 minBytes 8 maxBytes 134217728 step: 2(factor) warmup iters: 5 "
                        "iters: 20 agg iters: 1 validation: 1 graph: 0")
    assert "# Using devices" in lines
    assert "#  Rank %2d Group %2d Pid %6d on %10s device %2d [0x%02x] %s" % (1, 0, 4242, "node1", 1, 0x19,
                                                                           "NVIDIA H200") in lines
    assert lines[-3:] == ["# Out of bounds values : 1 FAILED",
                          "# Avg bus bandwidth    : %g " % (sum(c["busbw_gbps"] for r in FAKE_ROWS
                                                                for c in (r["out_of_place"], r["in_place"])) / 6),
                          "#"]
    good = _doc(results=FAKE_ROWS[:1])
    assert bench.footer_lines(good)[0] == "# Out of bounds values : 0 OK"
    step = bench.header_lines(dict(good, options=dict(good["options"], step_factor=1, step_bytes=4096)))[1]
    assert "step: 4096(bytes)" in step
    one = _doc(nranks=1, notes=[bench.ONE_RANK_NOTE.format(factor="2(n-1)/n = 0")])
    assert any("bus bandwidth needs more than one rank" in line for line in bench.header_lines(one))


def test_render_prints_the_report_and_streams_lines():
    import io

    from cudart_kit.cli.render.collectives import LineSink, collectives_lines, print_collectives

    doc = _doc()
    out = io.StringIO()
    print_collectives(doc, cli.Printer(out, rich=False))
    assert out.getvalue().splitlines() == collectives_lines(doc) == bench.report_lines(doc)
    sink_out = io.StringIO()
    sink = LineSink(sink_out)
    sink("# a")
    sink("b")
    assert sink_out.getvalue() == "# a\nb\n" and sink.lines == ["# a", "b"]


DOC_KEYS = {"schema", "op", "dtype", "type", "redop", "root", "nranks", "nprocs", "local_ranks", "bus_factor",
            "options", "versions", "ranks", "units", "results", "avg_busbw_gbps", "wrong_total", "errors", "notes"}
ROW_KEYS = {"size", "count", "type", "redop", "root", "out_of_place", "in_place"}
CELL_KEYS = {"time_us", "algbw_gbps", "busbw_gbps", "wrong"}
OPTION_KEYS = {"op", "min_bytes", "max_bytes", "step_factor", "step_bytes", "iters", "warmup", "dtype", "redop",
               "root", "check"}
RANK_KEYS = {"rank", "device", "name", "pci_bus_id", "pid", "host"}


def test_json_document_keys():
    doc = json.loads(cli.to_json(_doc()))
    assert set(doc) == DOC_KEYS and doc["schema"] == bench.SCHEMA == "cudart-kit/collectives/1"
    assert set(doc["options"]) == OPTION_KEYS and all(set(r) == RANK_KEYS for r in doc["ranks"])
    for r in doc["results"]:
        assert set(r) == ROW_KEYS and set(r["out_of_place"]) == CELL_KEYS == set(r["in_place"])
    assert (doc["dtype"], doc["type"], doc["redop"], doc["root"]) == ("float32", "float", "sum", -1)
    assert doc["wrong_total"] == 3 and doc["errors"] == 1 and doc["bus_factor"] == 1.0
    b = _doc(op="broadcast")
    assert (b["redop"], b["root"]) == ("none", 0)
    assert _doc(op="all_gather")["redop"] == "none" and _doc(op="reduce_scatter")["redop"] == "sum"


def test_json_keys_are_documented_once_docs_have_the_section():
    text = (REPO / "docs" / "cli.md").read_text()
    if "cudart-kit/collectives/1" not in text:
        pytest.skip("docs/cli.md has no collectives section yet (drafted in the session's report)")
    block = text.split("schema `cudart-kit/collectives/1`", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    for key in DOC_KEYS | ROW_KEYS | CELL_KEYS | OPTION_KEYS | RANK_KEYS:
        assert f'"{key}"' in block, key


# --- the host reference and #wrong -----------------------------------------------------------------

def test_patterns_depend_on_the_rank_and_are_exact():
    a, b = check.pattern(0, 5000, np.float32), check.pattern(1, 5000, np.float32)
    assert not np.array_equal(a, b) and np.array_equal(a, check.pattern(0, 5000, np.float32))
    assert a.dtype == np.float32 and set(np.unique(a)) <= set(range(-4, 5))
    assert np.array_equal(a[:check.PERIOD], a[check.PERIOD:2 * check.PERIOD])  # periodic, prime period
    assert np.array_equal(check.pattern(0, 10, np.float32, start=3), a[3:13])
    assert check.pattern(2, 100, np.uint8).min() >= 0
    assert set(np.unique(check.pattern(3, 1000, np.int8, "prod"))) <= {-2, -1, 1, 2}
    assert set(np.unique(check.pattern(3, 1000, np.uint32, "prod"))) <= {1, 2}


@pytest.mark.parametrize("n", [1, 2, 4, 8])
@pytest.mark.parametrize("redop", ["sum", "prod", "max", "min", "avg"])
def test_expected_all_reduce_matches_numpy(n, redop):
    parts = [check.pattern(r, 3001, np.float32, redop).astype(np.float64) for r in range(n)]
    ref = {"sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min, "avg": np.mean}[redop](parts, axis=0)
    for rank in range(n):
        want = check.expected("all_reduce", rank, n, 3001, np.float32, redop)
        assert want.dtype == np.float64 and np.allclose(want, ref, rtol=0, atol=1e-12)
        assert check.count_wrong(ref.astype(np.float32), want, np.float32, redop, n) == 0


def test_expected_of_every_op():
    n, c = 4, 777
    parts = [check.pattern(r, n * c, np.float32) for r in range(n)]
    full = np.sum([p.astype(np.float64) for p in parts], axis=0)
    for rank in range(n):
        assert np.array_equal(check.expected("reduce_scatter", rank, n, c, np.float32), full[rank * c:(rank + 1) * c])
        assert np.array_equal(check.expected("all_gather", rank, n, c, np.float32),
                              np.concatenate([p[:c] for p in parts]))
        assert np.array_equal(check.expected("broadcast", rank, n, c, np.float32, root=2), parts[2][:c])
        assert np.array_equal(check.expected("sendrecv", rank, n, c, np.float32), parts[(rank - 1) % n][:c])
    with pytest.raises(ValueError, match="unknown collective"):
        check.expected("alltoall", 0, 2, 4, np.float32)


def test_integer_reductions_wrap_like_the_gpu():
    n = 8
    parts = [check.pattern(r, 2000, np.int8, "prod") for r in range(n)]
    want = check.expected("all_reduce", 0, n, 2000, np.int8, "prod")
    prod = np.ones(2000, np.int8)
    for p in parts:
        prod = (prod * p).astype(np.int8)  # wraps modulo 256 as an int8 multiply on the GPU does
    assert want.dtype == np.int8 and np.array_equal(want, prod)
    avg = check.expected("all_reduce", 0, 3, 2000, np.int32, "avg")
    s = np.sum([check.pattern(r, 2000, np.int32, "avg").astype(np.int64) for r in range(3)], axis=0)
    assert np.array_equal(avg, (np.sign(s) * (np.abs(s) // 3)).astype(np.int32))  # truncated toward zero


def test_count_wrong_catches_what_goes_wrong():
    n, c = 4, 5000
    want = check.expected("all_gather", 0, n, c, np.float32)
    good = want.astype(np.float32)
    assert check.count_wrong(good, want, np.float32) == 0
    unwritten = good.copy()
    unwritten[:10] = np.frombuffer(bytes([check.poison_byte(np.float32)]) * 40, np.float32)  # NaN poison
    assert check.count_wrong(unwritten, want, np.float32) == 10
    swapped = np.concatenate([good[c:2 * c], good[:c], good[2 * c:]])  # ranks 0 and 1 in the wrong order
    assert check.count_wrong(swapped, want, np.float32) > c // 2
    shifted = np.roll(good, 1)
    assert check.count_wrong(shifted, want, np.float32) > c
    assert check.count_wrong(good[:-1], want, np.float32) == want.size  # wrong size: all wrong
    ints = check.expected("all_reduce", 0, n, c, np.int32)
    assert check.count_wrong(ints + (np.arange(c) == 7), ints, np.int32) == 1
    # avg of floats: NCCL scales by 1/n, so a rounding's worth is allowed, a real error is not
    avg = check.expected("all_reduce", 0, 3, c, np.float16, "avg")
    assert check.count_wrong(avg.astype(np.float16), avg, np.float16, "avg", 3) == 0
    assert check.count_wrong((avg + 0.25).astype(np.float16), avg, np.float16, "avg", 3) == c
    assert check.poison_byte(np.int8) == 0x7F and check.poison_byte(np.uint16) == 0xFF


# --- argument checks in front of NCCL (a fake nccl4py communicator, fake device and streams) -------

class FakeDevice:
    def __init__(self, ordinal=0):
        self.ordinal = ordinal
        self.name = "Fake GPU"
        self.pci_bus_id = f"0000:{0x18 + ordinal:02X}:00.0"

    def activate(self):
        return contextlib.nullcontext(self)


class _Core:
    def record(self, event):
        pass


def fake_stream(dev, handle=0x1000):
    s = object.__new__(Stream)
    s._core, s._handle, s.device, s.owned, s._owner, s._finalizer, s._capture = _Core(), handle, dev, False, None, None, None
    return s


def desc(buf):
    """What nccl4py would read from an operand: (ptr, count, typestr)."""
    if isinstance(buf, Array):  # the DLPack path (bfloat16)
        return (buf.ptr, buf.size, str(buf.dtype))
    cai = buf.__cuda_array_interface__
    assert cai["version"] == 3 and cai["strides"] is None and cai["stream"] is None and len(cai["shape"]) == 1
    return (cai["data"][0], cai["shape"][0], cai["typestr"])


class FakeNccl:
    """Records what the kit hands nccl4py's Communicator."""

    def __init__(self, raise_with=None):
        self.calls, self.raise_with, self.destroyed, self.aborted, self.finalized = [], raise_with, 0, 0, 0

    def _rec(self, name, *args, stream):
        if self.raise_with is not None:
            raise self.raise_with
        self.calls.append((name, *[desc(a) if hasattr(a, "__cuda_array_interface__") or isinstance(a, Array)
                                   else a for a in args], stream))

    def allreduce(self, s, r, op, *, stream):
        self._rec("allreduce", s, r, op, stream=stream)

    def allgather(self, s, r, *, stream):
        self._rec("allgather", s, r, stream=stream)

    def reduce_scatter(self, s, r, op, *, stream):
        self._rec("reduce_scatter", s, r, op, stream=stream)

    def broadcast(self, s, r, root, *, stream):
        self._rec("broadcast", s, r, root, stream=stream)

    def send(self, b, peer, *, stream):
        self._rec("send", b, peer, stream=stream)

    def recv(self, b, peer, *, stream):
        self._rec("recv", b, peer, stream=stream)

    def get_last_error(self):
        return "NCCL WARN something precise"

    def get_async_error(self):
        return 0

    def finalize(self):
        self.finalized += 1

    def destroy(self):
        self.destroyed += 1

    def abort(self):
        self.aborted += 1


@pytest.fixture
def world():
    dev, other = FakeDevice(0), FakeDevice(1)
    s = fake_stream(dev, 0xABC)

    def arr(n, dtype=np.float32, ptr=0x10000, device=dev, kind="foreign", shape=None, stream=None):
        dt = np.dtype(dtype)
        shape = shape or (n,)
        strides = tuple(int(x) for x in np.empty(shape, dt).strides)
        return Array._make(ptr, shape, dt, strides, kind, device, stream)

    def comm(rank=0, nranks=1, nc=None):
        return Communicator._wrap(nc or FakeNccl(), dev, rank, nranks)

    return dev, other, s, arr, comm


def test_all_reduce_hands_nccl_pointer_count_and_dtype(world):
    dev, _, s, arr, comm = world
    c = comm(0, 2)
    x, y = arr(1000003, ptr=0x100000), arr(1000003, ptr=0x900000)
    assert c.all_reduce(x, y, op="max", stream=s) is y
    assert c._nc.calls == [("allreduce", (0x100000, 1000003, "<f4"), (0x900000, 1000003, "<f4"), 2, 0xABC)]
    assert c.all_reduce(x, stream=s) is x  # in place
    assert c._nc.calls[-1][1] == c._nc.calls[-1][2] == (0x100000, 1000003, "<f4")
    assert c.all_reduce(x, x[:], op="avg", stream=s) is not None  # the same memory, another view: in place
    assert c._nc.calls[-1][3] == 4
    with pytest.raises(ValueError, match="sum, prod"):
        c.all_reduce(x, op="mean", stream=s)


def test_contiguous_views_pass_zero_copy_and_strided_ones_are_refused(world):
    _, _, s, arr, comm = world
    c = comm()
    big = arr(0, ptr=0x200000, shape=(64, 100))
    row = big[3]                     # contiguous: a row of a C array
    block = big[10:20].reshape(-1)   # contiguous rows, reshaped
    c.all_reduce(row, stream=s)
    c.all_reduce(block, stream=s)
    assert c._nc.calls[0][1] == (0x200000 + 3 * 400, 100, "<f4")
    assert c._nc.calls[1][1] == (0x200000 + 10 * 400, 1000, "<f4")
    for bad in (big[:, ::2], big.T, big[:, 1:3]):
        with pytest.raises(ck.ShapeError, match="non-contiguous view.*ops.copy"):
            c.all_reduce(bad, stream=s)
    with pytest.raises(ck.ShapeError, match="non-contiguous"):
        c.broadcast(big[:, 0], root=0, stream=s)
    assert len(c._nc.calls) == 2  # nothing was handed to NCCL for the refused ones


def test_dtype_count_device_and_memory_checks(world):
    dev, other, s, arr, comm = world
    c = comm(1, 4)
    x = arr(100)
    with pytest.raises(ck.DTypeError, match="send is float32 but recv is float64"):
        c.all_reduce(x, arr(100, np.float64, ptr=0x90000), stream=s)
    with pytest.raises(ck.DTypeError, match="NCCL has no type"):
        c.all_reduce(arr(100, np.int16), stream=s)
    with pytest.raises(ck.ShapeError, match="recv has 99 elements and send 100"):
        c.all_reduce(x, arr(99, ptr=0x90000), stream=s)
    with pytest.raises(ck.DeviceMismatchError, match="on device 1 but the communicator"):
        c.all_reduce(arr(100, device=other), stream=s)
    with pytest.raises(ck.DeviceMismatchError, match="the stream is on device 1"):
        c.all_reduce(x, stream=fake_stream(other))
    with pytest.raises(ck.DeviceMismatchError, match="pinned host memory"):
        c.all_reduce(arr(100, kind="pinned"), stream=s)
    with pytest.raises(ck.DeviceMismatchError, match="numpy array"):
        c.all_reduce(np.zeros(4, np.float32), stream=s)
    with pytest.raises(ck.StreamError, match="stream= is required"):
        c.all_reduce(x, stream=None)
    assert isinstance(ck.ShapeError("x"), ValueError) and isinstance(ck.DTypeError("x"), TypeError)
    assert c._nc.calls == []


def test_all_gather_and_reduce_scatter_counts_and_in_place_layouts(world):
    _, _, s, arr, comm = world
    c = comm(2, 4)
    x, y = arr(10, ptr=0x1000), arr(40, ptr=0x8000)
    c.all_gather(x, y, stream=s)
    with pytest.raises(ck.ShapeError, match="4 ranks x 10 sent need 40"):
        c.all_gather(x, arr(39, ptr=0x8000), stream=s)
    c.all_gather(y[20:30], y, stream=s)  # in place: send is rank 2's block of recv
    with pytest.raises(ck.ShapeError, match="in-place layout"):
        c.all_gather(y[10:20], y, stream=s)  # rank 1's block: overlaps, but is not the in-place layout
    c.reduce_scatter(y, x, op="sum", stream=s)
    with pytest.raises(ck.ShapeError, match="not a multiple of the 4 ranks"):
        c.reduce_scatter(arr(41, ptr=0x8000), stream=s)
    with pytest.raises(ck.ShapeError, match="give 10"):
        c.reduce_scatter(y, arr(11, ptr=0x1000), stream=s)
    c.reduce_scatter(y, y[20:30], stream=s)  # in place: recv is rank 2's block of send
    with pytest.raises(ck.ShapeError, match="in-place layout"):
        c.reduce_scatter(y, y[0:10], stream=s)
    assert [k[0] for k in c._nc.calls] == ["allgather", "allgather", "reduce_scatter", "reduce_scatter"]
    assert c._nc.calls[1][1] == (0x8000 + 20 * 4, 10, "<f4")
    assert c._nc.calls[3][2] == (0x8000 + 20 * 4, 10, "<f4") and c._nc.calls[3][3] == 0


def test_broadcast_roots_peers_and_self_sends(world):
    _, _, s, arr, comm = world
    c = comm(1, 3)
    x, y = arr(8, ptr=0x1000), arr(8, ptr=0x2000)
    assert c.broadcast(x, root=0, stream=s) is x
    assert c.broadcast(None, y, root=0, stream=s) is y  # off the root, send is not read
    with pytest.raises(ck.ArgumentError, match="is the root and gave no send"):
        c.broadcast(None, y, root=1, stream=s)
    with pytest.raises(cerr.RankError, match="root 3 is not a rank"):
        c.broadcast(x, root=3, stream=s)
    with pytest.raises(ck.ArgumentError, match="must be an int"):
        c.broadcast(x, root="0", stream=s)
    with pytest.raises(ck.ShapeError, match="recv has 8 elements and send 7"):
        c.broadcast(arr(7, ptr=0x1000), y, root=1, stream=s)
    c.send(x, 2, stream=s)
    c.recv(y, 0, stream=s)
    with pytest.raises(cerr.RankError, match="peer -1 is not a rank"):
        c.send(x, -1, stream=s)
    with pytest.raises(cerr.RankError, match="inside one collectives.group"):
        c.send(x, 1, stream=s)  # to itself, outside a group
    assert [k[0] for k in c._nc.calls] == ["broadcast", "broadcast", "send", "recv"]
    assert c._nc.calls[1][1] == c._nc.calls[1][2] == (0x2000, 8, "<f4") and c._nc.calls[1][3] == 0
    assert isinstance(cerr.RankError("x"), ValueError) and isinstance(cerr.RankError("x"), ck.CudaKitError)


def test_zero_elements_queue_nothing_and_arrays_record_the_stream(world):
    dev, _, s, arr, comm = world
    c = comm(0, 2)
    empty = arr(0)
    assert c.all_reduce(empty, stream=s) is empty and c.all_gather(empty, arr(0, ptr=0x9000), stream=s) is not None
    assert c._nc.calls == []
    alloc = fake_stream(dev, 0x111)
    owned = arr(16, kind="device", stream=alloc)
    c.all_reduce(owned[4:12], stream=s)
    assert s in owned._used  # the free waits for the all_reduce's stream


def test_nccl_errors_name_the_result(world):
    _, _, s, arr, comm = world
    NCCLError = type("NCCLError", (Exception,), {})
    err = NCCLError("INVALID_USAGE (5): invalid usage")
    err.status = 5
    c = comm(0, 2, FakeNccl(raise_with=err))
    with pytest.raises(cerr.NcclError) as info:
        c.all_reduce(arr(4), stream=s)
    e = info.value
    assert (e.result, e.code, e.api) == ("ncclInvalidUsage", 5, "ncclAllReduce")
    assert "ncclAllReduce failed with ncclInvalidUsage (5) while running rank 0 of 2" in str(e)
    assert "something precise" in str(e) and e.__cause__ is err
    assert pickle.loads(pickle.dumps(e)).result == "ncclInvalidUsage"
    NcclInvalid = type("NcclInvalid", (Exception,), {})
    c2 = comm(0, 2, FakeNccl(raise_with=NcclInvalid("sendbuf is on device 1")))
    with pytest.raises(cerr.NcclError, match="refused by nccl4py.*sendbuf is on device 1") as info:
        c2.all_gather(arr(4), arr(8, ptr=0x9000), stream=s)
    assert info.value.result is None
    lib = type("DynamicLibNotFoundError", (Exception,), {})("libnccl.so.2 not found")
    assert isinstance(cerr.translate(lib, "ncclGetUniqueId"), cerr.MissingExtraError)
    other = KeyError("x")
    assert cerr.translate(other, "x") is other


def test_lifetime_close_abort_and_with(world):
    _, _, s, arr, comm = world
    c = comm()
    c.close()
    c.close()
    assert c._nc.destroyed == 1 and c.is_closed and "closed" in repr(c)
    with pytest.raises(ck.ClosedError, match="communicator .* is closed"):
        c.all_reduce(arr(4), stream=s)
    c.abort()
    assert c._nc.aborted == 0  # after close, abort does nothing
    with comm() as c2:
        pass
    assert c2._nc.destroyed == 1
    with pytest.raises(RuntimeError):
        with comm() as c3:
            raise RuntimeError("a rank that stops early")
    assert (c3._nc.destroyed, c3._nc.aborted) == (0, 1)  # left by an exception: aborted, not destroyed
    with pytest.raises(TypeError, match="Communicator.init"):
        Communicator()
    c4 = comm()
    c4.check_async()  # ncclSuccess: nothing
    c4._nc.get_async_error = lambda: 6
    with pytest.raises(cerr.NcclError, match="ncclRemoteError"):
        c4.check_async()


class FakeCore:
    """Just enough of nccl.core for group() and the init_all teardown."""

    def __init__(self):
        self.events = []

    def group_start(self):
        self.events.append("start")

    def group_end(self):
        self.events.append("end")


@pytest.fixture
def fake_core(monkeypatch):
    core = FakeCore()
    monkeypatch.setattr(backend, "_core", core)
    return core


def test_group_nests_and_ends_on_exceptions(fake_core, world):
    _, _, s, arr, comm = world
    assert not in_group()
    with group():
        assert in_group()
        with group():
            pass
        comm(0, 1).send(arr(4), 0, stream=s)  # to itself: allowed inside a group
    assert fake_core.events == ["start", "start", "end", "end"] and not in_group()
    with pytest.raises(KeyError):
        with group():
            raise KeyError("body")
    assert fake_core.events[-2:] == ["start", "end"] and not in_group()


def test_init_all_members_are_torn_down_together(fake_core, world):
    dev = world[0]
    ncs = [FakeNccl(), FakeNccl()]
    team = Team(ncs)
    team.members = [Communicator._wrap(nc, dev, i, 2, team) for i, nc in enumerate(ncs)]
    clique = Clique(team.members)
    clique[0].close()
    assert ncs[0].destroyed == 0 and fake_core.events == []  # the other rank still runs: nothing yet
    clique[1].close()
    assert fake_core.events == ["start", "end"] and [nc.finalized for nc in ncs] == [1, 1]
    assert [nc.destroyed for nc in ncs] == [1, 1]
    clique.close()
    clique.abort()
    assert [nc.destroyed for nc in ncs] == [1, 1] and [nc.aborted for nc in ncs] == [0, 0]
    ncs2 = [FakeNccl(), FakeNccl()]
    team2 = Team(ncs2)
    team2.members = [Communicator._wrap(nc, dev, i, 2, team2) for i, nc in enumerate(ncs2)]
    with pytest.raises(RuntimeError):
        with Clique(team2.members):
            raise RuntimeError("boom")
    assert [nc.aborted for nc in ncs2] == [1, 1] and all(m._state == "aborted" for m in team2.members)


def test_init_checks_before_nccl(fake_core, monkeypatch):
    with pytest.raises(cerr.RankError, match="rank 2 does not fit a communicator of 2"):
        Communicator.init(2, 2, bytes(128), device=0)
    with pytest.raises(ck.ArgumentError, match="128 bytes"):
        Communicator.init(2, 0, b"short", device=0)
    with pytest.raises(ck.ArgumentError, match="must be an int"):
        Communicator.init(2.0, 0, bytes(128), device=0)
    with pytest.raises(cerr.RankError, match="no devices"):
        Communicator.init_all([])
    made = []

    class Comm:
        @staticmethod
        def init(nranks, rank, uid):
            made.append((nranks, rank, uid))
            return FakeNccl()

        @staticmethod
        def init_all(ordinals):
            made.append(tuple(ordinals))
            return [FakeNccl() for _ in ordinals]

    class UID:
        @staticmethod
        def from_bytes(b):
            return ("uid", bytes(b))

    fake_core.Communicator, fake_core.UniqueId = Comm, UID
    devs = {i: FakeDevice(i) for i in range(3)}
    monkeypatch.setattr(comm_mod, "get_device", lambda d: devs[d if isinstance(d, int) else d.ordinal])
    c = Communicator.init(4, 3, launch.UniqueId(bytes(range(128))), device=2)
    assert (c.rank, c.nranks, c.device.ordinal) == (3, 4, 2) and made[0] == (4, 3, ("uid", bytes(range(128))))
    clique = Communicator.init_all([2, 0])
    assert isinstance(clique, Clique) and [(m.rank, m.nranks, m.device.ordinal) for m in clique] == [(0, 2, 2), (1, 2, 0)]
    assert made[1] == (2, 0)
    with pytest.raises(cerr.RankError, match="repeat"):
        Communicator.init_all([1, 1])
    del fake_core.events[:]
    local = Communicator.init_local(8, [4, 5], bytes(range(128)), [1, 2])
    assert [(m.rank, m.nranks, m.device.ordinal) for m in local] == [(4, 8, 1), (5, 8, 2)]
    assert made[2:] == [(8, 4, ("uid", bytes(range(128)))), (8, 5, ("uid", bytes(range(128))))]
    assert fake_core.events == ["start", "end"]  # the ranks of one process join inside one group
    for bad in (([4, 4], [1, 2]), ([4], [1, 2]), ([8, 1], [1, 2])):
        with pytest.raises(cerr.RankError):
            Communicator.init_local(8, bad[0], bytes(128), bad[1])
    with pytest.raises(cerr.RankError, match="repeat"):
        Communicator.init_local(8, [0, 1], bytes(128), [2, 2])


# --- launchers and unique ids ----------------------------------------------------------------------

def test_launch_env_reads_the_launchers():
    assert launch.launch_env({}) is None
    env = launch.launch_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"})
    assert env == launch.LaunchEnv(3, 8, 1, 4, "torchrun") and env.device == 1
    env = launch.launch_env({"OMPI_COMM_WORLD_RANK": "5", "OMPI_COMM_WORLD_SIZE": "6",
                             "OMPI_COMM_WORLD_LOCAL_RANK": "2"})
    assert (env.rank, env.world_size, env.local_rank, env.launcher) == (5, 6, 2, "openmpi")
    env = launch.launch_env({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_NTASKS_PER_NODE": "4(x2)"})
    assert (env.local_rank, env.local_world_size, env.launcher) == (1, 4, "slurm")  # 5 % 4
    assert launch.launch_env({"PMI_RANK": "0", "PMI_SIZE": "1"}).device == 0
    with pytest.raises(cerr.LaunchEnvError, match="RANK is set but WORLD_SIZE is not"):
        launch.launch_env({"RANK": "0"})
    with pytest.raises(cerr.LaunchEnvError, match="not a whole number"):
        launch.launch_env({"RANK": "zero", "WORLD_SIZE": "2"})
    with pytest.raises(cerr.LaunchEnvError, match="does not fit WORLD_SIZE=2"):
        launch.launch_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_unique_id_travels_as_bytes_hex_and_pickle():
    raw = bytes(range(128))
    uid = launch.UniqueId(raw)
    assert bytes(uid) == raw and launch.UniqueId.fromhex(uid.hex()) == uid
    assert pickle.loads(pickle.dumps(uid)) == uid and hash(uid) == hash(launch.UniqueId(bytearray(raw)))
    assert launch.UniqueId(memoryview(raw)) == uid and "0001020304050607" in repr(uid)
    for bad in (b"x" * 127, 128, "a" * 128, None):
        with pytest.raises(ck.ArgumentError, match="128 bytes"):
            launch.UniqueId(bad)
    with pytest.raises(ck.ArgumentError, match="hex"):
        launch.UniqueId.fromhex("zz")


def test_exchange_unique_id_through_a_file(tmp_path):
    path = tmp_path / "job.uid"
    made = launch.UniqueId(bytes([7]) * 128)
    with pytest.raises(cerr.LaunchEnvError, match="did not appear within"):
        launch.exchange_unique_id(path, rank=1, timeout_s=0.05, poll_s=0.01)
    assert launch.exchange_unique_id(path, rank=0, make=lambda: made) == made
    assert path.read_bytes() == bytes(made) and not list(tmp_path.glob(".*tmp"))
    assert launch.exchange_unique_id(path, rank=3, timeout_s=1) == made
    path.write_bytes(b"half")
    with pytest.raises(cerr.LaunchEnvError, match="holds 4 bytes"):
        launch.exchange_unique_id(path, rank=1, timeout_s=1)


# --- without nccl4py -------------------------------------------------------------------------------

@pytest.fixture
def no_nccl(monkeypatch):
    """As on a machine without nccl4py, even where it is installed."""
    monkeypatch.setitem(sys.modules, "nccl", None)
    monkeypatch.setitem(sys.modules, "nccl.core", None)
    monkeypatch.setattr(backend, "_core", None)


def test_missing_extra_names_the_extra(no_nccl):
    import cudart_kit.collectives as cc

    assert not cc.available()
    for call in (cc.unique_id, lambda: cc.Communicator.init_all([0]), lambda: cc.group().__enter__(),
                 lambda: cc.Communicator.init(1, 0, bytes(128), device=0), cc.versions):
        with pytest.raises(cc.MissingExtraError) as info:
            call()
        e = info.value
        assert INSTALL in str(e) and "nccl4py" in str(e) and e.extra == "nccl" and e.install == INSTALL
        assert isinstance(e, ck.CudaKitError) and isinstance(e, ImportError) and "nccl" in e.detail
    assert pickle.loads(pickle.dumps(e)).install == INSTALL
    assert cc.NCCL_INSTALL == INSTALL


def test_import_needs_neither_nccl4py_nor_a_driver():
    code = ("import sys; sys.modules['nccl'] = None\n"
            "import cudart_kit.collectives as cc, cudart_kit.collectives.bench, cudart_kit.cli\n"
            "assert cc.available() is False\n"
            "import cudart_kit._driver as d\n"
            "assert d._driver is None and d._init_error is None, 'importing touched the driver'\n"
            "print('ok', sorted(m for m in sys.modules if m == 'nccl' or m.startswith('nccl.')))\n")
    out = run_py(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok ['nccl']"  # only the blocked entry: nothing of nccl4py was imported


_CLI_NO_NCCL = ("import sys; sys.modules['nccl'] = None\n"
                "from cudart_kit.cli import main\n"
                "sys.exit(main(sys.argv[1:]))\n")


def test_cli_without_nccl4py_exits_1_naming_the_extra():
    out = run_py(_CLI_NO_NCCL, "collectives", "all_reduce", "-b", "8", "-e", "1M")
    assert out.returncode == cli.EXIT_FAIL == 1
    assert out.stderr.startswith("cudart-kit collectives: error: ") and INSTALL in out.stderr
    assert out.stdout == "" and "Traceback" not in out.stderr
    out = run_py(_CLI_NO_NCCL, "collectives", "--json")
    doc = json.loads(out.stdout)
    assert out.returncode == 1 and doc["error"]["type"] == "MissingExtraError" and INSTALL in doc["error"]["message"]
    assert doc["exit_code"] == 1 and doc["error"]["command"] == "collectives"


def test_cli_usage_errors_come_before_nccl4py():
    out = run_py(_CLI_NO_NCCL, "collectives", "-b", "1M", "-e", "8")
    assert out.returncode == cli.EXIT_USAGE and "-b must not exceed -e" in out.stderr
    out = run_py(_CLI_NO_NCCL, "collectives", "-d", "int16")
    assert out.returncode == 2 and "argument -d/--dtype" in out.stderr
    out = run_py(_CLI_NO_NCCL, "collectives", "alltoall")
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_cli_arguments():
    p = cli.build_parser()
    a = p.parse_args(["collectives"])
    assert (a.collective, a.minbytes, a.maxbytes, a.stepfactor, a.stepbytes) == ("all_reduce", 8, 128 << 20, 2, 1 << 20)
    assert (a.iters, a.warmup_iters, a.dtype, a.op, a.root, a.check, a.devices, a.uid_file, a.json) == (
        20, 5, "float32", "sum", 0, 1, None, None, False)
    a = p.parse_args(["collectives", "broadcast", "-b", "1K", "-e", "64M", "-f", "4", "-n", "7", "-w", "0", "-d",
                      "half", "-o", "max", "-r", "1", "-c", "0", "--devices", "1,0", "--json"])
    assert (a.collective, a.minbytes, a.maxbytes, a.stepfactor, a.iters, a.warmup_iters) == (
        "broadcast", 1024, 64 << 20, 4, 7, 0)
    assert (a.dtype, a.op, a.root, a.check, a.devices, a.json) == ("float16", "max", 1, 0, [0, 1], True)
    from cudart_kit.cli.commands.collectives import collectives_options

    opts = collectives_options(a)
    assert opts == bench.Options(op="broadcast", min_bytes=1024, max_bytes=64 << 20, step_factor=4,
                                 step_bytes=1 << 20, iters=7, warmup=0, dtype="float16", redop="max", root=1,
                                 check=False)


def test_cli_help():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-m", "cudart_kit.cli", "collectives", "--help"], capture_output=True,
                         text=True, cwd=REPO, env=env, timeout=120)
    assert out.returncode == 0 and out.stderr == ""
    assert out.stdout.startswith("usage: cudart-kit collectives ")
    for word in ("all_reduce", "reduce_scatter", "sendrecv", "-b SIZE", "--uid-file", "busbw", INSTALL,
                 "exit codes:", "#wrong"):
        assert word in out.stdout, word
    assert "collectives" in cli.subcommands()


def test_run_checks_its_arguments_before_the_gpu():
    class C:
        nranks, rank = 2, 0

    with pytest.raises(cerr.RankError, match="no communicators"):
        bench.run([], bench.Options())
    with pytest.raises(cerr.RankError, match="root 2 is not a rank"):
        bench.run([C()], bench.Options(op="broadcast", root=2))
    with pytest.raises(ValueError, match="unknown collective"):
        bench.run([C()], bench.Options(op="alltoall"))
    with pytest.raises(ValueError, match="iters"):
        bench.run([C()], bench.Options(iters=0))


def test_modules_are_small():
    root = REPO / "cudart_kit" / "collectives"
    files = sorted(root.glob("*.py"))
    assert len(files) >= 8
    for path in files + [REPO / "cudart_kit" / "cli" / "commands" / "collectives.py",
                         REPO / "cudart_kit" / "cli" / "render" / "collectives.py"]:
        assert len(path.read_text().splitlines()) <= 500, path


# --- the benchmark loop over a simulated job (numpy ranks in one process) --------------------------

class FArr:
    """A numpy-backed stand-in for a kit Array: views share memory, as the kit's do."""

    def __init__(self, a):
        self.a = a

    size = property(lambda self: self.a.size)
    dtype = property(lambda self: self.a.dtype)

    def __getitem__(self, key):
        return FArr(self.a[key])

    def to_numpy(self, *, stream):
        return self.a.copy()

    def close(self):
        pass


class FEvent:
    def __init__(self, t):
        self.t = t

    def sync(self):
        pass

    def elapsed_ms(self, end):
        return end.t - self.t

    def close(self):
        pass


class FStream:
    def __init__(self, world):
        self.world = world

    def record(self, timing=False):
        return FEvent(self.world.clock_ms)

    def sync(self):
        pass

    def close(self):
        pass


class FMem:
    total_bytes = 80 << 30


class World:
    """n simulated ranks; collectives run when every rank has called (at the end of a group),
    with NCCL's semantics on numpy (``bug`` breaks one of them on purpose)."""

    def __init__(self, n, bug=None):
        self.n, self.bug, self.pending, self.depth, self.clock_ms = n, bug, [], 0, 0.0

    def group_start(self):
        self.depth += 1

    def group_end(self):
        self.depth -= 1
        if self.depth == 0:
            self.flush()

    def call(self, *rec):
        self.pending.append(rec)
        if self.depth == 0:
            self.flush()

    def flush(self):
        calls, self.pending = self.pending, []
        self.clock_ms += 0.01
        kinds = {}
        for rec in calls:
            kinds.setdefault(rec[0], []).append(rec)
        for kind, recs in kinds.items():
            if kind in ("send", "recv"):
                continue
            assert len(recs) == self.n, f"{kind}: {len(recs)} of {self.n} ranks called"
            recs.sort(key=lambda r: r[1])
            sends = [r[2].a.copy() for r in recs]
            for rank, (_, _, x, y, arg) in enumerate(recs):
                y.a[...] = self.result(kind, rank, sends, arg, y.a.dtype)
        sends = {(r[1], r[3]): r[2].a.copy() for r in calls if r[0] == "send"}
        for _, rank, y, peer in (r for r in calls if r[0] == "recv"):
            y.a[...] = sends.pop((peer, rank))
        assert not sends, "unmatched sends"

    def result(self, kind, rank, sends, arg, dtype):
        n = self.n
        if kind == "all_gather":
            parts = sends[::-1] if self.bug == "gather-order" and n > 1 else sends
            return np.concatenate(parts)
        if kind == "broadcast":
            return sends[arg]
        stack = np.stack(sends)
        if dtype.kind in "iu":
            red = {"sum": lambda s: s.sum(0, dtype=dtype), "prod": lambda s: s.prod(0, dtype=dtype),
                   "max": lambda s: s.max(0), "min": lambda s: s.min(0),
                   "avg": lambda s: (np.sign(w := s.sum(0, dtype=dtype).astype(np.int64)) * (np.abs(w) // n))}[arg]
        else:
            red = {"sum": lambda s: s.astype(np.float64).sum(0), "prod": lambda s: s.astype(np.float64).prod(0),
                   "max": lambda s: s.max(0), "min": lambda s: s.min(0),
                   "avg": lambda s: s.astype(np.float64).sum(0) / n}[arg]
        out = red(stack).astype(dtype)
        if self.bug == "off-by-one" and out.size > 1:
            out[-1] += 1
        if kind == "reduce_scatter":
            c = out.size // n
            return out[rank * c:(rank + 1) * c]
        return out


class SimComm:
    def __init__(self, world, rank):
        self.world, self.rank, self.nranks = world, rank, world.n
        self.device = FakeDevice(rank)
        self.device.memory_info = lambda: FMem()

    def all_reduce(self, x, y=None, *, op="sum", stream):
        self.world.call("all_reduce", self.rank, x, x if y is None else y, op)

    def all_gather(self, x, y=None, *, stream):
        y = FArr(np.empty(x.size * self.nranks, x.dtype)) if y is None else y
        self.world.call("all_gather", self.rank, x, y, None)
        return y

    def reduce_scatter(self, x, y, *, op="sum", stream):
        self.world.call("reduce_scatter", self.rank, x, y, op)

    def broadcast(self, x, y, *, root, stream):
        self.world.call("broadcast", self.rank, x, y, root)

    def send(self, x, peer, *, stream):
        self.world.call("send", self.rank, x, peer)

    def recv(self, y, peer, *, stream):
        self.world.call("recv", self.rank, y, peer)


@pytest.fixture
def simulate(monkeypatch):
    def make(n, bug=None):
        world = World(n, bug)
        monkeypatch.setattr(backend, "_core", world)  # group() starts and ends the world's groups
        monkeypatch.setattr(bench, "Stream", type("S", (), {"create": staticmethod(lambda dev: FStream(world))}))
        monkeypatch.setattr(bench, "empty", lambda shape, dtype, stream: FArr(np.empty(shape, dtype)))
        monkeypatch.setattr(bench, "to_device", lambda host, stream: FArr(np.array(host)))

        def copy(dst, src, stream):
            dst.a[...] = src

        def memset(arr, byte, stream):
            arr.a.view(np.uint8)[...] = byte

        monkeypatch.setattr(bench, "copy", copy)
        monkeypatch.setattr(bench, "memset", memset)
        monkeypatch.setattr(bench, "_versions", lambda: {"nccl4py": "sim", "nccl": "sim", "nccl_path": None})
        return [SimComm(world, r) for r in range(n)]

    return make


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("op", bench.OPS)
def test_bench_loop_checks_every_op_on_a_simulated_job(simulate, op, n):
    comms = simulate(n)
    lines = []
    doc = bench.run(comms, bench.Options(op=op, min_bytes=4, max_bytes=64 << 10, step_factor=4, iters=3, warmup=1,
                                         root=n - 1), out=lines.append)
    assert doc["wrong_total"] == 0 and doc["errors"] == 0, doc["results"]
    assert lines == bench.report_lines(doc) and doc["nranks"] == n and doc["nprocs"] == 1
    assert [r["rank"] for r in doc["ranks"]] == list(range(n)) and doc["local_ranks"] == n
    assert all(r["size"] <= 64 << 10 for r in doc["results"]) and doc["results"]
    for r in doc["results"]:
        for key in ("out_of_place", "in_place"):
            c = r[key]
            assert c["time_us"] == pytest.approx(10.0) and c["wrong"] == (None if (op, key) == ("sendrecv", "in_place")
                                                                           else 0)
            assert c["busbw_gbps"] == pytest.approx(c["algbw_gbps"] * bench.bus_factor(op, n))
    assert any("one rank" in x for x in doc["notes"]) == (n == 1)
    if op in ("all_gather", "reduce_scatter") and n > 1:
        assert any("Skipping sizes below" in x for x in doc["notes"])


@pytest.mark.parametrize("dtype,redop", [("int8", "prod"), ("uint8", "sum"), ("float16", "avg"), ("int32", "avg"),
                                         ("float64", "min"), ("uint64", "max")])
def test_bench_loop_dtypes_and_reductions(simulate, dtype, redop):
    doc = bench.run(simulate(3), bench.Options(op="all_reduce", min_bytes=8, max_bytes=8192, step_factor=8, iters=1,
                                               warmup=0, dtype=dtype, redop=redop))
    assert doc["wrong_total"] == 0 and (doc["dtype"], doc["redop"]) == (dtype, redop)


@pytest.mark.parametrize("bug,op", [("gather-order", "all_gather"), ("off-by-one", "all_reduce"),
                                    ("off-by-one", "reduce_scatter")])
def test_bench_loop_counts_wrong_results(simulate, bug, op):
    doc = bench.run(simulate(2, bug), bench.Options(op=op, min_bytes=64, max_bytes=4096, iters=1, warmup=0))
    assert doc["wrong_total"] > 0 and doc["errors"] > 0
    assert bench.footer_lines(doc)[0].endswith("FAILED")


def test_bench_loop_without_check_and_memory_limit(simulate, monkeypatch):
    doc = bench.run(simulate(2, "off-by-one"), bench.Options(min_bytes=64, max_bytes=1024, iters=1, warmup=0,
                                                             check=False))
    assert doc["wrong_total"] == 0 and all(r["out_of_place"]["wrong"] is None for r in doc["results"])
    monkeypatch.setattr(FMem, "total_bytes", (1 << 30) + 2 * 4096)
    doc = bench.run(simulate(2), bench.Options(min_bytes=1024, max_bytes=1 << 20, iters=1, warmup=0))
    assert doc["results"][-1]["size"] == 4096 and "Reducing maxBytes to 4096 due to memory limitation" in doc["notes"]
    with pytest.raises(ck.CudaKitError, match="no size of the sweep holds"):
        bench.run(simulate(4), bench.Options(op="all_gather", min_bytes=4, max_bytes=8, iters=1, warmup=0))
