"""What the writer is given: :class:`Entry` per tensor, or :class:`EntryColumns` for a million of them.

An :class:`Entry` is one tensor to write: its key, its spec and where its bytes come from. A
conversion that copies one safetensors file's byte ranges has its entries as columns instead
(keys, specs, start and end offsets in one file): the order, the header, the copy runs and
the shards are worked out on the columns, without an object per tensor, and an ``Entry`` is
made only when one is asked for (``columns[i]``, iteration). The ``*_of`` helpers give a column
of either kind.
"""
from __future__ import annotations

from itertools import repeat
from operator import attrgetter
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence, overload

from ...specs import TensorSpec
from .base import FileRange


class Entry(NamedTuple):
    """One tensor to write: its key, its spec, where its bytes come from (a :class:`FileRange`,
    or a callable returning a torch tensor, called once when the tensor is written)."""

    key: str
    spec: TensorSpec
    data: Any


KEY, SPEC, DATA = attrgetter("key"), attrgetter("spec"), attrgetter("data")
_PATH, _START, _END = attrgetter("path"), attrgetter("start"), attrgetter("end")


class EntryColumns(Sequence[Entry]):
    """Entries whose bytes are ranges of one file, kept as parallel columns: entry ``i`` is
    ``Entry(keys[i], specs[i], FileRange(path, starts[i], ends[i]))``, made when asked for.

    ``rendered``, when given, returns these entries' header JSON exactly as the writer would
    render them with data offsets from 0 (``"k":{..},"k2":{..}``), or None when it cannot: a
    whole safetensors file in its own order, whose checked header holds that text. Any other
    selection of the entries drops it.
    """

    __slots__ = ("keys", "specs", "path", "starts", "ends", "rendered", "_sizes")

    def __init__(self, keys: list[str], specs: list[TensorSpec], path: Path, starts: list[int], ends: list[int],
                 rendered: Callable[[], bytes | memoryview | None] | None = None):
        if not len(keys) == len(specs) == len(starts) == len(ends):
            raise ValueError("EntryColumns: the columns must have one value per entry each")
        self.keys, self.specs, self.path, self.starts, self.ends = keys, specs, path, starts, ends
        self.rendered = rendered
        self._sizes: list[int] | None = None

    @property
    def sizes(self) -> list[int]:
        """Each entry's spec's ``nbytes`` (computed once)."""
        if self._sizes is None:
            self._sizes = sizes_of(self.specs)
        return self._sizes

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, i: int) -> Entry: ...

    @overload
    def __getitem__(self, i: slice) -> EntryColumns: ...

    def __getitem__(self, i: int | slice) -> Entry | EntryColumns:
        if isinstance(i, slice):
            return EntryColumns(self.keys[i], self.specs[i], self.path, self.starts[i], self.ends[i])
        return Entry(self.keys[i], self.specs[i], FileRange(self.path, self.starts[i], self.ends[i]))

    def __iter__(self) -> Iterator[Entry]:
        ranges = map(tuple.__new__, repeat(FileRange), zip(repeat(self.path), self.starts, self.ends))
        return map(tuple.__new__, repeat(Entry), zip(self.keys, self.specs, ranges))  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EntryColumns):
            return ((self.keys, self.specs, self.path, self.starts, self.ends)
                    == (other.keys, other.specs, other.path, other.starts, other.ends))
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def take(self, order: Sequence[int]) -> EntryColumns:
        """The entries at the positions ``order``, in that order."""
        def pick(column: list) -> list:
            return list(map(column.__getitem__, order))

        taken = EntryColumns(pick(self.keys), pick(self.specs), self.path, pick(self.starts), pick(self.ends))
        taken._sizes = None if self._sizes is None else pick(self._sizes)
        return taken

    def __repr__(self) -> str:
        return f"EntryColumns({len(self)} entries of {self.path})"


def keys_of(entries: Sequence[Entry]) -> list[str]:
    return entries.keys if isinstance(entries, EntryColumns) else list(map(KEY, entries))


def specs_of(entries: Sequence[Entry]) -> list[TensorSpec]:
    return entries.specs if isinstance(entries, EntryColumns) else list(map(SPEC, entries))


def one_file(entries: Sequence[Entry]) -> tuple[Path, list[int], list[int]] | None:
    """(path, starts, ends) when every entry's bytes are a range of one file (one ``Path`` object), else None."""
    if isinstance(entries, EntryColumns):
        return entries.path, entries.starts, entries.ends
    datas = list(map(DATA, entries))
    if not datas or set(map(type, datas)) != {FileRange} or len(set(map(id, map(_PATH, datas)))) != 1:
        return None
    return datas[0].path, list(map(_START, datas)), list(map(_END, datas))


def sizes_of(specs: Sequence[TensorSpec]) -> list[int]:
    """Each spec's ``nbytes``, computed once per distinct spec object."""
    size_of = {i: s.nbytes for i, s in dict(zip(map(id, specs), specs)).items()}
    return list(map(size_of.__getitem__, map(id, specs)))


def entry_sizes(entries: Sequence[Entry]) -> list[int]:
    """Each entry's spec's ``nbytes``."""
    return entries.sizes if isinstance(entries, EntryColumns) else sizes_of(list(map(SPEC, entries)))
