"""Timelines: timed launches and copies (or slices from any recorded data) placed on one time
axis, one track per stream, exported as Chrome trace / Perfetto JSON or drawn as a Gantt chart.

A :class:`~cudart_kit.event.TimingRecord` carries start/stop events on its stream. Elapsed time
between two events is all CUDA offers, so placing slices of several streams on a shared axis
needs a common origin: :meth:`Timeline.mark_origin` records one event and makes the other
streams wait for it, and every start and stop is then read as ``origin.elapsed_ms(event)``.
Nothing here synchronizes except :meth:`Timeline.sync`. Event timing resolution is ~0.5 us.

Read a slice as "from the moment its stream reached the operation to the moment it finished":
an operation that had to wait for a copy engine or for SMs held by another stream shows that
wait inside its slice (events cannot see when an engine actually started; Nsight Systems can).

The package, by concern: :mod:`.slices` (:class:`Slice`, the JSON form of its details),
:mod:`.timeline` (:class:`Timeline`: collecting, resolving on one axis, plain data),
:mod:`.chrome` (Chrome trace / Perfetto documents: build, save, load, validate) and
:mod:`.gantt` (the Gantt drawing; matplotlib is imported only when drawing).
"""

from __future__ import annotations

from .chrome import chrome_trace, load_chrome_trace, save_chrome_trace, validate_chrome_trace
from .gantt import CATEGORY_COLORS, PLOT_EXTRA_HINT, draw_gantt, require_matplotlib, save_figure
from .slices import Slice
from .timeline import Timeline

__all__ = [
    "Slice", "Timeline", "chrome_trace", "save_chrome_trace", "load_chrome_trace", "validate_chrome_trace",
    "draw_gantt", "require_matplotlib", "save_figure", "CATEGORY_COLORS", "PLOT_EXTRA_HINT",
]
