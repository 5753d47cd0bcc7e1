"""CPU tests of the `cudart-kit` command: argument parsing, the formatting of tables / JSON /
CSV from plain dicts, the JSON schemas (gathered from small fake devices), the derived-figure
arithmetic, peers, doctor's verdicts, and the no-driver path of every subcommand."""

from __future__ import annotations

import csv
import io
import json
import pickle
import os
import subprocess
import sys
from pathlib import Path
import pytest

import cudart_kit as ck
from cudart_kit import bandwidth as bw
from cudart_kit import cli, doctor, query

REPO = Path(__file__).resolve().parent.parent
# Every subcommand the parser must have, aliases included: written out here, not read back from the
# parser or its help text, so a command that disappears (or appears undocumented) fails a test.
SUBCOMMANDS = ["build", "devices", "query", "info", "bandwidth", "doctor", "overlap", "collectives"]


def _no_gpu() -> bool:
    try:
        return ck.device_count() == 0
    except ck.CudaKitError:
        return True


no_gpu = pytest.mark.skipif(not _no_gpu(), reason="this test checks the behaviour without a GPU")


def run_cli(*args, env_extra: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("CUDART_KIT_TRACEBACK", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "cudart_kit.cli", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=timeout)


# --- fake data: what the gatherers return on an H100 SXM (shapes, not measurements) -------------

H100_ATTRS = {
    "compute_capability_major": 9, "compute_capability_minor": 0, "multiprocessor_count": 132,
    "clock_rate": 1980000, "memory_clock_rate": 2619000, "global_memory_bus_width": 5120,
    "l2_cache_size": 52428800, "max_persisting_l2_cache_size": 32505856,
    "maximum_texture1d_width": 131072, "maximum_texture2d_width": 131072, "maximum_texture2d_height": 65536,
    "maximum_texture3d_width": 16384, "maximum_texture3d_height": 16384, "maximum_texture3d_depth": 16384,
    "maximum_texture1d_layered_width": 32768, "maximum_texture1d_layered_layers": 2048,
    "maximum_texture2d_layered_width": 32768, "maximum_texture2d_layered_height": 32768,
    "maximum_texture2d_layered_layers": 2048, "total_constant_memory": 65536,
    "max_shared_memory_per_block": 49152, "max_shared_memory_per_block_optin": 232448,
    "max_shared_memory_per_multiprocessor": 233472, "reserved_shared_memory_per_block": 1024,
    "max_registers_per_block": 65536, "max_registers_per_multiprocessor": 65536, "warp_size": 32,
    "max_threads_per_multiprocessor": 2048, "max_threads_per_block": 1024, "max_blocks_per_multiprocessor": 32,
    "max_block_dim_x": 1024, "max_block_dim_y": 1024, "max_block_dim_z": 64,
    "max_grid_dim_x": 2147483647, "max_grid_dim_y": 65535, "max_grid_dim_z": 65535,
    "max_pitch": 2147483647, "texture_alignment": 512, "surface_alignment": 512, "gpu_overlap": 1,
    "async_engine_count": 3, "concurrent_kernels": 1, "kernel_exec_timeout": 0, "integrated": 0,
    "can_map_host_memory": 1, "ecc_enabled": 1, "unified_addressing": 1, "managed_memory": 1,
    "concurrent_managed_access": 1, "pageable_memory_access": 0, "compute_preemption_supported": 1,
    "cooperative_launch": 1, "cooperative_multi_device_launch": 1, "stream_priorities_supported": 1,
    "memory_pools_supported": 1, "cluster_launch": 1, "host_native_atomic_supported": 0,
    "single_to_double_precision_perf_ratio": 2, "multi_gpu_board": 0, "tcc_driver": 0,
    "pci_domain_id": 0, "pci_bus_id": 24, "pci_device_id": 0, "compute_mode": 0, "mps_enabled": 0,
    "some_newer_attribute": 7,
}


class _Mem:
    free_bytes = 84_000_000_000
    total_bytes = 85_520_809_984


class _NoNvml:
    def to_system_device(self):
        raise RuntimeError("NVML library not found")


class FakeDevice:
    """Just enough of a kit Device for the gatherers (no driver behind it)."""

    def __init__(self, ordinal=0, attrs=None, cc=(9, 0)):
        self.ordinal = ordinal
        self._attrs = dict(attrs or H100_ATTRS)
        self.compute_capability = cc
        self.arch = f"{cc[0]}{cc[1]}"
        self.name = "NVIDIA H100 80GB HBM3"
        self.uuid = f"5f3a2b1c-0000-4000-8000-00000000000{ordinal}"
        self.pci_bus_id = f"0000:{24 + ordinal:02X}:00.0"
        self.core = _NoNvml()

    def attributes(self):
        return dict(self._attrs)

    def memory_info(self):
        return _Mem()

    def can_access_peer(self, other):
        return True


@pytest.fixture
def fake_devices(monkeypatch):
    """Two fake H100s behind the query gatherers; versions fixed; no driver touched."""
    devs = [FakeDevice(0), FakeDevice(1)]
    import cudart_kit.device as device_mod

    monkeypatch.setattr(query, "_total_memory", lambda dev: _Mem.total_bytes)
    monkeypatch.setattr(query, "versions", lambda: {
        "driver_cuda_version": "13.0", "driver_cuda_version_int": 13000, "driver_version": "580.159.04",
        "runtime_cuda_version": "13.5", "runtime_cuda_version_int": 13050,
        "cuda_core_version": "1.2.0", "cuda_bindings_version": "13.3.1"})
    monkeypatch.setattr(device_mod, "devices", lambda: list(devs))
    monkeypatch.setattr(device_mod, "get_device", lambda i=0: devs[int(i)])
    return devs


def _bandwidth_doc(concurrent=False, sizes=(32 << 20,)) -> dict:
    results = []
    figures = {("H2D", "pinned"): 53.8, ("H2D", "pageable"): 6.5, ("H2D", "wc"): 52.0,
               ("D2H", "pinned"): 54.8, ("D2H", "pageable"): 7.0, ("D2D", "device"): 2923.0}
    devices = [0, 1] if concurrent else [0]
    for d in devices:
        for (direction, memory), gbps in figures.items():
            for n in sizes:
                results.append({"device": d, "direction": direction, "memory": memory, "bytes": n,
                                "copies_per_sample": bw.copies_per_sample(n), "samples": 10,
                                "median_ms": n / (gbps * 1e6), "min_ms": 0.1, "max_ms": 0.2, "gbps": gbps})
    infos = [{"index": d, "name": "NVIDIA H100 80GB HBM3", "pci_bus_id": f"0000:{24 + d:02X}:00.0",
              "theoretical_memory_gbps": 3352.32, "pcie": {"generation": 5, "width": 16, "gbps": 63.008}}
             for d in devices]
    bw.attach_peers(results, infos)
    doc = {"schema": bw.SCHEMA, "mode": "quick" if len(sizes) == 1 else "shmoo", "concurrent": concurrent,
           "repeat": 10, "warmup": 2, "units": {}, "devices": infos, "results": results}
    if concurrent:
        doc["aggregate"] = bw.aggregate(results)
    return doc


# --- parsing ---------------------------------------------------------------------------------------

def test_parser_builds_without_driver_and_knows_every_command():
    parser = cli.build_parser()
    assert sorted(cli.subcommands(parser)) == sorted(SUBCOMMANDS)
    funcs = {cmd: parser.parse_args([cmd]).func for cmd in SUBCOMMANDS if cmd != "build"}
    assert funcs == {"devices": cli.cmd_devices, "query": cli.cmd_query, "info": cli.cmd_query,
                     "bandwidth": cli.cmd_bandwidth, "doctor": cli.cmd_doctor, "overlap": cli.cmd_overlap,
                     "collectives": cli.commands.collectives.cmd_collectives}


def _epilog_codes(text: str) -> set[int]:
    """The exit codes listed under "exit codes:" in a --help text."""
    lines = text.split("exit codes:", 1)[1].splitlines()
    return {int(line.split()[0]) for line in lines if line.strip() and line.split()[0].isdigit()}


@pytest.mark.parametrize("cmd", [c for c in SUBCOMMANDS if c != "build"])
def test_every_subcommand_lists_its_exit_codes(cmd):
    # each command can fail (1), be misused (2) and be interrupted (130): all four in its --help
    text = cli.subcommands()[cmd].format_help()
    assert _epilog_codes(text) == set(cli.EXIT_CODES) == {0, 1, 2, 130}
    assert _epilog_codes(cli.build_parser().format_help()) == set(cli.EXIT_CODES)


def test_docs_cover_every_command_and_exit_code():
    doc = (REPO / "docs" / "cli.md").read_text()
    for cmd in SUBCOMMANDS:
        if cmd != "info":  # documented under query
            assert f"## `cudart-kit {cmd}`" in doc, cmd
    table = doc.split("**Exit codes", 1)[1].split("\n\n", 2)[1]
    codes = {int(row.split("|")[1]) for row in table.splitlines() if row.startswith("| ") and row.split("|")[1].strip().isdigit()}
    assert codes == set(cli.EXIT_CODES)
    assert cli.ERROR_SCHEMA in doc and "--json-file" in doc


def test_query_arguments():
    args = cli.build_parser().parse_args(["query", "--device", "1", "--all", "--json", "--no-nvml"])
    assert (args.device, args.all_attributes, args.json, args.no_nvml) == (1, True, True, True)
    assert cli.build_parser().parse_args(["query"]).device is None


def test_bandwidth_defaults_and_flags():
    p = cli.build_parser()
    a = p.parse_args(["bandwidth"])
    assert a.mode is None and a.device is None and a.memory == ("pinned", "pageable")
    assert a.repeat == 10 and a.warmup == 2 and not a.json and not a.csv and a.directions is None
    a = p.parse_args(["bandwidth", "--shmoo", "--start", "4K", "--end", "1M", "--htod", "--dtod",
                      "--memory", "all", "--device", "all", "--concurrent", "--csv"])
    assert a.mode == "shmoo" and a.start == 4096 and a.end == 1 << 20
    assert a.directions == ["H2D", "D2D"] and a.memory == ("pinned", "pageable", "wc")
    assert a.device == "all" and a.concurrent and a.csv
    assert p.parse_args(["bandwidth", "--quick"]).mode == "quick"
    assert p.parse_args(["bandwidth", "--device", "2,0,2"]).device == [0, 2]
    assert p.parse_args(["bandwidth", "--memory", "write-combined,pinned"]).memory == ("pinned", "wc")


@pytest.mark.parametrize("argv", [
    ["bandwidth", "--memory", "gpu"],
    ["bandwidth", "--size", "lots"],
    ["bandwidth", "--device", "x"],
    ["bandwidth", "--device", "-1"],
    ["bandwidth", "--repeat", "0"],
    ["bandwidth", "--json", "--csv"],
    ["bandwidth", "--quick", "--shmoo"],
    ["query", "--device", "one"],
    ["nonsense"],
    [],
])
def test_usage_errors_exit_2(argv, capsys):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("usage: cudart-kit") and "Traceback" not in captured.err
    assert captured.err.splitlines()[-1].startswith("cudart-kit")  # the one error line comes last
    assert captured.out == "" if "--json" not in argv else json.loads(captured.out)["exit_code"] == 2


@pytest.mark.parametrize("argv", [["bandwidth", "--size", "lots", "--json"], ["devices", "--json", "--bogus"],
                                  ["overlap", "--json", "out.json"], ["bandwidth", "--json", "--quick", "--start", "1M"]])
def test_usage_errors_with_json_print_the_error_object(argv, capsys):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc == {"schema": cli.ERROR_SCHEMA, "exit_code": 2, "error": {
        "type": doc["error"]["type"], "message": doc["error"]["message"], "command": argv[0], "detail": None,
        "result": None, "api": None}}
    assert doc["error"]["type"] in ("UsageError", "SizeError")
    assert f"error: {doc['error']['message']}" in captured.err  # the same sentence as the stderr line


def test_main_returns_zero_for_help_and_version(capsys):
    assert cli.main(["--help"]) == 0
    assert capsys.readouterr().out == cli.build_parser().format_help()
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"cudart-kit {ck.__version__}\n"


def test_bandwidth_options_infer_the_mode():
    p = cli.build_parser()
    opts = cli.bandwidth_options(p.parse_args(["bandwidth"]))
    assert opts.mode == "quick" and opts.sizes == [32 << 20] and opts.devices == [0]
    assert opts.directions == ("H2D", "D2H", "D2D")
    opts = cli.bandwidth_options(p.parse_args(["bandwidth", "--start", "1M", "--end", "3M", "--dtoh"]))
    assert opts.mode == "range" and opts.sizes == [1 << 20, 2 << 20, 3 << 20] and opts.directions == ("D2H",)
    opts = cli.bandwidth_options(p.parse_args(["bandwidth", "--shmoo", "--end", "16K"]))
    assert opts.sizes == [1024, 2048, 4096, 8192, 16384]
    for bad in (["--quick", "--start", "1M"], ["--shmoo", "--size", "1M"], ["--shmoo", "--step", "1M"]):
        with pytest.raises(bw.SizeError):
            cli.bandwidth_options(p.parse_args(["bandwidth", *bad]))


def test_bad_size_combination_is_a_usage_error(capsys):
    assert cli.main(["bandwidth", "--quick", "--start", "1M"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--start" in err[0]


# --- sizes and arithmetic -------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("4096", 4096), ("1K", 1024), ("64k", 65536), ("32M", 32 << 20), ("32MiB", 32 << 20), ("1G", 1 << 30),
    ("1.5K", 1536), ("2 GB", 2 << 30), (512, 512)])
def test_parse_size(text, expected):
    assert bw.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "1X", "-4", "0", "1.2.3M"])
def test_parse_size_refuses(text):
    with pytest.raises(bw.SizeError):
        bw.parse_size(text)


def test_format_size():
    assert bw.format_size(1024) == "1 KiB"
    assert bw.format_size(32 << 20) == "32 MiB"
    assert bw.format_size(1536) == "1.5 KiB"
    assert bw.format_size(1 << 30) == "1 GiB"
    assert bw.format_size(100) == "100 B"


def test_sizes_for_modes():
    assert bw.sizes_for("quick") == [32 << 20]
    assert bw.sizes_for("quick", size=1000) == [1000]
    shmoo = bw.sizes_for("shmoo")
    assert shmoo[0] == 1024 and shmoo[-1] == 1 << 30 and len(shmoo) == 21
    assert all(b == 2 * a for a, b in zip(shmoo, shmoo[1:]))
    assert bw.sizes_for("shmoo", start=1000, end=5000) == [1000, 2000, 4000, 5000]
    rng = bw.sizes_for("range")
    assert rng[0] == 1 << 20 and rng[-1] == 64 << 20 and len(rng) == 64
    assert bw.sizes_for("range", start=10, end=35, step=10) == [10, 20, 30]
    with pytest.raises(bw.SizeError):
        bw.sizes_for("range", start=2 << 20, end=1 << 20)
    with pytest.raises(bw.SizeError):
        bw.sizes_for("range", start=1, end=1 << 30, step=1)
    with pytest.raises(ValueError):
        bw.sizes_for("fast")


def test_copies_per_sample_and_gbps():
    assert bw.copies_per_sample(32 << 20) == 1
    assert bw.copies_per_sample(8 << 20) == 1
    assert bw.copies_per_sample(1 << 20) == 8
    assert bw.copies_per_sample(1024) == 100  # capped
    # 1 GB in 20 ms is 50 GB/s one way; D2D counts the bytes read and written
    assert bw.bandwidth_gbps(10**9, 1, 20.0, "H2D") == pytest.approx(50.0)
    assert bw.bandwidth_gbps(10**9, 1, 20.0, "D2D") == pytest.approx(100.0)
    assert bw.bandwidth_gbps(10**6, 100, 2.0, "D2H") == pytest.approx(50.0)


def test_plan_tests_runs_d2d_once_per_size():
    plan = bw.plan_tests(("H2D", "D2D"), ("pinned", "wc"), [1, 2])
    assert plan == [("H2D", "pinned", 1), ("H2D", "pinned", 2), ("H2D", "wc", 1), ("H2D", "wc", 2),
                    ("D2D", "device", 1), ("D2D", "device", 2)]
    assert bw.plan_tests((), ("pinned",), [1]) == []


def test_derived_figures():
    # H100 SXM: 2 x 2619 MHz x 5120 bits / 8 = 3352.32 GB/s; 132 SMs x 128 x 2 x 1980 MHz
    assert query.theoretical_memory_bandwidth_gbps(2_619_000, 5120) == pytest.approx(3352.32)
    assert query.fp32_peak_tflops(132, 128, 1_980_000) == pytest.approx(66.908, rel=1e-4)
    assert query.pcie_bandwidth_gbps(5, 16) == pytest.approx(63.008)
    assert query.pcie_bandwidth_gbps(4, 16) == pytest.approx(31.504)
    assert query.theoretical_memory_bandwidth_gbps(None, 5120) is None
    assert query.theoretical_memory_bandwidth_gbps(2_619_000, 0) is None
    assert query.fp32_peak_tflops(132, None, 1_980_000) is None
    assert query.pcie_bandwidth_gbps(9, 16) is None and query.pcie_bandwidth_gbps(None, 16) is None


@pytest.mark.parametrize("cc,cores", [((9, 0), 128), ((8, 0), 64), ((8, 6), 128), ((7, 5), 64),
                                      ((6, 0), 64), ((10, 0), 128), ((12, 0), 128), ((99, 9), None)])
def test_fp32_cores_per_sm(cc, cores):
    assert query.fp32_cores_per_sm(*cc) == cores


def test_format_cuda_version():
    assert query.format_cuda_version(13000) == "13.0"
    assert query.format_cuda_version(12080) == "12.8"
    assert query.format_cuda_version(None) is None


# --- peers ----------------------------------------------------------------------------------------

def test_attach_peers():
    doc = _bandwidth_doc()
    by = {(r["direction"], r["memory"]): r for r in doc["results"]}
    assert by[("H2D", "pageable")]["peer"]["name"] == "H2D pinned"
    assert by[("H2D", "pageable")]["peer"]["ratio"] == pytest.approx(6.5 / 53.8)
    assert by[("H2D", "wc")]["peer"]["gbps"] == 53.8
    assert by[("H2D", "pinned")]["peer"]["name"] == "PCIe gen5 x16 theoretical"
    assert by[("H2D", "pinned")]["peer"]["ratio"] == pytest.approx(53.8 / 63.008)
    assert by[("D2D", "device")]["peer"]["name"] == "DRAM theoretical"
    assert by[("D2D", "device")]["peer"]["ratio"] == pytest.approx(2923 / 3352.32)


def test_attach_peers_without_pcie_or_pinned():
    results = [
        {"device": 0, "direction": "H2D", "memory": "pinned", "bytes": 8, "gbps": 50.0},
        {"device": 0, "direction": "D2H", "memory": "pinned", "bytes": 8, "gbps": 40.0},
        {"device": 0, "direction": "D2H", "memory": "pageable", "bytes": 16, "gbps": 5.0},
        {"device": 0, "direction": "D2D", "memory": "device", "bytes": 8, "gbps": 900.0},
    ]
    bw.attach_peers(results, [{"index": 0, "theoretical_memory_gbps": None, "pcie": None}])
    assert results[0]["peer"] == {"name": "D2H pinned", "gbps": 40.0, "ratio": 1.25}
    assert results[1]["peer"]["name"] == "H2D pinned"
    assert results[2]["peer"] is None  # no pinned figure of that size in the run
    assert results[3]["peer"] is None


def test_aggregate_sums_devices():
    doc = _bandwidth_doc(concurrent=True)
    agg = {(a["direction"], a["memory"]): a for a in doc["aggregate"]}
    assert agg[("H2D", "pinned")]["gbps"] == pytest.approx(2 * 53.8)
    assert agg[("H2D", "pinned")]["devices"] == 2


# --- formatting -----------------------------------------------------------------------------------

def test_render_table_aligns():
    text = cli.render_table(["name", "GB/s"], [["H2D pinned", "53.8"], ["D2D", "2923.0"], ["x", None]],
                            right={1})
    lines = text.splitlines()
    assert lines[0].startswith("name") and set(lines[1]) <= {"-", " "}
    assert lines[2].endswith("  53.8") and lines[3].endswith("2923.0")
    assert lines[4].endswith("-")  # None
    assert len({len(line) for line in lines[:4]}) == 1  # every full row has the same width


def test_render_pairs_aligns_values():
    text = cli.render_pairs([("a", "1"), ("longer label", "2")])
    first, second = text.splitlines()
    assert first.index("1") == second.index("2")


def test_devices_formatting():
    doc = {"schema": query.SCHEMA_DEVICES, "driver_cuda_version": "13.0", "driver_version": "580.159.04",
           "cuda_visible_devices": "0", "devices": [{
               "index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-abc", "pci_bus_id": "0000:18:00.0",
               "compute_capability": "9.0", "arch": "sm_90", "total_memory_bytes": 85520809984,
               "free_memory_bytes": 84e9, "multiprocessor_count": 132, "clock_rate_mhz": 1980,
               "memory_clock_rate_mhz": 2619, "memory_bus_width_bits": 5120}]}
    rows = cli.devices_rows(doc)
    assert rows[0][:3] == [0, "NVIDIA H100 80GB HBM3", "9.0"]
    assert "79.6 GiB" in rows[0][3] and rows[0][5] == "1980 MHz" and rows[0][7] == "5120-bit"
    header = cli.devices_header(doc)
    assert "13.0" in header and "580.159.04" in header and "CUDA_VISIBLE_DEVICES='0'" in header
    table = cli.render_table(cli.DEVICE_HEADERS, rows)
    assert "0000:18:00.0" in table and "GPU-abc" in table


DEVICEQUERY_LABELS = [
    "CUDA Driver Version / Runtime Version", "CUDA Capability Major/Minor version number",
    "Total amount of global memory", "Multiprocessors", "GPU Max Clock rate", "Memory Clock rate",
    "Memory Bus Width", "L2 Cache Size", "Maximum Texture Dimension Size (x,y,z)",
    "Maximum Layered 1D Texture Size, (num) layers", "Maximum Layered 2D Texture Size, (num) layers",
    "Total amount of constant memory", "Total amount of shared memory per block",
    "Total shared memory per multiprocessor", "Total number of registers available per block", "Warp size",
    "Maximum number of threads per multiprocessor", "Maximum number of threads per block",
    "Max dimension size of a thread block (x,y,z)", "Max dimension size of a grid size (x,y,z)",
    "Maximum memory pitch", "Texture alignment", "Concurrent copy and kernel execution",
    "Run time limit on kernels", "Integrated GPU sharing Host Memory", "Support host page-locked memory mapping",
    "Alignment requirement for Surfaces", "Device has ECC support", "Device supports Unified Addressing (UVA)",
    "Device supports Managed Memory", "Device supports Compute Preemption", "Supports Cooperative Kernel Launch",
    "Supports MultiDevice Co-op Kernel Launch", "Device PCI Domain ID / Bus ID / location ID", "Compute Mode",
]


def test_query_record_schema_and_text(fake_devices):
    doc = query.query_report(all_attributes=True)
    assert doc["schema"] == "cudart-kit/query/1"
    for key in ("driver_cuda_version", "runtime_cuda_version", "cuda_core_version", "cuda_bindings_version",
                "cuda_visible_devices", "device_count", "devices", "peer_access"):
        assert key in doc
    assert doc["device_count"] == 2 and doc["peer_access"] == [[True, True], [True, True]]
    rec = doc["devices"][0]
    for key in ("index", "name", "uuid", "pci_bus_id", "compute_capability", "arch", "total_memory_bytes",
                "free_memory_bytes", "fp32_cores_per_multiprocessor", "fp32_cores", "compute_mode",
                "properties", "derived", "nvml", "attributes"):
        assert key in rec, key
    assert set(rec["properties"]) == set(query.DEVICE_QUERY_ATTRIBUTES)
    assert rec["fp32_cores"] == 132 * 128 and rec["compute_mode"] == "default" and rec["arch"] == "sm_90"
    assert rec["derived"]["theoretical_memory_bandwidth_gbps"] == pytest.approx(3352.32)
    assert rec["derived"]["fp32_peak_tflops"] == pytest.approx(66.908, rel=1e-4)
    assert rec["derived"]["pcie_bandwidth_gbps"] is None  # no NVML on the fake
    assert rec["nvml"]["available"] is False and "NVML" in rec["nvml"]["reason"]
    assert rec["attributes"]["some_newer_attribute"] == 7
    json.loads(cli.to_json(doc))  # serialisable

    text = "\n".join(f"{label}: {value}" for _, pairs in cli.query_sections(rec, doc) for label, value in pairs)
    for label in DEVICEQUERY_LABELS:
        assert label in text, label
    assert "(132) Multiprocessors, (128) CUDA Cores/MP: 16896 CUDA Cores" in text
    assert "5120-bit" in text and "1980 MHz (1.98 GHz)" in text and "Yes with 3 copy engine(s)" in text
    assert "3352.3 GB/s" in text and "66.9 TFLOP/s" in text
    assert "some_newer_attribute: 7" in text  # --all section


def test_query_single_device_and_missing_attributes(fake_devices):
    del fake_devices[1]._attrs["memory_clock_rate"]
    fake_devices[1].compute_capability = (99, 9)
    doc = query.query_report(1, nvml=False)
    rec = doc["devices"][0]
    assert len(doc["devices"]) == 1 and rec["index"] == 1 and "attributes" not in rec
    assert rec["properties"]["memory_clock_rate"] is None
    assert rec["derived"]["theoretical_memory_bandwidth_gbps"] is None
    assert rec["fp32_cores"] is None and rec["derived"]["fp32_peak_tflops"] is None
    text = "\n".join(f"{k}: {v}" for _, pairs in cli.query_sections(rec, doc) for k, v in pairs)
    assert "Memory Clock rate: n/a" in text and "FP32 peak: n/a" in text


def test_query_with_nvml_figures(fake_devices):
    rec = query.device_record(fake_devices[0])
    rec["nvml"] = {"available": True, "sm_clock_mhz": 1755, "sm_clock_max_mhz": 1980, "memory_clock_mhz": 2619,
                   "memory_clock_max_mhz": 2619, "pcie_link_generation": 5, "pcie_link_width": 16,
                   "pcie_link_generation_max": 5, "pcie_link_width_max": 16, "temperature_c": 33,
                   "performance_state": 0, "persistence_mode": True, "mig_mode": False, "power_draw_w": 71.3,
                   "power_limit_w": 700.0}
    rec["derived"]["pcie_bandwidth_gbps"] = query.pcie_bandwidth_gbps(5, 16)
    sections = dict(cli.query_sections(rec, {"driver_cuda_version": "13.0"}))
    nvml = dict(sections["NVML"])
    assert nvml["SM clock now / max"] == "1755 / 1980 MHz"
    assert nvml["PCIe link now (max)"] == "gen5 x16 (gen5 x16)"
    assert nvml["Power draw / limit"] == "71.3 / 700.0 W" and nvml["MIG mode"] == "Disabled"
    assert "63.0 GB/s (gen5 x16)" in dict(sections["Derived"])["PCIe bandwidth per direction"]


def test_devices_report_schema(fake_devices):
    doc = query.devices_report()
    assert doc["schema"] == "cudart-kit/devices/1"
    assert set(doc) == {"schema", "driver_cuda_version", "driver_version", "cuda_visible_devices", "devices"}
    row = doc["devices"][0]
    assert set(row) == {"index", "name", "uuid", "pci_bus_id", "compute_capability", "arch", "total_memory_bytes",
                        "free_memory_bytes", "multiprocessor_count", "clock_rate_mhz", "memory_clock_rate_mhz",
                        "memory_bus_width_bits"}
    assert row["clock_rate_mhz"] == 1980 and row["memory_clock_rate_mhz"] == 2619


def test_peer_rows():
    assert cli.peer_rows({"peer_access": [[True]]}) is None
    headers, rows = cli.peer_rows({"peer_access": [[True, False], [True, True]]})
    assert headers == ["from \\ to", "GPU0", "GPU1"]
    assert rows == [["GPU0", "-", "No"], ["GPU1", "Yes", "-"]]


def test_bandwidth_csv_round_trips():
    doc = _bandwidth_doc(concurrent=True)
    rows = list(csv.DictReader(io.StringIO(cli.bandwidth_csv(doc))))
    assert list(rows[0]) == cli.BANDWIDTH_CSV_FIELDS
    per_device = [r for r in rows if r["device"] != "all"]
    assert len(per_device) == len(doc["results"]) and len(rows) - len(per_device) == len(doc["aggregate"])
    first = per_device[0]
    assert (first["direction"], first["memory"], int(first["bytes"])) == ("H2D", "pinned", 32 << 20)
    assert float(first["gbps"]) == pytest.approx(53.8) and float(first["peer_ratio"]) == pytest.approx(53.8 / 63.008, abs=1e-4)


def test_bandwidth_rows_and_sweep():
    doc = _bandwidth_doc()
    rows = cli.bandwidth_rows(doc)
    assert rows[0][:4] == [0, "H2D pinned", "32 MiB", "53.8"]
    assert rows[0][6] == "85%"
    d2d = [r for r in rows if r[1] == "D2D"][0]
    assert d2d[3] == "2923.0" and d2d[6] == "87%" and "DRAM theoretical" in d2d[5]
    doc = _bandwidth_doc(sizes=(1024, 2048))
    headers, rows = cli.bandwidth_sweep(doc, 0)
    assert headers[0] == "size" and "H2D pinned GB/s" in headers and "D2D GB/s" in headers
    assert [r[0] for r in rows] == ["1 KiB", "2 KiB"]
    out = io.StringIO()
    cli.print_bandwidth(doc, cli.Printer(out, rich=False))
    text = out.getvalue()
    assert "Device 0: NVIDIA H100" in text and "Against the peers at 2 KiB" in text
    # a figure flagged noisy shows "~" after its GB/s in the text tables (docs/cli.md), not in the CSV
    doc["results"][0]["noisy"] = True
    assert cli.bandwidth_rows(doc)[0][3].endswith("~") and not cli.bandwidth_rows(doc)[1][3].endswith("~")
    assert cli.bandwidth_sweep(doc, 0)[1][0][1].endswith("~")
    assert "~" not in cli.bandwidth_csv(doc)


def test_missing_package_messages():
    """A missing core dependency says how to install the kit's dependencies; a missing optional
    extra keeps its own message (which names the extra to install)."""
    from cudart_kit.cli.app import _classify

    code, msg = _classify(ModuleNotFoundError("No module named 'numpy'", name="numpy"))
    assert code == 1 and "pip install cuda-core cuda-bindings numpy" in msg
    code, msg = _classify(ImportError("plotting needs matplotlib: pip install 'cudart-kit[plot]'"))
    assert code == 1 and msg == "a package is missing: plotting needs matplotlib: pip install 'cudart-kit[plot]'"


def test_bandwidth_text_concurrent():
    out = io.StringIO()
    cli.print_bandwidth(_bandwidth_doc(concurrent=True), cli.Printer(out, rich=False))
    text = out.getvalue()
    assert "devices concurrently" in text and "All devices at once (sum)" in text and "107.6" in text


def test_json_schema_constants():
    assert bw.SCHEMA == "cudart-kit/bandwidth/1"
    assert doctor.SCHEMA == "cudart-kit/doctor/1"
    assert query.SCHEMA_QUERY == "cudart-kit/query/1" and query.SCHEMA_DEVICES == "cudart-kit/devices/1"


# The bandwidth document from the bandwidth package's real code: bandwidth.figure (the record builder) on
# fixed samples, assembled by bandwidth.run; only the per-device GPU work (_DeviceBench: buffers,
# stream, timed copies) is replaced. A renamed or dropped key fails here, and in the CSV and
# table formatting that read the document. Keys the docs promise; the code may add more.
RESULT_KEYS = {"device", "direction", "memory", "bytes", "copies_per_sample", "samples", "median_ms", "min_ms",
               "max_ms", "gbps", "peer"}
DOC_KEYS = {"schema", "mode", "concurrent", "repeat", "warmup", "units", "devices", "results"}
SAMPLES_MS = [2.0, 1.0, 3.0, 10.0, 1.5]  # per copy; median 2.0


class _FakeBench:
    """Stands in for bandwidth._DeviceBench: fixed per-copy samples through bandwidth.figure."""

    def __init__(self, dev, tests):
        self.dev = dev

    def measure(self, direction, memory, nbytes, **_options):
        from cudart_kit.bench import BenchResult

        result = BenchResult(f"{direction} {memory} {nbytes}", list(SAMPLES_MS), batch=bw.copies_per_sample(nbytes))
        return bw.figure(self.dev.ordinal, direction, memory, nbytes, result)

    def close(self):
        pass


@pytest.fixture
def fake_bandwidth(monkeypatch, fake_devices):
    monkeypatch.setattr(bw.host, "_DeviceBench", _FakeBench)
    return fake_devices


def test_bandwidth_document_keys_are_documented():
    text = (REPO / "docs" / "cli.md").read_text()
    block = text.split("schema `cudart-kit/bandwidth/1`", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    for key in RESULT_KEYS | DOC_KEYS:
        assert f'"{key}"' in block, key


def test_bandwidth_document_from_the_real_record_builder(fake_bandwidth):
    sizes = [1 << 20, 32 << 20]
    doc = bw.run(bw.Options(devices=[0], directions=bw.DIRECTIONS, memories=("pinned", "pageable"), sizes=sizes,
                            repeat=5, warmup=1))
    assert DOC_KEYS <= set(doc) and doc["schema"] == bw.SCHEMA and "aggregate" not in doc
    assert (doc["repeat"], doc["warmup"], doc["concurrent"], doc["mode"]) == (5, 1, False, "quick")
    assert {"index", "name", "pci_bus_id", "theoretical_memory_gbps", "pcie"} <= set(doc["devices"][0])
    assert [(r["direction"], r["memory"], r["bytes"]) for r in doc["results"]] == bw.plan_tests(
        bw.DIRECTIONS, ("pinned", "pageable"), sizes)
    for r in doc["results"]:
        assert RESULT_KEYS <= set(r), RESULT_KEYS - set(r)
        assert r["device"] == 0 and r["samples"] == len(SAMPLES_MS)
        assert r["copies_per_sample"] == bw.copies_per_sample(r["bytes"])
        assert (r["median_ms"], r["min_ms"], r["max_ms"]) == (2.0, 1.0, 10.0)
        read_and_written = 2 if r["direction"] == "D2D" else 1
        assert r["gbps"] == pytest.approx(read_and_written * r["bytes"] / 2.0e-3 / 1e9)
        assert r["peer"] is None or set(r["peer"]) == {"name", "gbps", "ratio"}
    by = {(r["direction"], r["memory"], r["bytes"]): r for r in doc["results"]}
    assert by[("H2D", "pageable", 1 << 20)]["peer"]["name"] == "H2D pinned"
    assert by[("D2D", "device", 1 << 20)]["peer"]["name"] == "DRAM theoretical"
    # the formatters read the real document
    rows = list(csv.DictReader(io.StringIO(cli.bandwidth_csv(doc))))
    assert len(rows) == len(doc["results"]) and {float(row["median_ms"]) for row in rows} == {2.0}
    assert [row[1] for row in cli.bandwidth_rows(doc, only_bytes=32 << 20)][:2] == ["H2D pinned", "H2D pageable"]
    json.loads(cli.to_json(doc))


def test_bandwidth_concurrent_document_adds_the_sums(fake_bandwidth):
    doc = bw.run(bw.Options(devices=[0, 1], directions=("H2D",), memories=("pinned",), sizes=[8 << 20], repeat=3,
                            warmup=0, concurrent=True))
    assert doc["concurrent"] is True and [r["device"] for r in doc["results"]] == [0, 1]
    assert doc["aggregate"] == [{"direction": "H2D", "memory": "pinned", "bytes": 8 << 20,
                                 "gbps": pytest.approx(2 * doc["results"][0]["gbps"]), "devices": 2}]


def test_bandwidth_command_prints_the_real_document(fake_bandwidth, capsys):
    assert cli.main(["bandwidth", "--size", "1M", "--memory", "pinned", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == bw.SCHEMA and [r["direction"] for r in doc["results"]] == ["H2D", "D2H", "D2D"]
    assert cli.main(["bandwidth", "--size", "1M", "--memory", "pinned", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["direction"] for r in rows] == ["H2D", "D2H", "D2D"] and {r["median_ms"] for r in rows} == {"2.000000"}
    assert cli.main(["bandwidth", "--size", "1M", "--memory", "pinned"]) == 0
    assert capsys.readouterr().out.startswith("Device 0: NVIDIA H100 80GB HBM3 (0000:18:00.0)")


def test_plain_output_without_a_terminal():
    assert cli.use_rich(io.StringIO()) is False

    class FakeTty(io.StringIO):
        def isatty(self):
            return True

    assert cli.use_rich(FakeTty()) is cli.rich_available()
    progress = cli.Progress(10, stream=io.StringIO())
    assert not progress.enabled
    tty = FakeTty()
    progress = cli.Progress(3, stream=tty)
    progress(1, {"device": 0, "direction": "H2D", "memory": "pinned", "bytes": 1024, "gbps": 1.5})
    progress.close()
    assert "[1/3] device 0 H2D pinned 1 KiB: 1.5 GB/s" in tty.getvalue()


def test_rich_tables_when_available():
    pytest.importorskip("rich")
    out = io.StringIO()
    printer = cli.Printer(out, rich=True)
    printer.table(["a", "GB/s"], [["H2D [pinned]", "53.8"]], right={1}, title="t")
    printer.pairs([("Warp size", "32")], title="Device 0")
    text = out.getvalue()
    assert "H2D [pinned]" in text and "53.8" in text and "Warp size" in text
    out = io.StringIO()
    doc = doctor.summarize([doctor.Check("kernels", "fail", "vector: stale [sm_90]", "run `cudart-kit build`")])
    cli.print_doctor(doc, cli.Printer(out, rich=True))
    text = out.getvalue()
    assert "FAIL" in text and "vector: stale [sm_90]" in text and "run `cudart-kit build`" in text
    assert text.count("kernels") == 1  # the verdict of a failure is stderr's, not printed here


# --- doctor ---------------------------------------------------------------------------------------

def test_parse_version():
    assert doctor.parse_version("13.3.1") == (13, 3, 1)
    assert doctor.parse_version("Cuda compilation tools, release 13.0, V13.0.88") == (13, 0)
    assert doctor.parse_version((13, 0)) == (13, 0)
    assert doctor.parse_version("unknown") is None and doctor.parse_version(None) is None


def test_bindings_driver_compat():
    assert doctor.bindings_driver_compat("13.0.0", 13000)[0] == "ok"
    status, detail, _ = doctor.bindings_driver_compat("13.3.1", 13000)
    assert status == "ok" and "minor-version compatibility" in detail
    assert doctor.bindings_driver_compat("12.9.0", 13000)[0] == "ok"
    status, detail, fix = doctor.bindings_driver_compat("13.3.1", 12080)
    assert status == "fail" and "12.8" in detail and "update the NVIDIA driver" in fix
    assert doctor.bindings_driver_compat(None, 13000)[0] == "warn"


def test_nvcc_driver_compat():
    assert doctor.nvcc_driver_compat("13.0.88", 13000) == ("ok", "")
    status, note = doctor.nvcc_driver_compat("13.1.20", 13000)
    assert status == "warn" and "PTX" in note
    assert doctor.nvcc_driver_compat("12.8", 13000)[0] == "ok"
    assert doctor.nvcc_driver_compat("13.1", None)[0] == "ok"


@pytest.mark.parametrize("gpu,expected", [("90", "cubin sm_90"), ("86", "cubin sm_86"), ("87", "cubin sm_86"),
                                          ("103", "cubin sm_100"), ("110", "PTX compute_80")])
def test_arch_coverage(gpu, expected):
    status, how = doctor.arch_coverage(gpu, ("80", "86", "89", "90", "100", "120"), ("80", "120"))
    assert status == "ok" and how.startswith(expected)


def test_arch_coverage_failures_and_specific():
    assert doctor.arch_coverage("75", ("80",), ("80",))[0] == "fail"
    assert doctor.arch_coverage("90", ("80",), (), ("90a",)) == ("ok", "cubin sm_90a")
    assert doctor.arch_coverage("100", (), (), ("90a",))[0] == "fail"
    assert doctor.parse_arch("sm_90a") == (9, 0, True) and doctor.parse_arch("120") == (12, 0, False)


def test_summarize_and_formatting():
    checks = [doctor.Check("driver", "ok", "CUDA 13.0"), doctor.Check("nvcc", "warn", "nvcc not found", "install it"),
              doctor.Check("kernels", "fail", "vector: stale (source changed)", "run `cudart-kit build`"),
              doctor.Check("launch", "skip", "kernels are not fresh")]
    doc = doctor.summarize(checks)
    assert doc["schema"] == "cudart-kit/doctor/1" and doc["ok"] is False
    assert doc["counts"] == {"ok": 1, "warn": 1, "fail": 1, "skip": 1}
    assert set(doc["checks"][0]) == {"name", "status", "detail", "fix"}
    rows = cli.doctor_rows(doc)
    assert rows[2][0] == "FAIL" and "-> fix: run `cudart-kit build`" in rows[2][2]
    assert "fix" not in rows[0][2]
    line = cli.doctor_summary(doc)
    # names what failed; the detail and the fix are the report's, not repeated on this line
    assert line == "1 check(s) failed: kernels; the report says how to fix each"
    assert cli.doctor_summary(doc, "") == "1 check(s) failed: kernels (CUDA_VISIBLE_DEVICES=''); the report says how to fix each"
    out = io.StringIO()
    cli.print_doctor(doc, cli.Printer(out, rich=False))
    text = out.getvalue().splitlines()
    assert text[3] == "[FAIL] kernels        vector: stale (source changed)"
    assert text[4].split() == ["->", "fix:", "run", "`cudart-kit", "build`"] and len(text) == 6  # no verdict: stderr's
    assert doctor.summarize(checks[:2])["ok"] is True
    assert cli.doctor_summary(doctor.summarize(checks[:2])) == "everything a user needs works (1 warning(s))"


@no_gpu
def test_doctor_checks_without_driver():
    doc = doctor.run_checks()
    assert doc["ok"] is False
    by = {c["name"]: c for c in doc["checks"]}
    assert by["driver"]["status"] == "fail" and "install the NVIDIA driver" in by["driver"]["fix"]
    # what is missing in the detail, what to do in the fix: each said once, not again by "devices"
    assert by["driver"]["detail"] == f"no NVIDIA driver: {ck.NoDriverError().reason}"
    assert by["devices"]["status"] == "skip" and not by["devices"]["fix"]
    assert by["launch"]["status"] == "skip"
    assert by["cuda-core"]["status"] in ("ok", "warn") and by["cuda-bindings"]["status"] in ("ok", "warn")
    assert by["nvcc"]["status"] in ("ok", "warn")


# --- the command as a user runs it ----------------------------------------------------------------

@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_help_of_every_subcommand(cmd):
    out = run_cli(cmd, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: cudart-kit {'query' if cmd == 'info' else cmd} ")
    assert "exit codes:" in out.stdout and out.stderr == ""


def test_top_level_help_and_module_entry_point():
    out = run_cli("--help")
    assert out.returncode == 0 and out.stdout == cli.build_parser().format_help()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    again = subprocess.run([sys.executable, "-m", "cudart_kit", "--help"], capture_output=True, text=True,
                           cwd=REPO, env=env, timeout=60)
    assert again.returncode == 0 and again.stdout == out.stdout


def _has_build() -> bool:
    try:
        from cudart_kit import build  # noqa: F401
    except ImportError:
        return False
    return True


needs_build = pytest.mark.skipif(not _has_build(), reason="cudart_kit.build is not in this tree")


@needs_build
def test_build_delegates_list_and_help():
    out = run_cli("build", "--list")
    assert "vector" in out.stdout and "Traceback" not in out.stderr
    states = {line.split()[1] for line in out.stdout.splitlines() if line.strip()}
    assert states <= {"fresh", "missing", "stale"}, out.stdout
    # exit 0 exactly when every artifact is fresh (a fresh clone has none built yet)
    assert out.returncode == (0 if states == {"fresh"} else 1), out.stdout
    out = run_cli("build", "--help")
    assert out.returncode == 0 and "usage:" in out.stdout


NO_DRIVER_CASES = [
    ["devices"], ["devices", "--json"], ["query"], ["info", "--json"], ["query", "--device", "0", "--all"],
    ["bandwidth"], ["bandwidth", "--quick", "--json"], ["bandwidth", "--shmoo", "--csv", "--device", "all"],
    ["overlap", "--size-mib", "1"], ["overlap", "--json"], ["doctor"], ["doctor", "--json"],
]
NO_DRIVER_LINE = str(ck.NoDriverError("what the loader said"))


def test_no_driver_message_is_one_short_line_with_the_detail_kept_apart():
    note = '"cuda" is an NVIDIA driver library and can only be found via system search.'
    exc = ck.NoDriverError(f"  {note}\n")
    text = str(exc)
    assert text == ("no NVIDIA driver: libcuda.so.1 could not be loaded; install the NVIDIA driver "
                    "(nvidia-smi must work). Building kernels needs no GPU.")
    assert note not in text and exc.detail == note and exc.result is None
    assert str(ck.NoDriverError()) == text  # the dependency's words never change the message
    back = pickle.loads(pickle.dumps(exc))
    assert (str(back), back.detail) == (text, note)
    failed = ck.NoDriverError("cuInit failed with CUDA_ERROR_INSUFFICIENT_DRIVER")
    assert failed.result == "CUDA_ERROR_INSUFFICIENT_DRIVER" and "(CUDA_ERROR_INSUFFICIENT_DRIVER)" in str(failed)
    assert "\n" not in str(failed) and len(str(failed)) < 200


@no_gpu
@pytest.mark.parametrize("argv", NO_DRIVER_CASES, ids=[" ".join(a) for a in NO_DRIVER_CASES])
def test_no_driver_is_one_clear_line(argv):
    out = run_cli(*argv)
    assert out.returncode == 1, (out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    if argv[0] == "doctor":  # the report says it, once; the verdict line names the failed checks
        assert lines[0].startswith("cudart-kit doctor: error: ") and "driver" in lines[0]
        everything = out.stdout + out.stderr
        assert everything.count("no NVIDIA driver") == 1 and everything.count("install the NVIDIA driver") == 1
        if "--json" in argv:
            assert json.loads(out.stdout)["ok"] is False
        return
    assert lines[0] == f"cudart-kit {argv[0]}: error: {NO_DRIVER_LINE}"
    if "--json" not in argv:
        assert out.stdout == ""  # nothing half-written for scripts to misread
        return
    doc = json.loads(out.stdout)  # the error object and nothing else
    assert doc["schema"] == cli.ERROR_SCHEMA and doc["exit_code"] == 1
    assert set(doc["error"]) == {"type", "message", "command", "detail", "result", "api"}
    assert doc["error"]["type"] == "NoDriverError" and doc["error"]["command"] == argv[0]
    assert doc["error"]["message"] == NO_DRIVER_LINE and doc["error"]["detail"]  # the loader's words, here


@no_gpu
def test_verbose_adds_the_dependency_detail(capsys):
    with pytest.raises(ck.NoDriverError) as info:
        ck.device_count()
    assert cli.main(["devices", "--verbose"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"cudart-kit devices: error: {NO_DRIVER_LINE}", f"cudart-kit devices: detail: {info.value.detail}"]
    assert cli.main(["devices"]) == 1
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_error_object_names_the_cuda_result(monkeypatch, capsys):
    def failing(_args):
        raise ck.CudaDriverError("CUDA_ERROR_ILLEGAL_ADDRESS", 700, "cuStreamSynchronize")

    monkeypatch.setattr(cli.commands.info, "cmd_query", failing)  # where the parser finds it
    assert cli.main(["query", "--json"]) == 1
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["error"]["type"] == "CudaDriverError" and doc["error"]["command"] == "query"
    assert (doc["error"]["result"], doc["error"]["api"]) == ("CUDA_ERROR_ILLEGAL_ADDRESS", "cuStreamSynchronize")
    assert captured.err == f"cudart-kit query: error: {doc['error']['message']}\n"


@needs_build
def test_build_json_is_one_document_on_stdout():
    out = run_cli("build", "--list", "--json")
    assert out.returncode in (0, 1), out.stderr
    doc = json.loads(out.stdout)
    assert {a["name"] for a in doc["artifacts"]} >= {"vector", "overlap"}
    out = run_cli("build", "--json", "--no-such-option")
    assert out.returncode == 2 and out.stderr.startswith("usage: cudart-kit build")
    assert out.stderr.count("error:") == 1  # build's parser said it; not said again
    doc = json.loads(out.stdout)
    assert doc["exit_code"] == 2 and doc["error"]["type"] == "UsageError" and doc["error"]["command"] == "build"
    assert "--no-such-option" in doc["error"]["message"]


@no_gpu
def test_no_driver_with_empty_visible_devices():
    out = run_cli("devices", env_extra={"CUDA_VISIBLE_DEVICES": ""})
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.splitlines() == [f"cudart-kit devices: error: {NO_DRIVER_LINE}"]


def test_doctor_when_no_device_is_visible(monkeypatch):
    from cudart_kit import _driver
    import cudart_kit.device as device_mod

    def no_device(*_a, **_k):
        raise ck.NoDeviceError("the NVIDIA driver loaded but reports no CUDA device (CUDA_ERROR_NO_DEVICE); "
                               "check nvidia-smi and CUDA_VISIBLE_DEVICES")

    monkeypatch.setattr(_driver, "version", no_device)
    monkeypatch.setattr(device_mod, "devices", no_device)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    doc = doctor.run_checks()
    by = {c["name"]: c for c in doc["checks"]}
    assert by["driver"]["status"] == "ok" and "no CUDA device" in by["driver"]["detail"]
    assert by["devices"]["status"] == "fail" and "CUDA_VISIBLE_DEVICES=''" in by["devices"]["detail"]
    assert by["compatibility"]["status"] == "skip" and by["launch"]["status"] == "skip"
    assert doc["ok"] is False and "CUDA_VISIBLE_DEVICES=''" in cli.doctor_summary(doc, "")


def test_errors_are_one_line_with_the_visible_devices_named(monkeypatch, capsys):
    def no_device(_args):
        raise ck.NoDeviceError("the NVIDIA driver loaded but reports no CUDA device;\n check nvidia-smi")

    monkeypatch.setattr(cli.commands.info, "cmd_devices", no_device)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert cli.main(["devices"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("cudart-kit devices: error: the NVIDIA driver loaded") and "CUDA_VISIBLE_DEVICES=''" in err


def test_unexpected_errors_are_one_line_unless_asked(monkeypatch, capsys):
    def boom(_args):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(cli.commands.info, "cmd_devices", boom)
    monkeypatch.delenv(cli.TRACEBACK_ENV, raising=False)
    assert cli.main(["devices"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error (RuntimeError: unexpected)" in err and cli.TRACEBACK_ENV in err
    monkeypatch.setenv(cli.TRACEBACK_ENV, "1")
    with pytest.raises(RuntimeError):
        cli.main(["devices"])


# --- the house: one front end, one size parser, one CUDA_VISIBLE_DEVICES, no import cycles ------------

def test_one_front_end_for_overlap():
    # overlap's options and handler are the CLI package's; the second front end is gone
    with pytest.raises(ModuleNotFoundError):
        __import__("cudart_kit.experiments.cli_overlap")
    assert cli.build_parser().parse_args(["overlap"]).func is cli.commands.overlap.cmd_overlap
    # the one-release alias of the formatting helpers is gone; the error object lives in errors
    with pytest.raises(ModuleNotFoundError):
        __import__("cudart_kit.cli_format")
    from cudart_kit import errors

    assert cli.error_document is errors.error_document


def test_sizes_go_through_the_one_size_parser(monkeypatch):
    seen = []

    def parse_size(text):
        seen.append(text)
        return 12345

    monkeypatch.setattr(bw, "parse_size", parse_size)
    args = cli.build_parser().parse_args(["bandwidth", "--size", "7 parsecs", "--start", "1K"])
    assert (args.size, args.start) == (12345, 12345) and seen == ["7 parsecs", "1K"]
    for path in (REPO / "cudart_kit" / "cli").rglob("*.py"):  # and nobody parses sizes on the side
        text = path.read_text()
        assert "def parse_size" not in text and "_SIZE_RE" not in text, path


def test_cuda_visible_devices_is_explained_in_one_place(monkeypatch, capsys):
    help_text = " ".join(cli.build_parser().format_help().split())
    assert " ".join(cli.visible.HELP.split()) in help_text and cli.visible.ENV == "CUDA_VISIBLE_DEVICES"
    monkeypatch.setattr(cli.visible, "note", lambda value: f" <visible {value!r}>")
    # the devices header, the query header, doctor's verdict and the error line all ask visible.note
    assert cli.devices_header({"devices": [], "cuda_visible_devices": "3"}).endswith(" <visible '3'>")
    out = io.StringIO()
    cli.print_query({"device_count": 0, "devices": [], "cuda_visible_devices": "3"}, cli.Printer(out, rich=False))
    assert out.getvalue().splitlines()[0].endswith(" <visible '3'>")
    failed = doctor.summarize([doctor.Check("devices", "fail", "none visible", "check it")])
    assert "<visible ''>" in cli.doctor_summary(failed, "")

    # the error line of a missing device gets the kit's one explanation, through visible.explain
    from cudart_kit.errors import visible_devices_hint

    def no_device(_args):
        raise ck.NoDeviceError("the NVIDIA driver loaded but reports no CUDA device")

    monkeypatch.setattr(cli.commands.info, "cmd_devices", no_device)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    assert cli.main(["devices"]) == 1
    err = capsys.readouterr().err
    assert err == f"cudart-kit devices: error: {visible_devices_hint('the NVIDIA driver loaded but reports no CUDA device')}\n"
    assert "CUDA_VISIBLE_DEVICES='7'" in err
    monkeypatch.setattr(cli.visible, "explain", lambda message: message + " <explained>")
    assert cli.main(["devices"]) == 1
    assert capsys.readouterr().err.rstrip().endswith("<explained>")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert cli.main(["devices"]) == 1  # unset: still explained (check nvidia-smi ...), by the same helper
    assert capsys.readouterr().err.rstrip().endswith("<explained>")


PACKAGES = {"cudart_kit.cli": REPO / "cudart_kit" / "cli",
            "cudart_kit.experiments.overlap": REPO / "cudart_kit" / "experiments" / "overlap"}


def _internal_imports(package: str, root: Path) -> dict[str, set[str]]:
    """module -> the modules of the same package it imports, at its top or inside a function
    (``from . import x`` depends on module ``x`` when there is one, else on the package)."""
    import ast

    files = {}
    for path in sorted(root.rglob("*.py")):
        parts = [p for p in path.relative_to(root).with_suffix("").parts if p != "__init__"]
        files[".".join([package, *parts])] = path
    graph = {}
    for name, path in files.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    deps.add(sub if sub in files else target)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_packages_have_no_import_cycles_and_small_modules(package):
    root = PACKAGES[package]
    graph = _internal_imports(package, root)
    assert len(graph) >= 5, graph  # a package of modules, not one file
    for module, deps in graph.items():  # imports point down: never to a package that holds the module
        assert not {d for d in deps if module.startswith(d + ".")}, (module, deps)
    state: dict[str, int] = {}

    def visit(m, path):
        if state.get(m) == 1:
            raise AssertionError("import cycle: " + " -> ".join(path + [m]))
        if state.get(m) != 2:
            state[m] = 1
            for d in sorted(graph[m]):
                visit(d, path + [m])
            state[m] = 2

    for m in sorted(graph):
        visit(m, [])
    for path in root.rglob("*.py"):
        assert len(path.read_text().splitlines()) <= 500, f"{path.relative_to(REPO)} is over 500 lines"


def test_help_names_the_overlap_ranges():
    from cudart_kit.experiments import overlap as ov

    text = cli.subcommands()["overlap"].format_help()
    named = {w.strip(",.()") for w in text.split() if w.startswith("overlap:")}
    assert named and named <= set(ov.RANGES.values()) and "CUDART_KIT_NVTX=1" in text
