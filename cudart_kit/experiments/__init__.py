"""Experiments built on the kit: measured workloads that explain a performance question.

``overlap``: how copies and kernels overlap across streams (``cudart-kit overlap``).
Importing this package touches no driver; submodules load on first use.
"""

from __future__ import annotations

import importlib

__all__ = ["overlap"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'cudart_kit.experiments' has no attribute {name!r}")
