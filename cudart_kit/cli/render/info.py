"""Text of ``cudart-kit devices`` and ``cudart-kit query``: the devices table and the
deviceQuery-style sections, from the plain dicts :mod:`cudart_kit.query` returns
(schemas cudart-kit/devices/1 and cudart-kit/query/1)."""

from __future__ import annotations

from .. import visible
from ..output import Printer

__all__ = ["DEVICE_HEADERS", "devices_rows", "devices_header", "print_devices", "query_sections", "peer_rows",
           "print_query"]


def _fmt_bytes(n) -> str:
    if n is None:
        return "n/a"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _yes(v) -> str:
    return "n/a" if v is None else ("Yes" if v else "No")


def _num(v, fmt: str = "{}") -> str:
    return "n/a" if v is None else fmt.format(v)


DEVICE_HEADERS = ["#", "name", "cc", "memory free / total", "SMs", "SM clock", "mem clock", "bus",
                  "PCI bus id", "UUID"]


def devices_rows(doc: dict) -> list[list]:
    """Rows of the devices table from a cudart-kit/devices/1 document."""
    rows = []
    for d in doc["devices"]:
        rows.append([
            d["index"], d["name"], d["compute_capability"],
            f"{_fmt_bytes(d.get('free_memory_bytes'))} / {_fmt_bytes(d.get('total_memory_bytes'))}",
            d.get("multiprocessor_count"),
            _num(d.get("clock_rate_mhz"), "{} MHz"),
            _num(d.get("memory_clock_rate_mhz"), "{} MHz"),
            _num(d.get("memory_bus_width_bits"), "{}-bit"),
            d.get("pci_bus_id"), d.get("uuid"),
        ])
    return rows


def devices_header(doc: dict) -> str:
    line = f"CUDA driver {doc.get('driver_cuda_version') or 'n/a'}"
    if doc.get("driver_version"):
        line += f" (display driver {doc['driver_version']})"
    line += f", {len(doc['devices'])} device(s) visible"
    return line + visible.note(doc.get("cuda_visible_devices"))


def print_devices(doc: dict, out: Printer) -> None:
    """The devices table of a cudart-kit/devices/1 document."""
    out.line(devices_header(doc))
    out.table(DEVICE_HEADERS, devices_rows(doc), right={0, 4, 5, 6, 7})


# --- query -------------------------------------------------------------------------------------

def _texture_dims(p: dict) -> str:
    return (f"1D=({_num(p.get('maximum_texture1d_width'))}), "
            f"2D=({_num(p.get('maximum_texture2d_width'))}, {_num(p.get('maximum_texture2d_height'))}), "
            f"3D=({_num(p.get('maximum_texture3d_width'))}, {_num(p.get('maximum_texture3d_height'))}, "
            f"{_num(p.get('maximum_texture3d_depth'))})")


def _triple(p: dict, prefix: str) -> str:
    return f"({_num(p.get(prefix + '_x'))}, {_num(p.get(prefix + '_y'))}, {_num(p.get(prefix + '_z'))})"


def query_sections(rec: dict, doc: dict) -> list[tuple[str, list[tuple[str, str]]]]:
    """(title, [(label, value)]) sections for one device record of a cudart-kit/query/1 document,
    with deviceQuery's labels so its users find their lines."""
    from ...query import COMPUTE_MODE_TEXT

    p = rec.get("properties", {})
    mib = None if rec.get("total_memory_bytes") is None else rec["total_memory_bytes"] // (1 << 20)
    clock = p.get("clock_rate")
    mem_clock = p.get("memory_clock_rate")
    sms, cores = p.get("multiprocessor_count"), rec.get("fp32_cores_per_multiprocessor")
    engines = p.get("async_engine_count")
    smem_block, smem_optin = p.get("max_shared_memory_per_block"), p.get("max_shared_memory_per_block_optin")
    main = [
        ("CUDA Driver Version / Runtime Version",
         f"{doc.get('driver_cuda_version') or 'n/a'} / {doc.get('runtime_cuda_version') or 'n/a'}"),
        ("CUDA Capability Major/Minor version number", rec.get("compute_capability", "n/a")),
        ("Total amount of global memory",
         f"{_num(mib)} MBytes ({_num(rec.get('total_memory_bytes'))} bytes), "
         f"{_fmt_bytes(rec.get('free_memory_bytes'))} free"),
        (f"({_num(sms)}) Multiprocessors, ({_num(cores)}) CUDA Cores/MP", f"{_num(rec.get('fp32_cores'))} CUDA Cores"),
        ("GPU Max Clock rate", "n/a" if clock is None else f"{clock // 1000} MHz ({clock / 1e6:.2f} GHz)"),
        ("Memory Clock rate", "n/a" if mem_clock is None else f"{mem_clock // 1000} MHz"),
        ("Memory Bus Width", _num(p.get("global_memory_bus_width"), "{}-bit")),
        ("L2 Cache Size", _num(p.get("l2_cache_size"), "{} bytes")),
        ("Maximum persisting L2 Cache Size", _num(p.get("max_persisting_l2_cache_size"), "{} bytes")),
        ("Maximum Texture Dimension Size (x,y,z)", _texture_dims(p)),
        ("Maximum Layered 1D Texture Size, (num) layers",
         f"1D=({_num(p.get('maximum_texture1d_layered_width'))}), "
         f"{_num(p.get('maximum_texture1d_layered_layers'))} layers"),
        ("Maximum Layered 2D Texture Size, (num) layers",
         f"2D=({_num(p.get('maximum_texture2d_layered_width'))}, {_num(p.get('maximum_texture2d_layered_height'))}), "
         f"{_num(p.get('maximum_texture2d_layered_layers'))} layers"),
        ("Total amount of constant memory", _num(p.get("total_constant_memory"), "{} bytes")),
        ("Total amount of shared memory per block",
         _num(smem_block, "{} bytes") + ("" if smem_optin is None else f" ({smem_optin} bytes opt-in)")),
        ("Total shared memory per multiprocessor", _num(p.get("max_shared_memory_per_multiprocessor"), "{} bytes")),
        ("Total number of registers available per block", _num(p.get("max_registers_per_block"))),
        ("Registers per multiprocessor", _num(p.get("max_registers_per_multiprocessor"))),
        ("Warp size", _num(p.get("warp_size"))),
        ("Maximum number of threads per multiprocessor", _num(p.get("max_threads_per_multiprocessor"))),
        ("Maximum number of threads per block", _num(p.get("max_threads_per_block"))),
        ("Maximum number of blocks per multiprocessor", _num(p.get("max_blocks_per_multiprocessor"))),
        ("Max dimension size of a thread block (x,y,z)", _triple(p, "max_block_dim")),
        ("Max dimension size of a grid size (x,y,z)", _triple(p, "max_grid_dim")),
        ("Maximum memory pitch", _num(p.get("max_pitch"), "{} bytes")),
        ("Texture alignment", _num(p.get("texture_alignment"), "{} bytes")),
        ("Concurrent copy and kernel execution",
         "n/a" if p.get("gpu_overlap") is None else
         f"{_yes(p.get('gpu_overlap'))} with {_num(engines)} copy engine(s)"),
        ("Concurrent kernels", _yes(p.get("concurrent_kernels"))),
        ("Run time limit on kernels", _yes(p.get("kernel_exec_timeout"))),
        ("Integrated GPU sharing Host Memory", _yes(p.get("integrated"))),
        ("Support host page-locked memory mapping", _yes(p.get("can_map_host_memory"))),
        ("Alignment requirement for Surfaces", "n/a" if p.get("surface_alignment") is None
         else f"Yes ({p['surface_alignment']} bytes)" if p["surface_alignment"] else "No"),
        ("Device has ECC support", "n/a" if p.get("ecc_enabled") is None
         else "Enabled" if p["ecc_enabled"] else "Disabled"),
        ("Device supports Unified Addressing (UVA)", _yes(p.get("unified_addressing"))),
        ("Device supports Managed Memory", _yes(p.get("managed_memory"))),
        ("Device supports Concurrent Managed Access", _yes(p.get("concurrent_managed_access"))),
        ("Device supports Pageable Memory Access", _yes(p.get("pageable_memory_access"))),
        ("Device supports Compute Preemption", _yes(p.get("compute_preemption_supported"))),
        ("Supports Cooperative Kernel Launch", _yes(p.get("cooperative_launch"))),
        ("Supports MultiDevice Co-op Kernel Launch", _yes(p.get("cooperative_multi_device_launch"))),
        ("Supports Thread Block Cluster Launch", _yes(p.get("cluster_launch"))),
        ("Supports Stream Priorities", _yes(p.get("stream_priorities_supported"))),
        ("Supports Memory Pools (cudaMallocAsync)", _yes(p.get("memory_pools_supported"))),
        ("Device PCI Domain ID / Bus ID / location ID",
         f"{_num(p.get('pci_domain_id'))} / {_num(p.get('pci_bus_id'))} / {_num(p.get('pci_device_id'))}"),
        ("PCI bus id / UUID", f"{rec.get('pci_bus_id', 'n/a')} / {rec.get('uuid', 'n/a')}"),
        ("Compute Mode", COMPUTE_MODE_TEXT.get(rec.get("compute_mode"), str(rec.get("compute_mode")))),
    ]
    sections = [(f"Device {rec['index']}: \"{rec['name']}\"", main)]

    dv = rec.get("derived", {})
    bw, tf, pcie = dv.get("theoretical_memory_bandwidth_gbps"), dv.get("fp32_peak_tflops"), dv.get("pcie_bandwidth_gbps")
    derived = [
        ("Theoretical memory bandwidth",
         "n/a" if bw is None else
         f"{bw:.1f} GB/s (2 x {mem_clock // 1000} MHz x {p.get('global_memory_bus_width')}-bit / 8)"),
        ("FP32 peak",
         "n/a (CUDA cores per SM unknown for this architecture)" if tf is None else
         f"{tf:.1f} TFLOP/s ({sms} SMs x {cores} cores x 2 (FMA) x {clock // 1000} MHz)"),
    ]
    nv = rec.get("nvml", {})
    if pcie is not None:
        derived.append(("PCIe bandwidth per direction",
                        f"{pcie:.1f} GB/s (gen{nv.get('pcie_link_generation')} x{nv.get('pcie_link_width')})"))
    sections.append(("Derived", derived))

    if nv.get("available"):
        nvml = [
            ("SM clock now / max", f"{_num(nv.get('sm_clock_mhz'))} / {_num(nv.get('sm_clock_max_mhz'))} MHz"),
            ("Memory clock now / max", f"{_num(nv.get('memory_clock_mhz'))} / {_num(nv.get('memory_clock_max_mhz'))} MHz"),
            ("PCIe link now (max)",
             f"gen{_num(nv.get('pcie_link_generation'))} x{_num(nv.get('pcie_link_width'))} "
             f"(gen{_num(nv.get('pcie_link_generation_max'))} x{_num(nv.get('pcie_link_width_max'))})"),
            ("Power draw / limit", f"{_num(nv.get('power_draw_w'))} / {_num(nv.get('power_limit_w'))} W"),
            ("Temperature", _num(nv.get("temperature_c"), "{} C")),
            ("Performance state", _num(nv.get("performance_state"), "P{}")),
            ("Persistence mode", _yes(nv.get("persistence_mode"))),
            ("MIG mode", "n/a" if nv.get("mig_mode") is None else ("Enabled" if nv["mig_mode"] else "Disabled")),
        ]
    else:
        nvml = [("Status", nv.get("reason", "not available"))]
    sections.append(("NVML", nvml))

    if "attributes" in rec:
        sections.append(("All driver attributes", [(k, str(v)) for k, v in rec["attributes"].items()]))
    return sections


def peer_rows(doc: dict) -> tuple[list[str], list[list]] | None:
    """Peer-access matrix as (headers, rows), or None with fewer than two devices."""
    m = doc.get("peer_access")
    if not m or len(m) < 2:
        return None
    n = len(m)
    headers = ["from \\ to"] + [f"GPU{j}" for j in range(n)]
    rows = [[f"GPU{i}"] + [("-" if i == j else "Yes" if m[i][j] else "No") for j in range(n)] for i in range(n)]
    return headers, rows


def print_query(doc: dict, out: Printer) -> None:
    """The query report of a cudart-kit/query/1 document: versions, sections per device, peers."""
    out.line(f"cuda-core {doc.get('cuda_core_version') or 'n/a'}, cuda-bindings {doc.get('cuda_bindings_version') or 'n/a'}"
             + (f", display driver {doc['driver_version']}" if doc.get("driver_version") else "")
             + f"; {doc['device_count']} CUDA device(s) visible"
             + visible.note(doc.get("cuda_visible_devices")))
    for rec in doc["devices"]:
        for title, pairs in query_sections(rec, doc):
            out.line()
            out.title(title)
            out.pairs(pairs)
    peers = peer_rows(doc)
    if peers is not None:
        out.line()
        out.table(*peers, title="Peer access (can the row GPU read/write the column GPU's memory)")
