"""A slice of a timeline: one operation on one track, and the plain-JSON form of its details."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Slice:
    """One operation on one track: ``start_us`` from the timeline's origin, ``dur_us`` long.

    ``category`` groups slices for colours and the trace's ``cat`` field (H2D, kernel, D2H...);
    ``seq`` is the order in which the slice was added (the issue order, for recorded work);
    ``args`` holds JSON-serializable details (bytes, chunk, grid...)."""

    track: str
    name: str
    start_us: float
    dur_us: float
    category: str = "other"
    args: dict = field(default_factory=dict)
    seq: int = 0

    @property
    def end_us(self) -> float:
        return self.start_us + self.dur_us

    def to_list(self) -> list:
        """Compact JSON form: [track, name, start_us, dur_us, category, args]."""
        return [self.track, self.name, round(self.start_us, 4), round(self.dur_us, 4), self.category,
                _jsonable(self.args)]


def _jsonable(value):
    """Plain JSON types: tuples become lists, numpy scalars Python numbers, the rest str()."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return _jsonable(item())
        except (TypeError, ValueError):
            pass
    return str(value)
