"""Collectives between GPUs through NCCL (nccl4py, the optional extra ``nccl``): a
:class:`Communicator` per rank, all_reduce / all_gather / reduce_scatter / broadcast and
send / recv on kit arrays, each queued on an explicit ``stream=``.

    from cudart_kit import collectives as cc
    comms = cc.Communicator.init_all([0, 1])        # one process, two GPUs: ranks 0 and 1
    with cc.group():                                # one thread driving both ranks
        for comm, x, s in zip(comms, grads, streams):
            comm.all_reduce(x, op="avg", stream=s)  # in place
    comms.close()

One process per GPU: rank 0 makes :func:`unique_id`, the launcher carries its bytes to the
other ranks, every rank calls ``Communicator.init(nranks, rank, uid, device=...)``
(``Communicator.init_local`` for several GPUs per process). :func:`launch_env` reads torchrun
/ MPI / Slurm variables; :func:`exchange_unique_id` shares the id through a file.

``cudart_kit.collectives.bench`` is an nccl-tests style benchmark (``cudart-kit collectives``).
Importing this package needs neither nccl4py nor a driver; the first call that needs NCCL
raises MissingExtraError: ``pip install "cudart-kit[nccl]"``.
"""

from __future__ import annotations

from .backend import DTYPE_NAMES, NCCL_DTYPES, REDOPS, available, versions
from .clique import Clique
from .communicator import Communicator
from .errors import NCCL_INSTALL, LaunchEnvError, MissingExtraError, NcclError, RankError
from .group import group, in_group
from .launch import LaunchEnv, UniqueId, exchange_unique_id, launch_env, unique_id

__all__ = [
    "Communicator", "Clique", "group", "in_group", "UniqueId", "unique_id", "LaunchEnv", "launch_env",
    "exchange_unique_id", "available", "versions", "NCCL_DTYPES", "REDOPS", "DTYPE_NAMES",
    "MissingExtraError", "NcclError", "RankError", "LaunchEnvError", "NCCL_INSTALL",
]
