"""The source digests of a ``--workers`` run, shared with the forked workers (:mod:`.parallel`).

The parent hashes the source while the workers write; each worker asks, after each shard,
whether the final metadata (with the digests) is known yet, and blocks for it at the end.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..errors import BadInputError, MapperError
from .provenance import Hasher, final_metadata


class HashUnavailable(BadInputError):
    """A worker could not finish because the source hash did not: the cause is reported elsewhere."""


class SharedDigests:
    """The source digests, in memory shared with the forked workers: the parent fills them in once the
    source is hashed; a worker asks for the final metadata (``final``) after each shard."""

    def __init__(self, ctx, meta: dict[str, str], hashed: Sequence[Path]):
        """``meta``: the output's metadata with a placeholder where each digest of ``hashed`` goes."""
        self.meta, self.hashed = meta, list(hashed)
        self.table = ctx.RawArray("B", 32 * len(self.hashed))
        self.state = ctx.Value("i", 0)  # 0 hashing, 1 done, 2 failed
        self.ready = ctx.Event()
        self.parent = os.getpid()
        self._final: dict[str, str] | None = None

    def publish(self, hashers: list[Hasher]) -> MapperError | None:
        """Hand the finished hashers' digests to the workers (or tell them the hash failed); returns the
        hash's error."""
        error = None
        try:
            found = {p: d for h in hashers for p, d in h.result().items()}
            for k, p in enumerate(self.hashed):
                self.table[32 * k:32 * k + 32] = bytes.fromhex(found[p])
            self.state.value = 1
        except MapperError as exc:
            error = exc
            self.state.value = 2
        self.ready.set()
        return error

    def final(self, block: bool) -> dict[str, str] | None:
        if not self.hashed:
            return self.meta
        if self._final is None:
            while not self.ready.wait(1.0 if block else 0):
                if not block:
                    return None
                if os.getppid() != self.parent and os.getpid() != self.parent:
                    raise HashUnavailable("the main process is gone; nothing more is put in place")
            if self.state.value != 1:
                raise HashUnavailable("the source hash did not finish (see the main process's message)")
            table = bytes(self.table)
            digests = {p: table[32 * k:32 * k + 32].hex() for k, p in enumerate(self.hashed)}
            self._final = final_metadata(self.meta, digests, self.hashed)
        return self._final
