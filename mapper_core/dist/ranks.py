"""torch.distributed ranks as the executor of a sharded conversion (see mapper_core.io.parallel.ForkWorkers).

A rank learns its number from torchrun's environment and starts hashing its share of the source
(:meth:`TorchRanks.prepare`) before it imports torch and joins the process group, which takes a
second or two per rank: the hash overlaps that start-up and then the copy. Once a rank's share is
hashed it offers the digests to the others with one asynchronous ``all_reduce`` and keeps writing;
each shard is put in place as soon as every rank's digests have arrived.
"""
from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import BadInputError, MapperError
from ..io.parallel import Share, ShardJob, discard_parked, share_of_sources, write_share
from ..io.provenance import Hasher

TIMEOUT_ENV = "MAPPER_DIST_TIMEOUT"  # seconds a rank waits for the others at a collective
DEFAULT_TIMEOUT = 6 * 3600  # one rank may write for hours before the next collective
STOPPED = {130: "interrupted", 143: "terminated"}  # the CLI's exit codes for Ctrl-C and SIGTERM


class _Secondary(BadInputError):
    """This rank stopped because another one failed: the other's message is the one to show."""


class _Failed:
    """Rank 0's command failed before the ranks met: what it broadcasts where its first ``agree`` would be."""

    def __init__(self, message: str, code: int):
        self.message, self.code = message, code


class TorchRanks:
    """This process's rank in a gloo process group, joined at the first collective (from torchrun's
    environment: ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ...)."""

    def __init__(self) -> None:
        dist = sys.modules.get("torch.distributed")
        if dist is not None and dist.is_available() and dist.is_initialized():  # a group the caller made
            self.rank, self.workers = dist.get_rank(), dist.get_world_size()
        else:
            try:
                self.rank, self.workers = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
            except (KeyError, ValueError):
                raise BadInputError("not started by torchrun (RANK and WORLD_SIZE are not set): run "
                                    "torchrun --nproc-per-node N -m mapper_core.dist convert ...") from None
        self.leader = self.rank == 0
        self._dist: Any = None
        self._owns_group = False
        self._hasher: Hasher | None = None
        self._hashed: list[Path] = []
        self.met = False  # whether this rank has taken part in a collective
        self.leader_failed = False  # rank 0 broadcast its failure (_Failed): it waits at a barrier for the others
        self._shared: set[str] = set()  # error messages every rank raised alike (rank 0 prints them)

    def _group(self) -> Any:
        if self._dist is None:
            import torch.distributed as dist

            if not dist.is_initialized():
                seconds = int(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
                dist.init_process_group("gloo", timeout=timedelta(seconds=seconds))
                self._owns_group = True
            self._dist = dist
        return self._dist

    def prepare(self, hashed: Sequence[Path]) -> None:
        """Start hashing this rank's share of the source files (balanced by bytes) on a thread."""
        self._hashed = list(hashed)
        if self._hashed:
            self._hasher = Hasher(share_of_sources(self._hashed, self.workers)[self.rank])
            self._hasher.start()

    def agree(self, value: object) -> object:
        """Rank 0's value, on every rank; raised on the others when rank 0 failed before it got here."""
        box = [value]
        self.met = True
        self._group().broadcast_object_list(box, src=0)
        got = box[0]
        if isinstance(got, _Failed) and not self.leader:
            self.leader_failed = True
            err = _Secondary(f"rank 0 failed: {got.message}")
            err.exit_code = got.code
            self._shared.add(str(err))
            raise err
        if not self.leader:  # the leader's refusal rides in the value: the others raise its text too
            self._shared.update(_texts(got))
        return got

    def run(self, assignment: Sequence[Sequence[int]], job: ShardJob, progress: Callable[[int], None] | None
            ) -> tuple[Share, dict[str, str]]:
        """This rank's shards; then every rank learns whether all succeeded (an error anywhere is raised
        everywhere). Returns what the shards of all ranks came to and the final metadata."""
        done, share, problem = 0, Share(), None
        digests = _Digests(self, job)

        def step(n: int, key: str) -> None:
            nonlocal done
            done += n
            if progress:
                progress(done)
        try:
            share = write_share(job, assignment[self.rank] if self.rank < len(assignment) else (), step,
                                digests.final)
            final = digests.final(True)  # every rank takes part in the exchange, shards or not
        except MapperError as exc:
            problem = (isinstance(exc, _Secondary), str(exc), exc.exit_code)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""  # ENOSPC from a write names no file
            problem = (False, f"writing failed: {exc.strerror or exc}{where}", 2)
        if problem is not None:
            digests.give_up()
        everyone: list = [None] * self.workers
        self.met = True
        self._group().all_gather_object(everyone, (share, problem))
        failed = sorted((p[0], r, p[1], p[2]) for r, (_, p) in enumerate(everyone) if p is not None)
        if failed:
            discard_parked(share.parked)  # each rank its own: the earlier output stays as it was
            _, rank, message, code = failed[0]  # a rank's own error before one another rank caused
            err = BadInputError(f"rank {rank}: {message}; the shards finished so far are kept in the manifest: "
                                "rerun the same command to write only the rest")
            err.exit_code = code
            self._shared.add(str(err))
            raise err
        total = Share()
        for s, _ in everyone:
            total = total.add(s)
        return total, final

    def barrier(self) -> None:
        self.met = True
        self._group().barrier()

    def failed(self, messages: Sequence[str], code: int) -> str | None:
        """After this rank's command failed with ``messages`` and exit ``code``: the line this rank
        prints, or None when it prints nothing more (rank 0 has printed its own error).

        Every rank reaches the same errors from the same inputs, so rank 0 alone prints them. An error
        the ranks raised together (one rank's failure while writing, rank 0's refusal) every rank
        knows to be rank 0's too. One raised before the ranks met is compared with rank 0's: rank 0
        broadcasts its failure where its first ``agree`` would be, and a rank whose own error
        differs prints it. Collectives stay matched: a rank that met the others never starts one."""
        if code in STOPPED:  # a signal: torchrun gives it to every rank, and starting a collective could hang
            return None if self.leader else f"rank {self.rank}: stopped ({STOPPED[code]})"
        if self.leader:
            if not self.met:
                self.agree(_Failed(messages[-1] if messages else "", code))
                self.barrier()  # the others print before rank 0's exit makes torchrun stop them
            return None
        said = messages[-1] if messages else ""
        if self.met:
            if self.leader_failed:
                self.barrier()
            if said in self._shared or self.leader_failed:
                return f"rank {self.rank}: stopped (see rank 0's error)"
            return f"rank {self.rank}: {said}"
        try:
            self.agree(None)  # receives rank 0's value: its failure, or its plan if it went on
        except _Secondary as exc:
            self.barrier()
            if str(exc) == f"rank 0 failed: {said}":
                return f"rank {self.rank}: stopped (see rank 0's error)"
        return f"rank {self.rank}: {said}"

    def close(self) -> None:
        if self._hasher is not None:
            self._hasher.cancel()
        if self._owns_group and self._dist is not None and self._dist.is_initialized():
            self._dist.destroy_process_group()


def _texts(value: object, depth: int = 2) -> set[str]:
    """The strings in ``value`` and the tuples in it (``agree``'s payload: the plan and the leader's refusal)."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, tuple) and depth:
        return set().union(*(_texts(v, depth - 1) for v in value))
    return set()


class _Digests:
    """The source digests, gathered from every rank by one asynchronous all_reduce: each rank fills the
    rows of the files it hashed (32 digest bytes and a 1), the others are zeros, so the sum is the table."""

    def __init__(self, ranks: TorchRanks, job: ShardJob):
        self.ranks, self.job = ranks, job
        self.work: Any = None
        self.table: Any = None
        self._final: dict[str, str] | None = None

    def _offer(self, digests: dict[Path, str]) -> None:
        import torch

        hashed = self.ranks._hashed
        self.table = torch.zeros((len(hashed), 33), dtype=torch.int64)
        for k, p in enumerate(hashed):
            if p in digests:
                self.table[k, :32] = torch.tensor(list(bytes.fromhex(digests[p])), dtype=torch.int64)
                self.table[k, 32] = 1
        self.work = self.ranks._group().all_reduce(self.table, async_op=True)

    def final(self, block: bool) -> dict[str, str] | None:
        if not self.ranks._hashed:
            return self.job.meta
        if self._final is not None:
            return self._final
        hasher = self.ranks._hasher
        if self.work is None:
            if not block and hasher is not None and hasher.is_alive():
                return None
            try:
                mine = hasher.result() if hasher is not None else {}
            except MapperError:
                self._offer({})  # the others must not wait for this rank's rows
                raise
            self._offer(mine)
        if not block and not self.work.is_completed():
            return None
        self.work.wait()
        rows = self.table.tolist()
        missing = [p for p, row in zip(self.ranks._hashed, rows) if row[32] != 1]
        if missing:
            raise _Secondary(f"the source hash did not finish on another rank ({missing[0]})")
        digests = {p: bytes(row[:32]).hex() for p, row in zip(self.ranks._hashed, rows)}
        self._final = self.job.final_meta(digests)
        return self._final

    def give_up(self) -> None:
        """After an error: still take part in the exchange (with no rows), so no rank waits forever."""
        if not self.ranks._hashed:
            return
        if self.work is None:
            if self.ranks._hasher is not None:
                self.ranks._hasher.cancel()
            self._offer({})
        self.work.wait()
