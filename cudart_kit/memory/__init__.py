"""Typed arrays over device (stream-ordered pool), pinned host, managed and foreign memory:
zero-copy views, allocation, foreign import, and copies between any layouts.

Every allocation, copy and free is ordered on an explicit stream. An array used on a stream
other than its allocation stream is freed only after that stream's work queued so far; a view
keeps its base alive and shares that ordering.

Modules: ``layout`` (index arithmetic, no driver), ``array`` (Array and its views), ``alloc``
(allocation, frees, census), ``foreign`` (CAI / DLPack import), ``strided`` (launches of the
strided kernels), ``transfer`` (copy, fill, memset, to_device), ``ipc`` (arrays shared with
other processes), ``peer`` (copies between devices).
"""

from .layout import MAX_NBYTES
from .array import KINDS, Array, bfloat16, check_open, closed_error, normalize_dtype
from .alloc import census, empty, empty_like
from .foreign import asarray, coerce
from . import transfer as _transfer
from .transfer import copy, fill, memset, to_device, zeros

from . import ipc
from .ipc import empty_shareable, is_shareable
from .peer import copy_peer

Array._transfer = _transfer  # the one wiring point: Array's copy/fill methods run transfer

__all__ = [
    "Array", "empty", "empty_like", "zeros", "to_device", "asarray", "copy", "memset",
    "KINDS", "census", "bfloat16", "check_open", "MAX_NBYTES", "empty_shareable", "is_shareable", "ipc", "copy_peer",
]
