"""Text output of each ``cudart-kit`` command, built from the plain dicts the gatherers return
(:mod:`cudart_kit.query`, :mod:`cudart_kit.bandwidth`, :mod:`cudart_kit.doctor`), so every line
is tested without a GPU. The overlap experiment formats its own table
(:func:`cudart_kit.experiments.overlap.format_table`)."""

from __future__ import annotations

from .bandwidth import (
    BANDWIDTH_CSV_FIELDS, BANDWIDTH_HEADERS, Progress, bandwidth_csv, bandwidth_rows, bandwidth_sweep, device_line,
    print_bandwidth,
)
from .doctor import doctor_rows, doctor_summary, print_doctor
from .info import DEVICE_HEADERS, devices_header, devices_rows, peer_rows, print_devices, print_query, query_sections

__all__ = [
    "DEVICE_HEADERS", "devices_rows", "devices_header", "print_devices", "query_sections", "peer_rows", "print_query",
    "BANDWIDTH_CSV_FIELDS", "BANDWIDTH_HEADERS", "bandwidth_csv", "bandwidth_rows", "bandwidth_sweep",
    "device_line", "print_bandwidth", "Progress", "doctor_rows", "doctor_summary", "print_doctor",
]
