"""Text of ``cudart-kit bandwidth``: CSV, the long and the sweep tables, the device lines, the
device-to-device matrices (laid out as nvbandwidth prints them: a column per device, a row per
device, N/A where a cell is not measured, then the SUM line) and the progress line, from the
cudart-kit/bandwidth/1 document :mod:`cudart_kit.bandwidth` returns."""

from __future__ import annotations

import csv
import io
import sys

from ..output import Printer

__all__ = ["BANDWIDTH_CSV_FIELDS", "BANDWIDTH_HEADERS", "bandwidth_csv", "bandwidth_rows", "bandwidth_sweep",
           "device_line", "matrix_lines", "print_bandwidth", "Progress"]


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


def _gbps_text(r: dict) -> str:
    """A figure's GB/s for the text tables, ``~`` after it when it was flagged noisy (the CSV
    and JSON keep the number and the ``noisy`` field)."""
    return f"{r['gbps']:.1f}{'~' if r.get('noisy') else ''}"


def bandwidth_rows(doc: dict, only_bytes: int | None = None) -> list[list]:
    """Long-form rows (one per figure); ``only_bytes`` keeps one size."""
    from ...bandwidth import format_size

    rows = []
    for r in doc["results"]:
        if only_bytes is not None and r["bytes"] != only_bytes:
            continue
        peer, ratio = _peer_text(r.get("peer"))
        rows.append([r["device"], _label(r["direction"], r["memory"]), format_size(r["bytes"]),
                     _gbps_text(r), f"{r['median_ms'] * 1e3:.2f}", peer, ratio])
    return rows


def bandwidth_sweep(doc: dict, device: int) -> tuple[list[str], list[list]]:
    """Wide table of a sweep for one device: a row per size, a GB/s column per copy kind."""
    from ...bandwidth import format_size

    mine = [r for r in doc["results"] if r["device"] == device]
    columns: list[str] = []
    by_size: dict[int, dict[str, float]] = {}
    for r in mine:
        label = _label(r["direction"], r["memory"])
        if label not in columns:
            columns.append(label)
        by_size.setdefault(r["bytes"], {})[label] = _gbps_text(r)
    rows = [[format_size(n)] + [vals.get(c, "-") for c in columns] for n, vals in sorted(by_size.items())]
    return ["size"] + [f"{c} GB/s" for c in columns], rows


def device_line(info: dict) -> str:
    parts = [f"Device {info['index']}: {info['name']} ({info['pci_bus_id']})"]
    if info.get("theoretical_memory_gbps"):
        parts.append(f"DRAM {info['theoretical_memory_gbps']:.0f} GB/s theoretical")
    pcie = info.get("pcie")
    if pcie:
        parts.append(f"PCIe gen{pcie['generation']} x{pcie['width']} {pcie['gbps']:.1f} GB/s per direction")
    return "; ".join(parts)


MATRIX_WIDTH = 10  # characters per column of a matrix, as nvbandwidth lays them out


def matrix_lines(t: dict) -> list[str]:
    """The text of one ``testcases[]`` entry: its title, the matrix (a right-aligned column per
    device ordinal, a row per ordinal, GB/s with two decimals, ``N/A`` where not measured), the
    SUM line, and a ``waived:`` line when no cell could be measured."""
    from ...bandwidth import format_size

    labels = [str(o) for o in t["devices"]]
    lead = max([2] + [len(x) for x in labels])
    lines = [f"{t['name']}, {format_size(t['bytes'])}: {t['title']}",
             " " * lead + "".join(x.rjust(MATRIX_WIDTH) for x in labels)]
    for label, row in zip(labels, t["gbps"]):
        cells = ("N/A" if v is None else f"{v:.2f}" for v in row)
        lines.append(label.rjust(lead) + "".join(c.rjust(MATRIX_WIDTH) for c in cells))
    lines.append("")
    lines.append(f"SUM {t['name']} {t['sum_gbps']:.2f}")
    if t["status"] == "waived":
        lines.append(f"waived: {t['note']}")
    elif any(c.get("noisy") for c in t["cells"]):
        noisy = ", ".join(f"[{c['row']}][{c['column']}]" for c in t["cells"] if c.get("noisy"))
        lines.append(f"noisy (spread above the limit): {noisy}")
    return lines


def _print_host(doc: dict, out: Printer) -> None:
    from ...bandwidth import format_size

    sizes = sorted({r["bytes"] for r in doc["results"]})
    measured = [info for info in doc["devices"] if any(r["device"] == info["index"] for r in doc["results"])]
    mode = "concurrently" if doc.get("concurrent") else "one after another" if len(measured) > 1 else ""
    out.line(f"mode {doc['mode']}{', devices ' + mode if mode else ''}; median of {doc['repeat']} event-timed "
             f"samples after {doc['warmup']} warm-up; GB/s = 1e9 bytes/s, D2D counts read + write")
    out.line()
    if len(sizes) == 1:
        out.table(BANDWIDTH_HEADERS, bandwidth_rows(doc), right={0, 2, 3, 4, 6})
    else:
        for info in measured:
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


def _print_matrices(doc: dict, out: Printer) -> None:
    tcs = doc.get("testcases") or []
    out.line(f"device-to-device testcases (nvbandwidth's names): median of at least {doc['repeat']} event-timed "
             "samples per cell; GB/s = 1e9 bytes/s, each byte counted once; N/A: the same GPU, or no peer path")
    for t in tcs:
        out.line()
        for line in matrix_lines(t):
            out.line(line)


def print_bandwidth(doc: dict, out: Printer) -> None:
    for info in doc["devices"]:
        out.line(device_line(info))
    if doc["results"] or not doc.get("testcases"):
        _print_host(doc, out)
    if doc.get("testcases"):
        if doc["results"]:
            out.line()
        _print_matrices(doc, out)


class Progress:
    """One self-overwriting status line on stderr; silent unless stderr is a terminal."""

    def __init__(self, total: int, stream=None):
        self.stream = stream or sys.stderr
        self.total = total
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)()) and total > 1

    def __call__(self, done: int, result: dict) -> None:
        if not self.enabled:
            return
        from ...bandwidth import format_size

        if "testcase" in result:  # a cell of a device-to-device matrix
            what = f"{result['testcase']} [{result['row']}][{result['column']}]"
        else:
            what = f"device {result['device']} {_label(result['direction'], result['memory'])}"
        text = f"[{done}/{self.total}] {what} {format_size(result['bytes'])}: {result['gbps']:.1f} GB/s"
        self.stream.write("\r\033[K" + text)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()
