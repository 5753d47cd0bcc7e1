"""``CUDA_VISIBLE_DEVICES`` in the ``cudart-kit`` command: the CLI's one place for it. The
top-level ``--help`` says what it does (:data:`HELP`); the error line of a no-device failure
gets the kit's explanation (:func:`explain`, which is :func:`cudart_kit.errors.visible_devices_hint`,
the kit's one explanation); device headers and doctor's verdict name its value (:func:`note`)."""

from __future__ import annotations

import os

from ..errors import VISIBLE_DEVICES_ENV as ENV
from ..errors import visible_devices_hint

__all__ = ["ENV", "HELP", "value", "note", "explain"]

HELP = (f"Every command honours {ENV} like every CUDA program: device indices are those of the visible "
        "devices, in the driver's order; an empty value hides every device.")


def value() -> str | None:
    """The variable's value in this process's environment (None when unset; "" is a value)."""
    return os.environ.get(ENV)


def note(visible: str | None) -> str:
    """`` (CUDA_VISIBLE_DEVICES='0,1')`` to append to a line, or "" when the variable is unset."""
    return "" if visible is None else f" ({ENV}={visible!r})"


def explain(message: str) -> str:
    """``message`` with the kit's explanation of the variable's current value appended, unless
    the message already carries it (it is never said twice)."""
    return visible_devices_hint(message)
