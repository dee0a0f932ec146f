"""torch.distributed ranks as the executor of a sharded conversion (see mapper_core.io.parallel.ForkWorkers)."""
from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Callable, Sequence

from ..errors import BadInputError, MapperError

TIMEOUT_ENV = "MAPPER_DIST_TIMEOUT"  # seconds a rank waits for the others at a collective
DEFAULT_TIMEOUT = 6 * 3600  # one rank may write for hours before the next collective


class TorchRanks:
    """This process's rank in a gloo process group (started from torchrun's environment)."""

    def __init__(self) -> None:
        import torch.distributed as dist

        self._dist = dist
        self._owns_group = not dist.is_initialized()
        if self._owns_group:
            seconds = int(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
            dist.init_process_group("gloo", timeout=timedelta(seconds=seconds))
        self.rank = dist.get_rank()
        self.workers = dist.get_world_size()
        self.leader = self.rank == 0

    def hash(self, sources: Sequence[Path], waiting: Callable[[int, int], None] | None) -> dict[Path, str]:
        """Each rank hashes its share of the source files; every rank gets all the digests."""
        from ..io.provenance import Hasher

        mine = list(sources)[self.rank::self.workers]
        hasher = Hasher(mine)
        hasher.start()
        digests = {str(p): d for p, d in hasher.result(waiting).items()}
        everyone: list = [None] * self.workers
        self._dist.all_gather_object(everyone, digests)
        return {Path(p): d for part in everyone for p, d in part.items()}

    def agree(self, value: object) -> object:
        """Rank 0's value, on every rank."""
        box = [value]
        self._dist.broadcast_object_list(box, src=0)
        return box[0]

    def run(self, assignment: Sequence[Sequence[int]], work: Callable[[int, Callable[[int, str], None]], int],
            progress: Callable[[int], None] | None) -> int:
        """This rank's shards; then every rank learns whether all succeeded (an error anywhere is raised everywhere)."""
        done, checked, problem = 0, 0, None

        def step(n: int, key: str) -> None:
            nonlocal done
            done += n
            if progress:
                progress(done)
        try:
            for i in assignment[self.rank] if self.rank < len(assignment) else ():
                checked += work(i, step)
        except MapperError as exc:
            problem = (str(exc), exc.exit_code)
        except OSError as exc:
            problem = (f"writing failed: {exc.strerror or exc} ({exc.filename})", 2)
        everyone: list = [None] * self.workers
        self._dist.all_gather_object(everyone, (checked, problem))
        failed = [(r, p) for r, (_, p) in enumerate(everyone) if p is not None]
        if failed:
            rank, (message, code) = failed[0]
            err = BadInputError(f"rank {rank}: {message}; the shards finished so far are kept in the manifest: "
                                "rerun the same command to write only the rest")
            err.exit_code = code
            raise err
        return sum(c for c, _ in everyone)

    def barrier(self) -> None:
        self._dist.barrier()

    def close(self) -> None:
        if self._owns_group and self._dist.is_initialized():
            self._dist.destroy_process_group()
