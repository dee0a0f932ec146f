"""The checks of a DCP ``.metadata``'s storage entries and chunks, made over all of them at once.

A large checkpoint's ``.metadata`` lists a hundred thousand chunks and more (Llama-405B saved by
16 ranks: 117,000); checking each in a Python loop of its own took seconds. Here the same checks
run as a few C loops over every entry (``set(map(type, ...))``, ``min``, ``max``): types, lengths,
non-negative integers, chunks inside their tensor. When one fails, the entry at fault is found by
the per-entry check (:func:`is_ints` and the callers' loops), so the message names it as before.
Nothing is skipped: the bulk checks are the per-entry checks, said over many entries.
"""
from __future__ import annotations

from itertools import chain, repeat
from operator import itemgetter
from typing import Any, NamedTuple

_INT = {int}
_TUPLE = {tuple}
_STR = {str}
_new = tuple.__new__  # a DcpChunk without a Python call (NamedTuple's __new__ is one)


class DcpChunk(NamedTuple):
    """One saved piece of a tensor: where it sits in the whole tensor and where its bytes are."""

    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    file: str  # relative to the checkpoint folder
    start: int  # byte offset of the item in ``file``
    length: int
    transforms: tuple[str, ...] = ()  # DCP stream extensions (compression, ...) applied on write


_OFFSETS = itemgetter(0)  # of a DcpChunk


def is_ints(values: Any, allow_none: bool = False) -> bool:
    """A tuple of ints (not bools: ``True`` is no size), or None when ``allow_none``."""
    if values is None:
        return allow_none
    return type(values) is tuple and (not values or set(map(type, values)) == _INT)


def ints_at_least_0(values: list, length: int | None, allow_negative: bool = False) -> bool:
    """:func:`is_ints` of each of ``values``, each of ``length`` items (unless None) and none negative
    (unless ``allow_negative``), in a few C loops over them all."""
    if not values:
        return True
    if set(map(type, values)) != _TUPLE or (length is not None and set(map(len, values)) != {length}):
        return False
    items = list(chain.from_iterable(values))
    return not items or (set(map(type, items)) == _INT and (allow_negative or min(items) >= 0))


def chunks_fit(offs: list, sizs: list, size: tuple[int, ...]) -> bool:
    """Whether every chunk (``offs[i]``, ``sizs[i]``) is a box of non-negative ints inside ``size``."""
    return (ints_at_least_0(offs, len(size)) and ints_at_least_0(sizs, len(size))
            and all(max(map(int.__add__, o, n), default=0) <= limit
                    for o, n, limit in zip(zip(*offs), zip(*sizs), size)))


def safe_name(name: str) -> bool:
    """A plain file name in the checkpoint folder (no path, not '.' or '..')."""
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..") and "\0" not in name


def storage_in_bulk(storage: dict, index_type: type, info_type: type) -> dict | None:
    """``storage_data`` as (fqn, offset) → :class:`DcpChunk` (byte range only), when every entry passes
    the checks of the per-entry loop and none has stream transforms; None otherwise (that loop then
    names the entry at fault, or reads the transforms)."""
    if set(map(type, storage)) - {index_type} or set(map(type, storage.values())) - {info_type}:
        return None
    got, at = list(map(vars, storage)), list(map(vars, storage.values()))
    fqns, offs = list(map(dict.get, got, repeat("fqn"))), list(map(dict.get, got, repeat("offset")))
    rels = list(map(dict.get, at, repeat("relative_path")))
    ranges = list(map(dict.get, at, repeat("offset"))) + list(map(dict.get, at, repeat("length")))
    if (set(map(type, fqns)) - _STR or set(map(type, rels)) - _STR or not all(map(safe_name, set(rels)))
            or set(map(type, ranges)) - _INT or min(ranges, default=0) < 0
            or any(map(dict.get, at, repeat("transform_descriptors")))
            or set(map(type, offs)) - {tuple, type(None)} or not ints_at_least_0([o for o in offs if o], None, True)):
        return None
    places = map(_new, repeat(DcpChunk), zip(repeat(()), repeat(()), rels, ranges, ranges[len(at):], repeat(())))
    return dict(zip(zip(fqns, offs), places))


def overlap(chunks: list[DcpChunk]) -> bool:
    """Whether two non-empty chunks share an element (boxes intersect in every dimension).

    Sorted by offsets, a box can only meet the boxes that start before it ends in the first
    dimension, so the usual splits along one dimension cost one comparison per chunk."""
    if len(chunks) < 2 or not chunks[0].offsets:
        return False
    boxes = sorted((c for c in chunks if all(c.sizes)), key=_OFFSETS)
    for i, a in enumerate(boxes):
        end = a.offsets[0] + a.sizes[0]
        for j in range(i + 1, len(boxes)):  # not boxes[i + 1:]: a copy per chunk is quadratic
            b = boxes[j]
            if b.offsets[0] >= end:
                break
            if all(bo < ao + an and ao < bo + bn for ao, an, bo, bn in zip(a.offsets, a.sizes, b.offsets, b.sizes)):
                return True
    return False
