"""Groups of NCCL calls: :func:`group` batches the calls of a block into one launch
(ncclGroupStart / ncclGroupEnd); :func:`in_group` says whether this thread is inside one."""

from __future__ import annotations

import contextlib
import threading

from . import backend
from .errors import translate

__all__ = ["group", "in_group"]

_tls = threading.local()  # .depth: how many group() blocks this thread is inside


def in_group() -> bool:
    """Whether this thread is inside a :func:`group` block."""
    return getattr(_tls, "depth", 0) > 0


@contextlib.contextmanager
def group():
    """Batch the NCCL calls of the block into one launch (ncclGroupStart / ncclGroupEnd): needed
    when one thread drives several ranks (a :meth:`Communicator.init_all` set: call each rank's
    collective inside one group) and for send/recv pairs that must progress together (an
    exchange, a send to oneself). Groups nest. The operations are queued at the end of the
    outermost block, on the streams given to each call: other work queued on those streams
    inside the block (a kit op, a copy, the free of a closed array) runs *before* them, so
    queue what must follow a collective after the block, and close its arrays after it too.
    An exception inside the block still ends the group (the calls queued before it are
    launched) and propagates."""
    core = backend.load()
    try:
        core.group_start()
    except Exception as exc:
        raise translate(exc, "ncclGroupStart") from exc
    _tls.depth = getattr(_tls, "depth", 0) + 1
    ok = False
    try:
        yield
        ok = True
    finally:
        _tls.depth -= 1
        try:
            core.group_end()
        except Exception as exc:
            if ok:  # else the block's own exception is the one to see
                raise translate(exc, "ncclGroupEnd") from exc
