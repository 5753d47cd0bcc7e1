"""GPU tests of the `cudart-kit` command, run as a user runs it (a subprocess): the device query
against the driver's own answers and, where it is installed, nvidia-smi; the bandwidth test's
figures and schema; doctor on a working machine; CUDA_VISIBLE_DEVICES honoured.

No speed is asserted here (figures only have to be real, positive numbers): speed belongs in
the benchmarks, reported against peers."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cudart_kit as ck
from cudart_kit import _driver as drv
from cudart_kit import bandwidth as bw
from cudart_kit import query

REPO = Path(__file__).resolve().parents[2]
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# deviceQuery fields every CUDA 13 driver reports for a discrete or integrated GPU
ESSENTIAL = (
    "compute_capability_major", "compute_capability_minor", "multiprocessor_count", "clock_rate",
    "memory_clock_rate", "global_memory_bus_width", "l2_cache_size", "total_constant_memory",
    "max_shared_memory_per_block", "max_shared_memory_per_multiprocessor", "max_registers_per_block",
    "warp_size", "max_threads_per_multiprocessor", "max_threads_per_block", "max_block_dim_x",
    "max_block_dim_y", "max_block_dim_z", "max_grid_dim_x", "max_grid_dim_y", "max_grid_dim_z",
    "max_pitch", "texture_alignment", "async_engine_count", "unified_addressing", "managed_memory",
    "ecc_enabled", "cooperative_launch", "pci_domain_id", "pci_bus_id", "pci_device_id", "compute_mode",
    "maximum_texture1d_width", "maximum_texture2d_width", "maximum_texture3d_depth",
)

LABELS = (
    "CUDA Driver Version / Runtime Version", "CUDA Capability Major/Minor version number",
    "Total amount of global memory", "CUDA Cores/MP", "GPU Max Clock rate", "Memory Clock rate",
    "Memory Bus Width", "L2 Cache Size", "Maximum Texture Dimension Size (x,y,z)",
    "Total amount of constant memory", "Total amount of shared memory per block",
    "Total shared memory per multiprocessor", "Total number of registers available per block", "Warp size",
    "Maximum number of threads per multiprocessor", "Maximum number of threads per block",
    "Max dimension size of a thread block (x,y,z)", "Max dimension size of a grid size (x,y,z)",
    "Concurrent copy and kernel execution", "Device has ECC support", "Device supports Managed Memory",
    "Supports Cooperative Kernel Launch", "Device PCI Domain ID / Bus ID / location ID", "Compute Mode",
    "Theoretical memory bandwidth", "FP32 peak",
)


def run_cli(*args, env_extra: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("CUDART_KIT_TRACEBACK", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "cudart_kit.cli", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=timeout)


def run_json(*args, **kw) -> dict:
    out = run_cli(*args, **kw)
    assert out.returncode == 0, f"rc={out.returncode}\nstdout:\n{out.stdout}\nstderr:\n{out.stderr}"
    assert "Traceback" not in out.stderr
    return json.loads(out.stdout)


def norm_uuid(u) -> str:
    u = str(u).strip().lower()
    for prefix in ("gpu-", "mig-"):
        if u.startswith(prefix):
            return u[len(prefix):]
    return u


def one_error_line(out: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    return lines[0]


# --- devices --------------------------------------------------------------------------------------

def test_devices_json_matches_the_driver():
    doc = run_json("devices", "--json")
    assert doc["schema"] == "cudart-kit/devices/1"
    assert doc["driver_cuda_version"] == query.format_cuda_version(drv.version())
    assert doc["cuda_visible_devices"] == os.environ.get("CUDA_VISIBLE_DEVICES")
    assert [row["index"] for row in doc["devices"]] == list(range(ck.device_count()))
    for row in doc["devices"]:
        dev = ck.get_device(row["index"])
        assert row["name"] == dev.name
        assert norm_uuid(row["uuid"]) == norm_uuid(dev.uuid)
        assert row["pci_bus_id"] == dev.pci_bus_id
        assert row["compute_capability"] == "{}.{}".format(*dev.compute_capability)
        assert row["arch"] == f"sm_{dev.arch}"
        assert row["total_memory_bytes"] == int(drv.call("cuDeviceTotalMem", dev.ordinal))
        assert 0 < row["free_memory_bytes"] <= row["total_memory_bytes"]
        assert row["multiprocessor_count"] == dev.attribute("multiprocessor_count")
        assert row["clock_rate_mhz"] == dev.attribute("clock_rate") // 1000
        assert row["memory_clock_rate_mhz"] == dev.attribute("memory_clock_rate") // 1000
        assert row["memory_bus_width_bits"] == dev.attribute("global_memory_bus_width")


def test_devices_table_lists_every_device():
    out = run_cli("devices")
    assert out.returncode == 0, out.stderr
    for dev in ck.devices():
        assert dev.name in out.stdout and dev.pci_bus_id in out.stdout


@pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="nvidia-smi is not installed")
def test_devices_json_matches_nvidia_smi():
    smi = subprocess.run(["nvidia-smi", "--query-gpu=uuid,name,memory.total", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=120)
    assert smi.returncode == 0, f"nvidia-smi failed on a machine where CUDA works: {smi.stderr or smi.stdout}"
    table = {}
    for row in csv.reader(io.StringIO(smi.stdout)):
        if len(row) >= 3:
            uuid, name, mib = (c.strip() for c in row[:3])
            table[norm_uuid(uuid)] = (name, float(mib))
    doc = run_json("devices", "--json")
    checked = 0
    for row in doc["devices"]:
        if str(row["uuid"]).lower().startswith("mig-"):
            continue  # MIG instances are not rows of --query-gpu
        key = norm_uuid(row["uuid"])
        assert key in table, f"device {row['index']} ({row['uuid']}) not in nvidia-smi's list {sorted(table)}"
        name, mib = table[key]
        assert row["name"] == name
        # nvidia-smi reports MiB; allow for a driver that reserves a sliver differently
        assert abs(row["total_memory_bytes"] / 2**20 - mib) <= max(16.0, 0.01 * mib), (row, mib)
        checked += 1
    assert checked or not doc["devices"]


# --- query ----------------------------------------------------------------------------------------

def test_query_json_has_every_devicequery_field_from_the_driver():
    doc = run_json("query", "--json", "--all")
    n = ck.device_count()
    assert doc["schema"] == "cudart-kit/query/1"
    assert doc["device_count"] == n and len(doc["devices"]) == n
    assert doc["driver_cuda_version_int"] == drv.version()
    assert doc["cuda_core_version"] and doc["cuda_bindings_version"]
    devs = ck.devices()
    assert doc["peer_access"] == [[a.can_access_peer(b) for b in devs] for a in devs]
    for rec in doc["devices"]:
        dev = devs[rec["index"]]
        attrs = dev.attributes()
        assert set(rec["properties"]) == set(query.DEVICE_QUERY_ATTRIBUTES)
        for name in query.DEVICE_QUERY_ATTRIBUTES:
            assert rec["properties"][name] == attrs.get(name), name
        for name in ESSENTIAL:
            assert rec["properties"][name] is not None, f"the driver did not report {name}"
        assert rec["attributes"] == attrs
        assert rec["properties"]["compute_capability_major"] == dev.compute_capability[0]
        bw_expected = query.theoretical_memory_bandwidth_gbps(attrs["memory_clock_rate"],
                                                              attrs["global_memory_bus_width"])
        assert rec["derived"]["theoretical_memory_bandwidth_gbps"] == pytest.approx(bw_expected)
        assert rec["derived"]["theoretical_memory_bandwidth_gbps"] > 0
        if query.fp32_cores_per_sm(*dev.compute_capability) is not None:
            assert rec["fp32_cores"] == rec["fp32_cores_per_multiprocessor"] * attrs["multiprocessor_count"]
            assert rec["derived"]["fp32_peak_tflops"] > 0
        assert rec["compute_mode"] in ("default", "prohibited", "exclusive_process")
        assert isinstance(rec["nvml"]["available"], bool)


def test_query_text_prints_the_devicequery_lines():
    out = run_cli("query", "--device", "0")
    assert out.returncode == 0, out.stderr
    for label in LABELS:
        assert label in out.stdout, label
    clock_line = next(line for line in out.stdout.splitlines() if "GPU Max Clock rate" in line)
    assert "MHz" in clock_line  # the field CUDA 13 removed from cudaDeviceProp is back


def test_info_is_query_and_device_out_of_range_is_one_line():
    assert run_json("info", "--json", "--device", "0")["devices"][0]["index"] == 0
    out = run_cli("query", "--device", "999")
    assert out.returncode == 1
    line = one_error_line(out)
    assert "999" in line and "out of range" in line


def test_nvml_figures_when_available():
    dev = ck.get_device(0)
    info = query.nvml_info(dev)
    if not info["available"]:
        pytest.skip(info["reason"])
    assert info["sm_clock_max_mhz"] is None or info["sm_clock_max_mhz"] > 0
    if info["sm_clock_max_mhz"]:
        # NVML's max SM clock and the driver's clock_rate describe the same clock
        assert info["sm_clock_max_mhz"] == pytest.approx(dev.attribute("clock_rate") / 1000, rel=0.15)
    if info["pcie_link_generation"] is not None:
        assert 1 <= info["pcie_link_generation"] <= 7 and info["pcie_link_width"] >= 1
    if info["temperature_c"] is not None:
        assert 0 < info["temperature_c"] < 120


# --- bandwidth ------------------------------------------------------------------------------------

def test_bandwidth_quick_json_positive_for_every_direction():
    doc = run_json("bandwidth", "--quick", "--json", "--repeat", "5")
    assert doc["schema"] == "cudart-kit/bandwidth/1" and doc["mode"] == "quick"
    got = {(r["direction"], r["memory"]): r for r in doc["results"]}
    assert set(got) == {("H2D", "pinned"), ("H2D", "pageable"), ("D2H", "pinned"), ("D2H", "pageable"),
                        ("D2D", "device")}
    for r in doc["results"]:
        assert r["bytes"] == 32 << 20 and r["samples"] >= 5
        assert math.isfinite(r["gbps"]) and r["gbps"] > 0, r
        assert r["median_ms"] > 0 and r["min_ms"] <= r["median_ms"] <= r["max_ms"]
    for key in (("H2D", "pageable"), ("D2H", "pageable")):
        peer = got[key]["peer"]
        assert peer["name"].endswith("pinned") and peer["ratio"] > 0
    d2d = got[("D2D", "device")]["peer"]
    assert d2d["name"] == "DRAM theoretical" and 0 < d2d["ratio"] < 1.5
    info = doc["devices"][0]
    assert info["index"] == 0 and info["theoretical_memory_gbps"] > 0


def test_bandwidth_shmoo_csv_with_write_combined():
    out = run_cli("bandwidth", "--shmoo", "--start", "1K", "--end", "64K", "--htod", "--dtoh",
                  "--memory", "wc,pinned", "--repeat", "3", "--csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == 2 * 2 * 7  # directions x memories x sizes 1K..64K
    assert {r["memory"] for r in rows} == {"wc", "pinned"}
    assert sorted({int(r["bytes"]) for r in rows}) == [1024 << i for i in range(7)]
    for r in rows:
        assert float(r["gbps"]) > 0 and int(r["copies_per_sample"]) >= 1
    wc = [r for r in rows if r["memory"] == "wc"]
    assert all(r["peer"].endswith("pinned") and float(r["peer_ratio"]) > 0 for r in wc)


def test_bandwidth_run_in_process_range():
    opts = bw.Options(devices=[0], directions=("D2D", "H2D"), memories=("pinned",),
                      sizes=bw.sizes_for("range", start=1 << 20, end=3 << 20, step=1 << 20), mode="range",
                      repeat=3, warmup=1)
    doc = bw.run(opts)
    assert [(r["direction"], r["bytes"]) for r in doc["results"]] == [
        ("H2D", 1 << 20), ("H2D", 2 << 20), ("H2D", 3 << 20), ("D2D", 1 << 20), ("D2D", 2 << 20), ("D2D", 3 << 20)]
    assert all(r["gbps"] > 0 and r["copies_per_sample"] >= bw.copies_per_sample(r["bytes"]) for r in doc["results"])
    assert "aggregate" not in doc


def test_bandwidth_every_device_one_after_another_and_concurrently():
    n = ck.device_count()
    doc = run_json("bandwidth", "--device", "all", "--size", "8M", "--htod", "--memory", "pinned", "--repeat", "3",
                   "--json")
    assert sorted({r["device"] for r in doc["results"]}) == list(range(n))
    if n < 2:
        pytest.skip("one device: the concurrent mode needs two")
    doc = run_json("bandwidth", "--device", "all", "--concurrent", "--size", "8M", "--htod", "--memory", "pinned",
                   "--repeat", "3", "--json")
    assert doc["concurrent"] is True
    agg = doc["aggregate"][0]
    assert agg["devices"] == n and agg["gbps"] == pytest.approx(sum(r["gbps"] for r in doc["results"]))


def test_bandwidth_size_beyond_device_memory_is_a_clear_usage_error():
    total = int(drv.call("cuDeviceTotalMem", 0))
    size_gib = total // (1 << 30) + 8
    out = run_cli("bandwidth", "--dtod", "--size", f"{size_gib}G")
    assert out.returncode == 2
    assert "free" in one_error_line(out)


# --- doctor ---------------------------------------------------------------------------------------

def test_doctor_passes_on_a_working_machine():
    out = run_cli("doctor")
    assert out.returncode == 0, out.stdout + out.stderr
    doc = run_json("doctor", "--json")
    assert doc["schema"] == "cudart-kit/doctor/1" and doc["ok"] is True
    by = {c["name"]: c for c in doc["checks"]}
    for name in ("driver", "devices", "compatibility", "kernels", "launch"):
        assert by[name]["status"] == "ok", by[name]
    assert "matched numpy" in by["launch"]["detail"]


# --- overlap --------------------------------------------------------------------------------------

def test_overlap_json_on_stdout_and_json_file(tmp_path):
    path = tmp_path / "o.json"
    out = run_cli("overlap", "--size-mib", "1", "--streams", "1,2", "--chunks", "4", "--iters", "8", "--repeat", "1",
                  "--order", "depth", "--json", "--json-file", str(path))
    assert out.returncode == 0, f"rc={out.returncode}\nstderr:\n{out.stderr}"
    doc = json.loads(out.stdout)  # the document alone on stdout, like every other --json
    assert doc["schema"] == "cudart-kit/overlap/1" and len(doc["results"]) == 2
    assert all(r["verified"] is True for r in doc["results"])
    assert out.stderr.splitlines()[0].startswith("overlap:")  # the table moved to stderr
    assert json.loads(path.read_text()) == doc


# --- CUDA_VISIBLE_DEVICES -------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", [["devices"], ["query", "--json"], ["bandwidth", "--quick"], ["doctor"],
                                 ["overlap", "--size-mib", "1"]])
def test_no_visible_device_is_one_clear_line(cmd):
    out = run_cli(*cmd, env_extra={"CUDA_VISIBLE_DEVICES": ""})
    assert out.returncode == 1
    line = one_error_line(out)
    assert line.startswith(f"cudart-kit {cmd[0]}: error:")
    assert "CUDA_VISIBLE_DEVICES" in line


def test_visible_devices_selects_by_uuid():
    dev = ck.devices()[-1]
    uuid = norm_uuid(dev.uuid)
    if not UUID_RE.fullmatch(uuid) or str(dev.uuid).lower().startswith("mig-"):
        pytest.skip(f"device UUID {dev.uuid!r} is not a plain GPU UUID")
    doc = run_json("devices", "--json", env_extra={"CUDA_VISIBLE_DEVICES": f"GPU-{uuid}"})
    assert len(doc["devices"]) == 1
    assert norm_uuid(doc["devices"][0]["uuid"]) == uuid and doc["devices"][0]["index"] == 0
    assert doc["cuda_visible_devices"] == f"GPU-{uuid}"
