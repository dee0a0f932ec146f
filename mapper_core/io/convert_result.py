"""What a conversion reports: its result and the callbacks it reports progress through.

Shared by every way a conversion runs (one process, DCP output, ``--workers``), so those modules
need not import ``convert`` itself.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

ProgressCallback = Callable[[int, int, str], None]  # (bytes done, bytes total, current key)
PhaseCallback = Callable[[str, int], None]  # (phase: "writing" | "hashing" | "verifying", bytes in it)


@dataclass(frozen=True)
class ConvertResult:
    """What a conversion wrote."""

    source: str
    destination: str  # the file to open: the single file, or the index of a sharded output
    paths: tuple[str, ...]  # every file written: shards first, then the index
    tensors: int  # tensors stored
    aliases: int  # keys recorded as aliases of a stored tensor (not stored twice)
    left_behind: int  # source keys not written (skipped, unmatched, shape-skipped)
    tensor_bytes: int
    file_bytes: int
    # "byte-copy" (file to file), "tensor" (through memory), "byte-copy+tensor"; "clone" and
    # "clone+tensor" where the filesystem shared the source's blocks instead (io/clone.py)
    method: str
    source_sha256: str | None
    rules: str | None
    rules_sha256: str | None
    checked: int | None  # tensors verified bit for bit; None without verify
    # temporaries of killed runs found beside the output (atomic.stale_temps), and whether they were removed
    stale_temps: tuple[str, ...] = ()
    stale_removed: bool = False
    cloned_bytes: int = 0  # bytes shared with the source by the filesystem instead of copied
    clone_refused: str | None = None  # why the filesystem would not clone, when it said so
    # the source's non-tensor items (a step count, optimizer settings): those a DCP output carried over as
    # they are, and those not written anywhere (neither carried nor recorded in metadata 'mapper.extra')
    non_tensors_carried: tuple[str, ...] = ()
    non_tensors_left_behind: tuple[str, ...] = ()
    # a DCP folder replaced with force: the earlier checkpoint's data files its .metadata named and the
    # new one does not use (say __1_0.distcp of a 2-rank save), removed once the new one was in place
    earlier_removed: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["paths"] = list(self.paths)
        out["stale_temps"] = list(self.stale_temps)
        out["non_tensors_carried"] = list(self.non_tensors_carried)
        out["non_tensors_left_behind"] = list(self.non_tensors_left_behind)
        out["earlier_removed"] = list(self.earlier_removed)
        return out


def cloned_method(method: str, cloned: int) -> str:
    """``method`` as the result names it once ``cloned`` bytes were shared instead of copied."""
    if not cloned:
        return method
    return "clone" if method == "byte-copy" else "clone+tensor"


def counting(progress: ProgressCallback | None, total: int) -> Callable[[int, str], None]:
    """A ``step(nbytes, key)`` that adds up the bytes and reports (done, total, key) to ``progress``."""
    done = 0

    def step(n: int, key: str) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, total, key)
    return step
