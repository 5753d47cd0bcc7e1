"""Getting every process of a job onto one communicator: the unique id (128 bytes made by one
rank, carried to the others by whatever launcher there is), the launcher's environment
(torchrun's RANK / WORLD_SIZE / LOCAL_RANK, Open MPI, MPICH/PMI, Slurm) and a shared-file
exchange of the id for launchers that carry nothing (torchrun without torch.distributed).

    env = launch_env()                                     # None when no launcher set it
    uid = exchange_unique_id("/tmp/job42.uid", rank=env.rank)
    comm = Communicator.init(env.world_size, env.rank, uid, device=env.device)

With mpi4py: ``uid = MPI.COMM_WORLD.bcast(unique_id() if rank == 0 else None, root=0)`` (a
UniqueId pickles as its bytes). With multiprocessing: make it in the parent and pass
``bytes(uid)`` to each child (docs/multigpu.md has the example).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ArgumentError
from . import backend
from .errors import LaunchEnvError, translate

__all__ = ["UniqueId", "unique_id", "LaunchEnv", "launch_env", "exchange_unique_id", "LAUNCHERS"]


class UniqueId:
    """An NCCL unique id (ncclUniqueId, 128 bytes): every rank of one communicator passes the same
    one to :meth:`Communicator.init`. ``bytes(uid)``, :meth:`hex`, pickling (as its bytes: the
    receiver needs cudart_kit, not nccl4py, to unpickle) carry it; :meth:`from_bytes` and
    :meth:`fromhex` rebuild it. It names a listening socket in the process that made it: that
    process must live until every rank has initialised."""

    SIZE = 128
    __slots__ = ("_data",)

    def __init__(self, data):
        raw = None
        if not isinstance(data, (str, int)) and data is not None:  # bytes(5) would be five zeros
            try:
                raw = bytes(data)  # bytes, bytearray, memoryview, nccl4py's UniqueId (__bytes__)
            except TypeError:
                raw = None
        if raw is None:
            raise ArgumentError(f"UniqueId: expected {self.SIZE} bytes (an ncclUniqueId), got {type(data).__name__}")
        if len(raw) != self.SIZE:
            raise ArgumentError(f"UniqueId: expected {self.SIZE} bytes (an ncclUniqueId), got {len(raw)}")
        self._data = raw

    @classmethod
    def from_bytes(cls, data) -> "UniqueId":
        return cls(data)

    @classmethod
    def fromhex(cls, text: str) -> "UniqueId":
        try:
            return cls(bytes.fromhex(text.strip()))
        except ValueError:
            raise ArgumentError(f"UniqueId.fromhex: not {cls.SIZE} bytes of hex: {text[:20]!r}...") from None

    def hex(self) -> str:
        return self._data.hex()

    def __bytes__(self) -> bytes:
        return self._data

    def __eq__(self, other) -> bool:
        return isinstance(other, UniqueId) and other._data == self._data

    def __hash__(self) -> int:
        return hash(self._data)

    def __reduce__(self):
        return (UniqueId, (self._data,))

    def __repr__(self) -> str:
        return f"<cudart_kit.collectives.UniqueId {self._data[:8].hex()}...{self._data[-8:].hex()}>"


def unique_id() -> UniqueId:
    """A new unique id (ncclGetUniqueId). Call it on one rank (or in the parent of the ranks) and
    send it to the others. Raises MissingExtraError without nccl4py, NcclError if NCCL fails
    (e.g. no network interface for its bootstrap: set NCCL_SOCKET_IFNAME)."""
    core = backend.load()
    try:
        return UniqueId(bytes(core.get_unique_id()))
    except Exception as exc:
        raise translate(exc, "ncclGetUniqueId") from exc


# launcher -> (rank, world size, local rank, local world size) variable names
LAUNCHERS = {
    "torchrun": ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"),
    "openmpi": ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                "OMPI_COMM_WORLD_LOCAL_SIZE"),
    "pmi": ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
    "slurm": ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"),
}


@dataclass(frozen=True)
class LaunchEnv:
    """Where this process sits in the job: ``rank`` of ``world_size``, ``local_rank`` of
    ``local_world_size`` on this node (None when the launcher does not say), and ``launcher``
    (a key of LAUNCHERS). ``device`` is the conventional GPU: the local rank (with
    CUDA_VISIBLE_DEVICES set per process by the launcher, pass 0 instead)."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int | None
    launcher: str

    @property
    def device(self) -> int:
        return self.local_rank


def _int(env, name: str, launcher: str) -> int | None:
    text = env.get(name)
    if text is None or text.strip() == "":
        return None
    try:
        return int(text.split("(")[0])  # Slurm writes SLURM_NTASKS_PER_NODE as e.g. "4(x2)"
    except ValueError:
        raise LaunchEnvError(f"{name}={text!r} (set by {launcher}) is not a whole number") from None


def launch_env(environ=None) -> LaunchEnv | None:
    """The launcher's view of this process, from ``environ`` (default os.environ): torchrun's
    variables first, then Open MPI's, MPICH/PMI's, Slurm's. None when none of them is set (a
    plain ``python script.py``). Raises LaunchEnvError for a rank without a world size (or the
    reverse), values that are not numbers, or a rank outside the world."""
    env = os.environ if environ is None else environ
    for launcher, (r_name, w_name, lr_name, lw_name) in LAUNCHERS.items():
        rank, world = _int(env, r_name, launcher), _int(env, w_name, launcher)
        if rank is None and world is None:
            continue
        if rank is None or world is None:
            have, missing = (r_name, w_name) if rank is not None else (w_name, r_name)
            raise LaunchEnvError(f"{have} is set but {missing} is not: the {launcher} environment is incomplete")
        if world < 1 or not 0 <= rank < world:
            raise LaunchEnvError(f"{r_name}={rank} does not fit {w_name}={world}")
        local = _int(env, lr_name, launcher)
        local_world = _int(env, lw_name, launcher)
        if local is None:
            local = rank if world == 1 or local_world is None else rank % local_world
        if local < 0:
            raise LaunchEnvError(f"{lr_name}={local} is negative")
        return LaunchEnv(rank, world, local, local_world, launcher)
    return None


def exchange_unique_id(path, *, rank: int, timeout_s: float = 120.0, poll_s: float = 0.05,
                       make=unique_id) -> UniqueId:
    """The job's unique id through a file every rank can read (one node, or a shared file
    system): rank 0 makes one and writes it atomically (``make`` is :func:`unique_id`), the
    others wait for the file (up to ``timeout_s``) and read it. Use a path that is new for each
    job (e.g. with the job id in it): a file left by an earlier run would be read as is.
    Raises LaunchEnvError when the file does not appear in time or is not an id."""
    p = Path(path)
    if rank == 0:
        uid = make()
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        tmp.write_bytes(bytes(uid))
        os.replace(tmp, p)  # readers see the whole id or no file
        return uid
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            data = None
        if data is not None and len(data) == UniqueId.SIZE:
            return UniqueId(data)
        if data is not None:
            raise LaunchEnvError(f"{p} holds {len(data)} bytes, not an NCCL unique id ({UniqueId.SIZE} bytes)")
        if time.monotonic() > deadline:
            raise LaunchEnvError(f"rank {rank}: {p} did not appear within {timeout_s:g} s (rank 0 writes it: is "
                                 "rank 0 running, and is the path on a file system every rank sees?)")
        time.sleep(poll_s)
