"""Output of the ``cudart-kit`` command: tables, key/value sections, CSV and JSON, built from
the plain dicts the gatherers return (:mod:`cudart_kit.query`, :mod:`cudart_kit.bandwidth`,
:mod:`cudart_kit.doctor`, the overlap report), so every line is tested without a GPU.

Tables use ``rich`` when it is installed and stdout is a terminal, plain aligned text
otherwise. Pure formatting: nothing here parses arguments, touches the driver or exits.
"""

from __future__ import annotations

import csv
import io
import json
import sys

__all__ = [
    "ERROR_SCHEMA", "rich_available", "use_rich", "render_table", "render_pairs", "Printer", "Progress",
    "to_json", "error_document", "DEVICE_HEADERS", "devices_rows", "devices_header", "print_devices",
    "query_sections", "peer_rows", "print_query", "BANDWIDTH_CSV_FIELDS", "BANDWIDTH_HEADERS",
    "bandwidth_csv", "bandwidth_rows", "bandwidth_sweep", "device_line", "print_bandwidth",
    "doctor_rows", "doctor_summary", "print_doctor",
]

ERROR_SCHEMA = "cudart-kit/error/1"


# --- output helpers ----------------------------------------------------------------------------

def rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def use_rich(stream) -> bool:
    """Rich tables only for a terminal, and only when rich is installed (the ``cli`` extra)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and rich_available()


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


class Printer:
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

    def rich_print(self, renderable) -> None:
        """Print a rich renderable (a Table); only when ``self.rich``."""
        self._console.print(renderable)

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


def error_document(exc: BaseException, *, message: str, command: str | None, exit_code: int,
                   detail: str | None = None) -> dict:
    """The JSON error object (schema cudart-kit/error/1) that a command run with ``--json``
    prints on stdout instead of its document when it fails. ``message`` is the one line also
    printed on stderr; ``detail`` what a dependency added (None when nothing); ``result`` and
    ``api`` name the CUresult and the driver call when the error carries them."""
    return {
        "schema": ERROR_SCHEMA,
        "error": {
            "type": type(exc).__name__,
            "message": message,
            "command": command,
            "detail": detail or None,
            "result": getattr(exc, "result", None),
            "api": getattr(exc, "api", None),
        },
        "exit_code": exit_code,
    }


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


def print_query(doc: dict, out: Printer) -> None:
    """The query report of a cudart-kit/query/1 document: versions, sections per device, peers."""
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


def print_bandwidth(doc: dict, out: Printer) -> None:
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


class Progress:
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


def doctor_summary(doc: dict, visible_devices: str | None = None) -> str:
    """The one-line verdict. After a failure it names the failed checks, and
    ``CUDA_VISIBLE_DEVICES`` when set (``visible_devices``), but repeats neither their details
    nor their fixes: those are in the report, once."""
    failed = [c["name"] for c in doc["checks"] if c["status"] == "fail"]
    if not failed:
        warns = doc["counts"].get("warn", 0)
        return "everything a user needs works" + (f" ({warns} warning(s))" if warns else "")
    note = f" (CUDA_VISIBLE_DEVICES={visible_devices!r})" if visible_devices is not None else ""
    return f"{len(failed)} check(s) failed: {', '.join(failed)}{note}; the report says how to fix each"


def print_doctor(doc: dict, out: Printer) -> None:
    """The doctor report: one row per check with its fix under a problem; the verdict line
    too when nothing failed (a failure's verdict goes to stderr, from the command)."""
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
        out.rich_print(t)
    else:
        for status, name, text in doctor_rows(doc):
            first, *extra = text.split("\n")
            out.line(f"[{status:>4}] {name:<14} {first}")
            for more in extra:
                out.line(f"{'':>6} {'':<14} {more}")
    if doc["ok"]:
        out.line(doctor_summary(doc))
