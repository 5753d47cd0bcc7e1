"""The ``cudart-kit`` command: argument parsing, output formatting and dispatch, nothing more.

Subcommands: ``build`` (delegates to cudart_kit.build), ``devices``, ``query`` (alias
``info``), ``bandwidth`` and ``doctor``. The data comes from :mod:`cudart_kit.query`,
:mod:`cudart_kit.bandwidth` and :mod:`cudart_kit.doctor` as plain dicts; the formatting
functions here take those dicts, so they are tested without a GPU.

Tables use ``rich`` when it is installed and stdout is a terminal, plain aligned text
otherwise. A machine without a driver or GPU gets one line on stderr saying what is missing
and a non-zero exit code, never a traceback. Exit codes: 0 success, 1 a CUDA / environment
failure (or a doctor check failed), 2 a usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys

__all__ = ["main", "build_parser"]

PROG = "cudart-kit"
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
TRACEBACK_ENV = "CUDART_KIT_TRACEBACK"


# --- argument types ----------------------------------------------------------------------------

def parse_device_list(text: str):
    """``"all"`` -> "all"; ``"0"`` -> [0]; ``"0,2"`` -> [0, 2]."""
    t = text.strip().lower()
    if t == "all":
        return "all"
    try:
        out = [int(p) for p in t.split(",") if p.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a device index, a comma list (0,1) or 'all', got {text!r}") from None
    if not out or any(i < 0 for i in out):
        raise argparse.ArgumentTypeError(f"expected device indices >= 0, got {text!r}")
    return sorted(set(out))


def _device_index(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a device index (0, 1, ...), got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"device index must be >= 0, got {value}")
    return value


def _size(text: str) -> int:
    from .bandwidth import SizeError, parse_size

    try:
        return parse_size(text)
    except SizeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_memory_kinds(text: str) -> tuple:
    """``"pinned,pageable"`` -> ("pinned", "pageable"); ``"all"`` -> every host memory kind."""
    from .bandwidth import HOST_MEMORY

    aliases = {"write-combined": "wc", "writecombined": "wc", "page-locked": "pinned"}
    t = text.strip().lower()
    if t == "all":
        return HOST_MEMORY
    kinds = [aliases.get(p.strip(), p.strip()) for p in t.split(",") if p.strip()]
    bad = [k for k in kinds if k not in HOST_MEMORY]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown host memory {', '.join(bad) or text!r}: choose from {', '.join(HOST_MEMORY)} or all")
    return tuple(k for k in HOST_MEMORY if k in kinds)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


# --- parser ------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The argument parser (building it touches no driver)."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="cudart_kit: device query, bandwidth test, environment check and kernel build.",
        epilog="Every command honours CUDA_VISIBLE_DEVICES. JSON schemas: docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    sub.add_parser("build", add_help=False,
                   help="build the kit's kernels with nvcc ([--force] [--list] [names]; see build --help)")

    p = sub.add_parser("devices", help="a short table of every visible device",
                       description="One row per visible device: index, name, compute capability, memory "
                                   "free/total, SMs, clocks, PCI bus id, UUID.")
    p.add_argument("--json", action="store_true", help="JSON (schema cudart-kit/devices/1) instead of a table")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("query", aliases=["info"], help="everything deviceQuery printed, and more",
                       description="Per device: every field the CUDA sample deviceQuery printed (from driver "
                                   "attributes), derived figures (theoretical memory bandwidth, FP32 peak), "
                                   "NVML extras (live clocks, PCIe link, power, temperature, MIG mode) and "
                                   "the peer-access matrix.")
    p.add_argument("--device", type=_device_index, metavar="N", help="only device N (default: every device)")
    p.add_argument("--all", action="store_true", dest="all_attributes",
                   help="also every attribute the driver reports, by name")
    p.add_argument("--no-nvml", action="store_true", help="skip NVML (live clocks, power, PCIe link)")
    p.add_argument("--json", action="store_true", help="JSON (schema cudart-kit/query/1)")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("bandwidth", help="host<->device and device<->device copy bandwidth",
                       description="Copy bandwidth in GB/s (1e9 bytes/s): host->device, device->host, "
                                   "device->device; pinned, pageable and write-combined host memory. Each "
                                   "figure is the median of event-timed samples after warm-up, shown next "
                                   "to its peer from the same run. D2D counts bytes read + written.")
    modes = p.add_mutually_exclusive_group()
    modes.add_argument("--mode", choices=("quick", "range", "shmoo"),
                       help="quick: one size; range: --start..--end by --step; shmoo: powers of two "
                            "from --start (1K) to --end (1G). Default: quick, or range when --start/--end/--step are given")
    modes.add_argument("--quick", action="store_const", const="quick", dest="mode", help="same as --mode quick")
    modes.add_argument("--range", action="store_const", const="range", dest="mode", help="same as --mode range")
    modes.add_argument("--shmoo", action="store_const", const="shmoo", dest="mode", help="same as --mode shmoo")
    p.add_argument("--size", type=_size, help="transfer size of quick mode (default 32M); K/M/G suffixes")
    p.add_argument("--start", type=_size, help="first size of range/shmoo (range default 1M, shmoo 1K)")
    p.add_argument("--end", type=_size, help="last size of range/shmoo (range default 64M, shmoo 1G)")
    p.add_argument("--step", type=_size, help="range increment (default 1M)")
    p.add_argument("--htod", action="append_const", const="H2D", dest="directions", help="host to device")
    p.add_argument("--dtoh", action="append_const", const="D2H", dest="directions", help="device to host")
    p.add_argument("--dtod", action="append_const", const="D2D", dest="directions", help="device to device")
    p.add_argument("--memory", type=parse_memory_kinds, default=("pinned", "pageable"), metavar="KINDS",
                   help="host memory: comma list of pinned, pageable, wc (write-combined), or all "
                        "(default pinned,pageable)")
    p.add_argument("--device", type=parse_device_list, default=[0], metavar="N|N,M|all",
                   help="device(s) to test (default 0)")
    p.add_argument("--concurrent", action="store_true",
                   help="test the devices all at once instead of one after another (adds per-test sums)")
    p.add_argument("--repeat", type=_positive_int, default=10, help="timed samples per figure (default 10)")
    p.add_argument("--warmup", type=_non_negative_int, default=2, help="untimed samples first (default 2)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="JSON (schema cudart-kit/bandwidth/1)")
    out.add_argument("--csv", action="store_true", help="CSV, one row per figure")
    p.set_defaults(func=cmd_bandwidth)

    p = sub.add_parser("doctor", help="diagnose the environment and say what to fix",
                       description="Checks the driver and its version, visible GPUs, cuda-core / "
                                   "cuda-bindings against the driver, nvcc, the kit's kernel artifacts, "
                                   "and a tiny launch. Exit code 0 only when nothing failed.")
    p.add_argument("--device", type=_device_index, default=0, metavar="N", help="device for the tiny launch (default 0)")
    p.add_argument("--json", action="store_true", help="JSON (schema cudart-kit/doctor/1)")
    p.set_defaults(func=cmd_doctor)
    from .experiments import cli_overlap  # stdlib-only at import; GPU work happens in run()

    cli_overlap.add_parser(sub)
    return parser


# --- output helpers ----------------------------------------------------------------------------

def _rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def use_rich(stream) -> bool:
    """Rich tables only for a terminal, and only when rich is installed (the ``cli`` extra)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and _rich_available()


def render_table(headers: list[str], rows: list[list], *, right: set | None = None) -> str:
    """Plain aligned text: a header, a rule, the rows. Columns in ``right`` are right-aligned
    (numbers), the others left-aligned. Cells are converted with str(); None shows as "-"."""
    right = right or set()
    cells = [[("-" if c is None else str(c)) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))

    def fmt(row):
        parts = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(row)]
        return "  ".join(parts).rstrip()

    lines = [fmt(headers), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in cells]
    return "\n".join(lines)


def render_pairs(pairs: list[tuple[str, str]], indent: int = 2) -> str:
    """``label: value`` lines with the values aligned."""
    if not pairs:
        return ""
    width = max(len(label) for label, _ in pairs) + 1
    return "\n".join(" " * indent + f"{label + ':':<{width}} {value}" for label, value in pairs)


class _Printer:
    """Writes tables and key/value sections to stdout, through rich in a terminal."""

    def __init__(self, stream=None, rich: bool | None = None):
        self.stream = stream or sys.stdout
        self.rich = use_rich(self.stream) if rich is None else rich
        self._console = None
        if self.rich:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)

    def line(self, text: str = "") -> None:
        if self._console is not None:
            self._console.print(text, markup=False)
        else:
            self.stream.write(text + "\n")

    def title(self, text: str) -> None:
        if self._console is not None:
            from rich.text import Text

            self._console.print(Text(text, style="bold"))
        else:
            self.stream.write(text + "\n")

    def table(self, headers, rows, *, right=None, title: str | None = None) -> None:
        right = right or set()
        if self._console is not None:
            from rich.table import Table
            from rich.text import Text

            # Text() cells: data such as "[pinned]" must not be read as rich markup
            t = Table(title=None if title is None else Text(title), title_justify="left", header_style="bold")
            for i, h in enumerate(headers):
                # fold, not crop: a UUID or bus id cut short with an ellipsis is useless
                t.add_column(Text(h), justify="right" if i in right else "left", overflow="fold")
            for row in rows:
                t.add_row(*[Text("-" if c is None else str(c)) for c in row])
            self._console.print(t)
            return
        if title:
            self.stream.write(title + "\n")
        self.stream.write(render_table(headers, rows, right=right) + "\n")

    def pairs(self, pairs, *, title: str | None = None) -> None:
        if self._console is not None:
            from rich.table import Table
            from rich.text import Text

            t = Table(title=None if title is None else Text(title), title_justify="left", show_header=False,
                      box=None, pad_edge=False)
            t.add_column(style="dim")
            t.add_column()
            for label, value in pairs:
                t.add_row(Text(label), Text(str(value)))
            self._console.print(t)
            return
        if title:
            self.stream.write(title + "\n")
        self.stream.write(render_pairs(pairs) + "\n")


def to_json(doc: dict) -> str:
    """Stable JSON: keys in the order the gatherers build them, 2-space indent."""
    return json.dumps(doc, indent=2, default=str)


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


# --- devices -----------------------------------------------------------------------------------

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
    if doc.get("cuda_visible_devices") is not None:
        line += f" (CUDA_VISIBLE_DEVICES={doc['cuda_visible_devices']!r})"
    return line


def cmd_devices(args) -> int:
    from .query import devices_report

    doc = devices_report()
    if args.json:
        sys.stdout.write(to_json(doc) + "\n")
        return EXIT_OK
    out = _Printer()
    out.line(devices_header(doc))
    out.table(DEVICE_HEADERS, devices_rows(doc), right={0, 4, 5, 6, 7})
    return EXIT_OK


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
    from .query import COMPUTE_MODE_TEXT

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


def cmd_query(args) -> int:
    from .query import query_report

    doc = query_report(args.device, all_attributes=args.all_attributes, nvml=not args.no_nvml)
    if args.json:
        sys.stdout.write(to_json(doc) + "\n")
        return EXIT_OK
    out = _Printer()
    out.line(f"cuda-core {doc.get('cuda_core_version') or 'n/a'}, cuda-bindings {doc.get('cuda_bindings_version') or 'n/a'}"
             + (f", display driver {doc['driver_version']}" if doc.get("driver_version") else "")
             + f"; {doc['device_count']} CUDA device(s) visible"
             + (f" (CUDA_VISIBLE_DEVICES={doc['cuda_visible_devices']!r})" if doc.get("cuda_visible_devices") is not None else ""))
    for rec in doc["devices"]:
        for title, pairs in query_sections(rec, doc):
            out.line()
            out.title(title)
            out.pairs(pairs)
    peers = peer_rows(doc)
    if peers is not None:
        out.line()
        out.table(*peers, title="Peer access (can the row GPU read/write the column GPU's memory)")
    return EXIT_OK


# --- bandwidth ---------------------------------------------------------------------------------

BANDWIDTH_CSV_FIELDS = ["device", "direction", "memory", "bytes", "copies_per_sample", "samples",
                        "median_ms", "gbps", "peer", "peer_gbps", "peer_ratio"]


def bandwidth_csv(doc: dict) -> str:
    """One CSV row per figure; in a concurrent run, also the sums with device "all"."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(BANDWIDTH_CSV_FIELDS)
    for r in doc["results"]:
        peer = r.get("peer") or {}
        w.writerow([r["device"], r["direction"], r["memory"], r["bytes"], r["copies_per_sample"], r["samples"],
                    f"{r['median_ms']:.6f}", f"{r['gbps']:.3f}", peer.get("name", ""),
                    "" if not peer else f"{peer['gbps']:.3f}", "" if not peer else f"{peer['ratio']:.4f}"])
    for a in doc.get("aggregate") or []:
        w.writerow(["all", a["direction"], a["memory"], a["bytes"], "", "", "", f"{a['gbps']:.3f}", "", "", ""])
    return buf.getvalue()


def _label(direction: str, memory: str) -> str:
    return direction if direction == "D2D" else f"{direction} {memory}"


def _peer_text(peer: dict | None) -> tuple[str, str]:
    if not peer:
        return "-", "-"
    return f"{peer['name']} ({peer['gbps']:.1f} GB/s)", f"{100 * peer['ratio']:.0f}%"


BANDWIDTH_HEADERS = ["dev", "copy", "size", "GB/s", "us/copy", "peer", "of peer"]


def bandwidth_rows(doc: dict, only_bytes: int | None = None) -> list[list]:
    """Long-form rows (one per figure); ``only_bytes`` keeps one size."""
    from .bandwidth import format_size

    rows = []
    for r in doc["results"]:
        if only_bytes is not None and r["bytes"] != only_bytes:
            continue
        peer, ratio = _peer_text(r.get("peer"))
        rows.append([r["device"], _label(r["direction"], r["memory"]), format_size(r["bytes"]),
                     f"{r['gbps']:.1f}", f"{r['median_ms'] * 1e3:.2f}", peer, ratio])
    return rows


def bandwidth_sweep(doc: dict, device: int) -> tuple[list[str], list[list]]:
    """Wide table of a sweep for one device: a row per size, a GB/s column per copy kind."""
    from .bandwidth import format_size

    mine = [r for r in doc["results"] if r["device"] == device]
    columns: list[str] = []
    by_size: dict[int, dict[str, float]] = {}
    for r in mine:
        label = _label(r["direction"], r["memory"])
        if label not in columns:
            columns.append(label)
        by_size.setdefault(r["bytes"], {})[label] = r["gbps"]
    rows = [[format_size(n)] + [("-" if c not in vals else f"{vals[c]:.1f}") for c in columns]
            for n, vals in sorted(by_size.items())]
    return ["size"] + [f"{c} GB/s" for c in columns], rows


def device_line(info: dict) -> str:
    parts = [f"Device {info['index']}: {info['name']} ({info['pci_bus_id']})"]
    if info.get("theoretical_memory_gbps"):
        parts.append(f"DRAM {info['theoretical_memory_gbps']:.0f} GB/s theoretical")
    pcie = info.get("pcie")
    if pcie:
        parts.append(f"PCIe gen{pcie['generation']} x{pcie['width']} {pcie['gbps']:.1f} GB/s per direction")
    return "; ".join(parts)


def _print_bandwidth(doc: dict, out: _Printer) -> None:
    from .bandwidth import format_size

    for info in doc["devices"]:
        out.line(device_line(info))
    sizes = sorted({r["bytes"] for r in doc["results"]})
    mode = "concurrently" if doc.get("concurrent") else "one after another" if len(doc["devices"]) > 1 else ""
    out.line(f"mode {doc['mode']}{', devices ' + mode if mode else ''}; median of {doc['repeat']} event-timed "
             f"samples after {doc['warmup']} warm-up; GB/s = 1e9 bytes/s, D2D counts read + write")
    out.line()
    if len(sizes) == 1:
        out.table(BANDWIDTH_HEADERS, bandwidth_rows(doc), right={0, 2, 3, 4, 6})
    else:
        for info in doc["devices"]:
            headers, rows = bandwidth_sweep(doc, info["index"])
            out.table(headers, rows, right=set(range(len(headers))), title=f"Device {info['index']}")
            out.line()
        out.table(BANDWIDTH_HEADERS, bandwidth_rows(doc, only_bytes=sizes[-1]), right={0, 2, 3, 4, 6},
                  title=f"Against the peers at {format_size(sizes[-1])}")
    if doc.get("aggregate"):
        out.line()
        rows = [[_label(a["direction"], a["memory"]), format_size(a["bytes"]), f"{a['gbps']:.1f}", a["devices"]]
                for a in doc["aggregate"]]
        out.table(["copy", "size", "sum GB/s", "devices"], rows, right={1, 2, 3},
                  title="All devices at once (sum)")


class _Progress:
    """One self-overwriting status line on stderr; silent unless stderr is a terminal."""

    def __init__(self, total: int, stream=None):
        self.stream = stream or sys.stderr
        self.total = total
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)()) and total > 1

    def __call__(self, done: int, result: dict) -> None:
        if not self.enabled:
            return
        from .bandwidth import format_size

        text = (f"[{done}/{self.total}] device {result['device']} {_label(result['direction'], result['memory'])} "
                f"{format_size(result['bytes'])}: {result['gbps']:.1f} GB/s")
        self.stream.write("\r\033[K" + text)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


def bandwidth_options(args):
    """Options for bandwidth.run from parsed arguments (resolves "all" devices, infers the mode)."""
    from .bandwidth import DIRECTIONS, Options, SizeError, sizes_for

    mode = args.mode
    if mode is None:
        mode = "range" if any(v is not None for v in (args.start, args.end, args.step)) else "quick"
    if mode == "quick" and any(v is not None for v in (args.start, args.end, args.step)):
        raise SizeError("--start/--end/--step belong to --range or --shmoo; quick mode takes --size")
    if mode != "quick" and args.size is not None:
        raise SizeError("--size belongs to quick mode; range and shmoo take --start/--end/--step")
    if mode == "shmoo" and args.step is not None:
        raise SizeError("shmoo doubles the size each step; --step belongs to --range")
    sizes = sizes_for(mode, size=args.size, start=args.start, end=args.end, step=args.step)
    devices = args.device
    if devices == "all":
        from .device import device_count

        devices = list(range(device_count()))
    directions = tuple(d for d in DIRECTIONS if d in (args.directions or DIRECTIONS))
    return Options(devices=devices, directions=directions, memories=tuple(args.memory), sizes=sizes,
                   mode=mode, repeat=args.repeat, warmup=args.warmup, concurrent=args.concurrent)


def cmd_bandwidth(args) -> int:
    from .bandwidth import run, total_tests

    opts = bandwidth_options(args)
    progress = _Progress(total_tests(opts))
    try:
        doc = run(opts, progress=progress)
    finally:
        progress.close()
    if args.json:
        sys.stdout.write(to_json(doc) + "\n")
    elif args.csv:
        sys.stdout.write(bandwidth_csv(doc))
    else:
        _print_bandwidth(doc, _Printer())
    return EXIT_OK


# --- doctor ------------------------------------------------------------------------------------

_MARK = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "skip": "skip"}
_RICH_MARK = {"ok": "[green]ok[/green]", "warn": "[yellow]WARN[/yellow]", "fail": "[bold red]FAIL[/bold red]",
              "skip": "[dim]skip[/dim]"}


def doctor_rows(doc: dict) -> list[list]:
    """(status, check, detail / fix) rows of a cudart-kit/doctor/1 document."""
    rows = []
    for c in doc["checks"]:
        text = c["detail"] + (f"\n-> fix: {c['fix']}" if c.get("fix") and c["status"] in ("fail", "warn") else "")
        rows.append([_MARK.get(c["status"], c["status"]), c["name"], text])
    return rows


def doctor_summary(doc: dict) -> str:
    """The one-line verdict (printed on stderr when something failed)."""
    failed = [c for c in doc["checks"] if c["status"] == "fail"]
    if not failed:
        warns = doc["counts"].get("warn", 0)
        return "everything a user needs works" + (f" ({warns} warning(s))" if warns else "")
    first = failed[0]
    return (f"{len(failed)} check(s) failed ({', '.join(c['name'] for c in failed)}): "
            f"{first['detail']}" + (f" -> fix: {first['fix']}" if first.get("fix") else ""))


def cmd_doctor(args) -> int:
    from .doctor import run_checks

    doc = run_checks(args.device)
    if args.json:
        sys.stdout.write(to_json(doc) + "\n")
    else:
        out = _Printer()
        if out.rich:
            from rich.table import Table
            from rich.text import Text

            t = Table(header_style="bold")
            for h in ("", "check", "detail"):
                t.add_column(h)
            for c in doc["checks"]:
                text = Text(c["detail"])
                if c.get("fix") and c["status"] in ("fail", "warn"):
                    text.append("\nfix: ", style="bold")
                    text.append(c["fix"])
                t.add_row(_RICH_MARK.get(c["status"], c["status"]), Text(c["name"]), text)
            out._console.print(t)
        else:
            for status, name, text in doctor_rows(doc):
                lines = text.split("\n")
                sys.stdout.write(f"[{status:>4}] {name:<14} {lines[0]}\n")
                for extra in lines[1:]:
                    sys.stdout.write(f"{'':>6} {'':<14} {extra}\n")
        if doc["ok"]:
            out.line(doctor_summary(doc))
    if not doc["ok"]:
        _error("doctor", doctor_summary(doc))
        return EXIT_FAIL
    return EXIT_OK


# --- build -------------------------------------------------------------------------------------

def cmd_build(argv: list[str]) -> int:
    """``cudart-kit build ...`` is ``python -m cudart_kit.build ...``."""
    from . import build

    try:
        rc = build.main(argv)
    except SystemExit as exc:  # build's own argparse: --help, or a usage error already printed
        rc = exc.code if not isinstance(exc.code, str) else EXIT_USAGE
    return EXIT_OK if rc is None else int(rc)


# --- entry point -------------------------------------------------------------------------------

def _error(command: str | None, message: str) -> None:
    """One line on stderr: the command, then what is wrong (whitespace collapsed to one line)."""
    text = " ".join(str(message).split())
    prefix = f"{PROG} {command}" if command else PROG
    sys.stderr.write(f"{prefix}: error: {text}\n")
    sys.stderr.flush()


def _explain(exc: BaseException) -> str:
    """The message for a kit error, with CUDA_VISIBLE_DEVICES named when it may be the cause."""
    from .errors import NoDeviceError

    text = str(exc)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if isinstance(exc, NoDeviceError) and visible is not None and repr(visible) not in text:
        text += f" (CUDA_VISIBLE_DEVICES={visible!r})"
    return text


def main(argv: list[str] | None = None) -> int:
    """Run ``cudart-kit`` with ``argv`` (default sys.argv[1:]) and return the exit code."""
    from .bandwidth import SizeError
    from .errors import CudaKitError

    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and not argv[0].startswith("-") else None
    try:
        if command == "build":
            return cmd_build(argv[1:])
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help / --version (0) or a usage error (2, already printed)
            return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
        command = args.command
        return args.func(args)
    except SizeError as exc:  # a transfer size that does not fit: a usage problem
        _error(command, str(exc))
        return EXIT_USAGE
    except CudaKitError as exc:
        _error(command, _explain(exc))
        return EXIT_FAIL
    except ImportError as exc:
        _error(command, f"a required package is missing ({exc}); install cudart-kit with its dependencies: "
                        "pip install cuda-core cuda-bindings numpy")
        return EXIT_FAIL
    except KeyboardInterrupt:
        _error(command, "interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `cudart-kit query | head`: stop quietly
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK
    except Exception as exc:  # a bug: still one line, the traceback on request
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        _error(command, f"internal error ({type(exc).__name__}: {exc}); run again with {TRACEBACK_ENV}=1 "
                        "for the traceback and report it")
        return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
