"""The communicators of one process made together (``Communicator.init_all`` / ``init_local``): a
:class:`Clique` (a list of them, closed or aborted at once) and the :class:`Team` their NCCL
objects share, torn down when the last member is closed."""

from __future__ import annotations

from . import backend
from .errors import translate

__all__ = ["Clique", "Team"]


class Team:
    """The shared end of the communicators made together in one process: NCCL finalizes host-local ranks
    together (ncclCommFinalize of each inside one group, or the first one waits for the others
    forever), so the NCCL objects are destroyed when the last member is closed."""

    __slots__ = ("ncs", "members", "open", "done")

    def __init__(self, ncs: list):
        self.ncs, self.members, self.open, self.done = list(ncs), [], len(ncs), False

    def release(self) -> None:
        self.open -= 1
        if self.open > 0 or self.done:
            return
        self.done = True
        core = backend.load()
        first = None
        try:
            core.group_start()
            try:
                for nc in self.ncs:
                    nc.finalize()
            finally:
                core.group_end()
        except Exception as exc:
            first = translate(exc, "ncclCommFinalize")
        for nc in self.ncs:
            try:
                nc.destroy()
            except Exception as exc:
                first = first or translate(exc, "ncclCommDestroy")
        if first is not None:
            raise first

    def abort(self) -> None:
        if self.done:  # destroyed or aborted already
            return
        self.done = True
        for comm in self.members:
            comm._state = "aborted"
        first = None
        for nc in self.ncs:
            try:
                nc.abort()
            except Exception as exc:
                first = first or translate(exc, "ncclCommAbort")
        if first is not None:
            raise first


class Clique(list):
    """The communicators ``Communicator.init_all`` (rank i on the i-th device) or ``init_local``
    made in this process, one per device: a list, plus :meth:`close` / :meth:`abort` / ``with`` for all of them at once
    (NCCL tears host-local ranks down together)."""

    def close(self) -> None:
        first = None
        for comm in self:
            try:
                comm.close()
            except Exception as exc:  # close the others anyway
                first = first or exc
        if first is not None:
            raise first

    def abort(self) -> None:
        for comm in self:
            comm.abort()

    def __enter__(self) -> "Clique":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
