"""Files of an earlier output that a new one does not replace: old shards, or the other layout beside it.

A sharded output replaced with ``force`` by one with another shard count leaves the old shards the
new index does not name; a single file written where a sharded output was (or the other way round)
leaves the other layout's files beside it. Nothing in the atomic commit touches them (it replaces
only the names it writes). :meth:`EarlierOutput.find` reads what is there *before* the write (the
index it may replace is gone after it); :meth:`EarlierOutput.left_by` names, after the commit, what
is left over, and :func:`remove_replaced` removes the shards the replaced index named.

Only names an index gave are ever offered for removal, and only plain ``*.safetensors`` file names
in the index's own folder that are not a file of the new output nor of the source, and only files
that really were the replaced output's shards: a readable safetensors file whose header holds exactly
the keys the replaced index mapped to it. Any other file the index named (a hand-written index may
name anything) is listed in ``mismatched`` and never removed.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .atomic import _same_file
from ..errors import CheckpointError
from .convert import DEFAULT_NAME
from .formats.safetensors_header import read_header
from .formats.shards import shard_names

INDEX_SUFFIX = ".safetensors.index.json"
_MAX_INDEX_BYTES = 64 * 1024 * 1024  # an index this large is not one mapper-core wrote: leave it alone


@dataclass(frozen=True)
class Leftovers:
    """After a write: ``replaced`` are the shards the replaced index named and the new output does not
    use (``--clean-stale`` removes them); ``mismatched`` are files that index named but that do not hold
    exactly the keys it mapped to them (not its shards, so never removed); ``beside`` are an earlier
    output's files in the other layout (a single file beside a new index, or an index and its shards
    beside a new single file), never removed; ``removed`` is what was removed."""

    replaced: tuple[Path, ...] = ()
    beside: tuple[Path, ...] = ()
    removed: tuple[Path, ...] = ()
    mismatched: tuple[Path, ...] = ()

    def to_dict(self) -> dict[str, list[str]]:
        return {"replaced": [str(p) for p in self.replaced], "beside": [str(p) for p in self.beside],
                "removed": [str(p) for p in self.removed], "mismatched": [str(p) for p in self.mismatched]}


@dataclass(frozen=True)
class EarlierOutput:
    """What the destination's two possible layouts held before the write."""

    single: Path  # the single-file name (DST, a folder's model.safetensors, or an index's stem)
    index: Path  # the index name
    named: tuple[Path, ...]  # the shards the existing index named (plain names, its folder), in its order
    keys: tuple[frozenset[str], ...] = ()  # the keys that index mapped to each of ``named``

    @classmethod
    def find(cls, dst: str | Path) -> "EarlierOutput | None":
        """The layouts at ``dst`` (a file, an index or a folder); None for a name convert refuses."""
        dst = Path(dst)
        if dst.is_dir():
            dst = dst / DEFAULT_NAME
        name = dst.name.lower()
        if name.endswith(INDEX_SUFFIX):
            single, index = dst.with_name(dst.name[:-len(INDEX_SUFFIX)] + ".safetensors"), dst
        elif name.endswith(".safetensors"):
            single, index = dst, shard_names(dst, 1)[1]
        else:
            return None
        named = _named(index)
        return cls(single, index, tuple(named), tuple(named.values()))

    def left_by(self, written: Iterable[str | Path], sources: Sequence[Path] = ()) -> Leftovers:
        """What is left of the earlier output once ``written`` (the new output's files) is in place."""
        written = {os.path.abspath(p) for p in written}

        def stale(paths: Iterable[Path]) -> tuple[Path, ...]:
            return tuple(p for p in paths if os.path.abspath(p) not in written and p.is_file()
                         and not any(_same_file(p, s) for s in sources))

        if os.path.abspath(self.index) in written:  # a sharded output: the index was written (over an earlier one, if any)
            keys = dict(zip(self.named, self.keys))
            left = stale(self.named)
            shards = tuple(p for p in left if p in keys and _holds_exactly(p, keys[p]))
            return Leftovers(replaced=shards, beside=stale([self.single]),
                             mismatched=tuple(p for p in left if p not in shards))
        if os.path.abspath(self.single) in written and self.index.is_file():  # a single file beside an earlier index
            return Leftovers(beside=stale([self.index, *_named(self.index)]))
        return Leftovers()


def remove_replaced(leftovers: Leftovers) -> Leftovers:
    """Remove ``leftovers.replaced`` (call only after the new output is committed); the rest stays."""
    removed = []
    for path in leftovers.replaced:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return Leftovers(replaced=(), beside=leftovers.beside, removed=tuple(removed), mismatched=leftovers.mismatched)


def _named(index: Path) -> dict[Path, frozenset[str]]:
    """The shard files an index names (plain ``*.safetensors`` names in its folder, in its order) and
    the keys it maps to each; none if unreadable."""
    try:
        if not index.is_file() or index.stat().st_size > _MAX_INDEX_BYTES:
            return {}
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
    except (OSError, ValueError, AttributeError):
        return {}
    if not isinstance(weight_map, dict):
        return {}
    keys: dict[str, set[str]] = {}
    for key, name in weight_map.items():
        if isinstance(name, str):
            keys.setdefault(name, set()).add(key)
    return {index.parent / n: frozenset(k) for n, k in keys.items()
            if n == Path(n).name and n not in (".", "..") and n.lower().endswith(".safetensors")}


def _holds_exactly(path: Path, keys: frozenset[str]) -> bool:
    """Whether ``path`` is a readable safetensors file whose header stores exactly ``keys``."""
    try:
        return set(read_header(path).specs) == keys
    except (CheckpointError, OSError):
        return False
