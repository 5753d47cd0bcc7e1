"""The Gantt chart of a timeline (one row per track, bars coloured by category) on a matplotlib
Axes; matplotlib is an optional extra, imported only by :func:`require_matplotlib`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .timeline import Timeline

PLOT_EXTRA_HINT = "pip install 'cudart-kit[plot]'"

# One colour per kind of work, the same in every plot (Okabe-Ito, readable by the colour-blind).
CATEGORY_COLORS = {
    "H2D": "#0072B2",
    "kernel": "#E69F00",
    "D2H": "#CC79A7",
    "D2D": "#56B4E9",
    "gate": "#999999",
    "other": "#009E73",
}


def save_figure(fig, path) -> "Path":
    """Lay out ``fig`` and write it to ``path`` (PNG, SVG, PDF: by the suffix) at the kit's one
    resolution; returns the Path. The caller closes the figure."""
    from pathlib import Path

    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=130)
    return out


def require_matplotlib():
    """matplotlib.pyplot with a non-interactive backend, or ImportError saying what to install."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(f"plotting needs matplotlib, an optional extra of cudart-kit: {PLOT_EXTRA_HINT}") from exc
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # files only: never open a window or need a display
    import matplotlib.pyplot as plt

    return plt


def draw_gantt(ax, timeline: Timeline, *, title: str | None = None, x_max_ms: float | None = None,
               legend: bool = True) -> None:
    """Draw ``timeline`` on a matplotlib Axes: one row per track (first track on top), bars
    coloured by category, time in milliseconds from the origin."""
    tracks = timeline.tracks
    rows = {t: i for i, t in enumerate(tracks)}
    shift = min([0.0] + [s.start_us for s in timeline.slices])
    per_cat: dict[str, list] = {}
    for s in timeline.slices:
        per_cat.setdefault(s.category, []).append(s)
    for cat, items in per_cat.items():
        color = CATEGORY_COLORS.get(cat, CATEGORY_COLORS["other"])
        for i, s in enumerate(items):
            ax.broken_barh([((s.start_us - shift) / 1e3, max(s.dur_us, 0.0) / 1e3)], (rows[s.track] - 0.4, 0.8),
                           facecolors=color, edgecolor="white", linewidth=0.3, label=cat if i == 0 else None)
    ax.set_yticks(range(len(tracks)))
    ax.set_yticklabels(tracks)
    ax.set_ylim(len(tracks) - 0.5, -0.5)
    ax.set_xlabel("time (ms)")
    if x_max_ms is not None:
        ax.set_xlim(0, x_max_ms)
    else:
        ax.set_xlim(left=0)
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    if legend and per_cat:
        ax.legend(loc="upper right", fontsize=8, ncol=len(per_cat), frameon=False)
