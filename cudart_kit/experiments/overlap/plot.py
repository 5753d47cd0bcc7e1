"""Plots of overlap results (matplotlib, the optional extra ``plot``): speedup against stream
count with the Gantt charts of a serial and an overlapped run, and speedup against the kernel's
share of the serial time. They read results only, so a JSON report from the device machine
plots anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...trace import draw_gantt, require_matplotlib, save_figure
from .model import SIMPLESTREAMS, kernel_share
from .results import OverlapReport, OverlapResult, SerialResult, results_of

__all__ = ["plot_results", "plot_sweep"]


def _series_key(r: OverlapResult) -> tuple:
    return (r.memory, r.order, r.iters, r.chunks, r.h2d)


def _pick_gantt(rs: list, min_streams: int = 4) -> OverlapResult | None:
    with_tl = [r for r in rs if r.timeline is not None]
    pinned = [r for r in with_tl if r.memory == "pinned" and r.streams >= min_streams] or with_tl
    return max(pinned, key=lambda r: r.speedup) if pinned else None


def plot_results(results, path: "str | os.PathLike", *, gantt: "OverlapResult | str | None" = "auto",
                 serial: SerialResult | None = None, title: str | None = None) -> Path:
    """PNG (or any matplotlib format, by suffix): speedup vs streams, measured (solid) and the
    bound serial / ideal (dashed), one line per memory kind / order / iters; below it, when a
    timeline is available, the Gantt chart of the serial run and of one overlapped run
    (``gantt="auto"``: the fastest pinned run with >= 4 streams) on the same time axis.
    Needs matplotlib (``pip install 'cudart-kit[plot]'``)."""
    plt = require_matplotlib()
    report = results if isinstance(results, OverlapReport) else None
    rs = results_of(results)
    if not rs:
        raise ValueError("nothing to plot: no results")
    chosen = _pick_gantt(rs) if gantt == "auto" else gantt
    if isinstance(chosen, str):
        raise ValueError(f"gantt must be 'auto', None or an OverlapResult, got {chosen!r}")
    if chosen is not None and chosen.timeline is None:
        raise ValueError(f"{chosen.label} carries no timeline to draw")
    if chosen is not None and serial is None and report is not None:
        serial = report.serial_for(chosen.memory, chosen.iters, chosen.h2d)
    gantts = []  # (timeline, title), drawn on one time axis under the speedup panel
    if chosen is not None:
        if serial is not None and serial.timeline is not None:
            gantts.append((serial.timeline, f"{serial.label}: {serial.serial_ms:.3f} ms"))
        gantts.append((chosen.timeline, f"{chosen.label}: {chosen.overlapped_ms:.3f} ms ({chosen.speedup:.2f}x, "
                                        f"{100 * chosen.efficiency:.0f}% of ideal)"))
    heights = [3.2] + [0.9 + 0.3 * len(tl.tracks) for tl, _ in gantts]
    fig, axes = plt.subplots(len(heights), 1, figsize=(11, sum(heights) + 0.8),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    axes = [a[0] for a in axes]
    try:
        ax = axes[0]
        series: dict[tuple, list] = {}
        for r in rs:
            series.setdefault(_series_key(r), []).append(r)
        colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
        all_streams = sorted({r.streams for r in rs})
        for i, (key, items) in enumerate(sorted(series.items())):
            items = sorted(items, key=lambda r: r.streams)
            mem, order, iters, chunks, h2d = key
            c = colors[i % len(colors)]
            xs = [r.streams for r in items]
            ax.plot(xs, [r.speedup for r in items], "o-", color=c,
                    label=f"{mem} {order} iters={iters} C={chunks}" + ("" if h2d else " kernel+D2H"))
            ax.plot(xs, [r.max_speedup for r in items], "--", color=c, alpha=0.6, linewidth=1)
        ax.axhline(1.0, color="gray", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(all_streams)
        ax.set_xticklabels([str(s) for s in all_streams])
        ax.set_xlabel("streams")
        ax.set_ylabel("speedup over serial")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", ncol=2, frameon=False, title="solid: measured, dashed: bound",
                  title_fontsize=7)
        ax.set_title(title or "stream overlap: H2D -> kernel -> D2H in chunks", fontsize=10, loc="left")
        if gantts:
            x_max = max(tl.span_us()[1] for tl, _ in gantts) / 1e3 * 1.02
            for i, (tl, text) in enumerate(gantts):
                draw_gantt(axes[1 + i], tl, title=text, x_max_ms=x_max, legend=(i == len(gantts) - 1))
        out = save_figure(fig, path)
    finally:
        plt.close(fig)
    return out


def plot_sweep(results, path: "str | os.PathLike", *, title: str | None = None) -> Path:
    """PNG: speedup (measured and bound) against the kernel's share of the serial time, one
    line per stream count: why a tiny kernel (simpleStreams) gains little and a balanced one
    approaches 3x. Needs matplotlib."""
    plt = require_matplotlib()
    rs = results_of(results)
    if not rs:
        raise ValueError("nothing to plot: no results")
    fig, ax = plt.subplots(figsize=(8, 4.2))
    try:
        colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
        by_s: dict[tuple, list] = {}
        for r in rs:
            by_s.setdefault((r.stages, r.memory, r.streams, r.chunks), []).append(r)
        for i, (key, items) in enumerate(sorted(by_s.items(), reverse=True)):
            items = sorted(items, key=lambda r: r.kernel_share)
            c = colors[i % len(colors)]
            xs = [100 * r.kernel_share for r in items]
            ax.plot(xs, [r.speedup for r in items], "o-", color=c,
                    label=f"{key[0]}, {key[1]} S={key[2]} C={key[3]}: measured")
            ax.plot(xs, [r.max_speedup for r in items], "--", color=c, alpha=0.6, label="bound")
            for r, x in zip(items, xs):
                ax.annotate(str(r.iters), (x, r.speedup), textcoords="offset points", xytext=(0, 5),
                            fontsize=6, ha="center")
        ss = SIMPLESTREAMS
        ss_share = 100 * kernel_share(ss["h2d_ms"], ss["kernel_ms"], ss["d2h_ms"])
        ax.axvline(ss_share, color="gray", linestyle=":", linewidth=1)
        ax.annotate("simpleStreams (kernel+D2H)", (ss_share, 0.2), fontsize=7, color="gray", rotation=90, ha="right")
        ax.axhline(1.0, color="gray", linewidth=0.8)
        ax.set_xlabel("kernel share of the serial time (%), labels: iters")
        ax.set_ylabel("speedup over serial")
        ax.set_xlim(0, 100)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
        ax.set_title(title or "copy-bound -> balanced -> compute-bound", fontsize=10, loc="left")
        out = save_figure(fig, path)
    finally:
        plt.close(fig)
    return out
