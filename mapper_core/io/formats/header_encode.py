"""The header the writer puts before the data: ``safetensors.save_file``'s order and JSON, byte for byte.

- tensors ordered by dtype alignment, widest first, then by name (:func:`library_order`);
- compact JSON, ``__metadata__`` first (keys sorted), then one entry per tensor with its
  data offsets, their byte ranges tiling the data area; spaces pad the header so the data
  area starts on an 8-byte boundary (:class:`TensorLayout`, :func:`encode_header`).

A header of a million tensors is made in columns: keys and specs are taken with
``attrgetter``, each distinct spec object is measured and rendered once, offsets are
accumulated and the text joined in C, so no Python call is made per tensor. The tensor part
is rendered once per file; a rewritten header (the final source hash, padding for cloning)
only renders the metadata again. Anything unusual (a key twice, a dtype safetensors lacks, a
partial byte, a lone surrogate) goes through :func:`_reference`, the plain loop, which names
the first problem; the tests hold the two to the same bytes.
"""
from __future__ import annotations

import json
import struct
from itertools import accumulate, chain, repeat
from json.encoder import encode_basestring
from typing import Any, Mapping, Sequence

from ...errors import BadInputError
from ...gc_pause import pauses_gc
from ...specs import DTYPE_BITS, TensorSpec, nbytes_of
from .entries import Entry, EntryColumns, keys_of, specs_of
from .safetensors_header import MAX_HEADER_BYTES

# the safetensors library's dtype order (ascending); tensors are written in descending order
DTYPE_ORDER = tuple(DTYPE_BITS)
_RANK = {name: i for i, name in enumerate(DTYPE_ORDER)}
ALIGN = 8


@pauses_gc
def library_order(entries: Sequence[Entry]) -> list[Entry] | EntryColumns:
    """The order ``safetensors.save_file`` writes tensors in: widest dtype first, then by key.
    :class:`EntryColumns` come back as columns, anything else as a list."""
    if not isinstance(entries, EntryColumns):
        entries = list(entries)
    keys, specs = keys_of(entries), specs_of(entries)
    rank_of = {i: -_RANK[s.dtype] for i, s in dict(zip(map(id, specs), specs)).items()}
    if len(set(rank_of.values())) <= 1 and isinstance(entries, EntryColumns) and keys == sorted(keys):
        return entries  # already in order (a file save_file wrote): nothing to move
    order = sorted(range(len(keys)), key=keys.__getitem__)
    if len(set(rank_of.values())) > 1:
        ranks = list(map(rank_of.__getitem__, map(id, specs)))
        order.sort(key=ranks.__getitem__)  # stable: by key within a dtype
    if isinstance(entries, EntryColumns):
        return entries if order == list(range(len(order))) else entries.take(order)
    return list(map(entries.__getitem__, order))


class TensorLayout:
    """The tensor part of a header for entries in write order, rendered once (or, for
    :class:`EntryColumns` that carry it, taken as their source file has it).

    ``keys``, ``begins``, ``ends`` and ``sizes`` are columns in that order (offsets relative to
    the data area); ``total`` is the data area's size; :meth:`header` adds the metadata.
    """

    __slots__ = ("keys", "sizes", "begins", "ends", "total", "_text", "_offsets")

    @pauses_gc
    def __init__(self, entries: Sequence[Entry]):
        keys, specs = keys_of(entries), specs_of(entries)
        known = entries.rendered() if isinstance(entries, EntryColumns) and entries.rendered else None
        if known is not None:  # a checked source's own text for exactly these entries
            done = entries.sizes, memoryview(known)
        else:
            done = _columns(keys, specs)
            if done is None:  # something to refuse or out of the ordinary: the plain loop says what
                done = _reference(keys, specs)
            done = done[0], memoryview(done[1])[:-1]  # without the last entry's comma
        self.keys = keys
        self.sizes, self._text = done
        self.ends = list(accumulate(self.sizes))
        self.begins = [0, *self.ends[:-1]] if self.ends else []
        self.total = self.ends[-1] if self.ends else 0
        self._offsets: dict[str, tuple[int, int]] | None = None

    @property
    def offsets(self) -> dict[str, tuple[int, int]]:
        """Key → (begin, end), built on first use."""
        if self._offsets is None:
            self._offsets = dict(zip(self.keys, zip(self.begins, self.ends)))
        return self._offsets

    def header(self, metadata: Mapping[str, str] | None = None, min_length: int = 0) -> bytes:
        """The 8-byte length + header JSON + space padding, at least ``min_length`` bytes of JSON
        (then to a multiple of 8)."""
        check_metadata(metadata)
        meta = b""
        if metadata:
            text = '"__metadata__":' + _json({k: metadata[k] for k in sorted(metadata)})
            try:
                meta = text.encode("utf-8")
            except UnicodeEncodeError:  # "\ud800": not Unicode, and the library refuses such files
                bad = next(item for item in metadata.items() if _not_utf8(item))
                raise BadInputError(f"cannot write {bad!r:.200} to a safetensors header: it holds a lone UTF-16 "
                                    "surrogate, which is not valid Unicode") from None
        tensors = self._text
        length = 2 + len(meta) + len(tensors) + (1 if meta and tensors else 0)
        padded = max(length, min_length)
        padded += -padded % ALIGN
        if padded > MAX_HEADER_BYTES:
            raise BadInputError(
                f"the safetensors header would be {padded:,} bytes, above the library's limit of "
                f"{MAX_HEADER_BYTES:,}: the output could not be opened. Split it with --max-shard-size "
                "(each shard has its own header), or shorten the metadata or tensor names"
            )
        header = b"".join([struct.pack("<Q", padded), b"{", meta, b"," if meta and tensors else b"", tensors, b"}",
                           b" " * (padded - length)])
        at = 9 + len(meta) + (1 if meta and tensors else 0)
        self._text = memoryview(header)[at:at + len(tensors)]  # one copy of the text: the header's own
        return header


def check_metadata(metadata: Mapping[str, str] | None) -> None:
    """BadInputError unless ``metadata`` maps strings to strings."""
    if metadata:
        bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise BadInputError(f"safetensors metadata must map strings to strings; bad entry {bad[0]!r}")


def encode_header(entries: Sequence[Entry], metadata: Mapping[str, str] | None = None,
                  min_length: int = 0) -> tuple[bytes, dict[str, tuple[int, int]]]:
    """The 8-byte length + header JSON + space padding for ``entries`` in the given order, and
    each key's data offsets (relative to the data area). The header is padded to at least
    ``min_length`` bytes (then to a multiple of 8)."""
    check_metadata(metadata)
    layout = TensorLayout(entries)
    return layout.header(metadata, min_length), layout.offsets


def _columns(keys: list[str], specs: list[TensorSpec]) -> tuple[list[int], bytes] | None:
    """(sizes, the tensor entries' JSON with a comma after each), or None when :func:`_reference` must decide."""
    if not set(map(type, keys)) <= {str}:
        return None
    prefix_of: dict[int, str] = {}
    size_of: dict[int, int] = {}
    by_kind: dict[tuple, tuple[str, int]] = {}
    for i, spec in dict(zip(map(id, specs), specs)).items():
        dtype, shape = spec.dtype, spec.shape
        if type(dtype) is not str or dtype not in DTYPE_BITS or type(shape) is not tuple:
            return None
        kind = (dtype, shape, tuple(map(type, shape)))  # the types too: (True,) == (1,) but renders otherwise
        found = by_kind.get(kind)
        if found is None:
            size = spec.nbytes if DTYPE_BITS[dtype] % 8 == 0 else nbytes_of(dtype, shape)
            if size is None:
                return None
            found = by_kind[kind] = (f':{{"dtype":"{dtype}","shape":[{",".join(map(str, shape))}],'
                                     '"data_offsets":[', size)
        prefix_of[i], size_of[i] = found
    names = set(keys)
    if len(names) != len(keys) or "__metadata__" in names:
        return None
    ids = list(map(id, specs))
    sizes = list(map(size_of.__getitem__, ids))
    ends = list(map(str, accumulate(sizes)))
    begins = ["0", *ends[:-1]] if ends else []
    text = "".join(chain.from_iterable(zip(map(encode_basestring, keys), map(prefix_of.__getitem__, ids),
                                           begins, repeat(","), ends, repeat("]},"))))
    try:
        return sizes, text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate in a key
        return None


def _reference(keys: list[str], specs: list[TensorSpec]) -> tuple[list[int], bytes]:
    """The plain loop: the first key or spec that cannot be written is named; otherwise the same
    result as :func:`_columns`."""
    parts: list[str] = []
    seen: set[str] = set()
    sizes: list[int] = []
    pos = 0
    for key, spec in zip(keys, specs):
        if key in seen or key == "__metadata__":
            why = "is reserved" if key == "__metadata__" else "appears twice"
            raise BadInputError(f"cannot write tensor key '{key}': it {why} in a safetensors header")
        seen.add(key)
        bits = DTYPE_BITS.get(spec.dtype)
        if bits is None:
            raise BadInputError(f"tensor '{key}': dtype {spec.dtype!r} cannot be written to safetensors")
        size = spec.nbytes if bits % 8 == 0 else nbytes_of(spec.dtype, spec.shape)
        if size is None:
            raise BadInputError(f"tensor '{key}': {spec.dtype} {list(spec.shape)} is not a whole number of "
                                "bytes, which safetensors cannot store")
        end = pos + size
        parts.append(f'{_json(key)}:{{"dtype":"{spec.dtype}","shape":[{",".join(map(str, spec.shape))}],'
                     f'"data_offsets":[{pos},{end}]}},')
        sizes.append(size)
        pos = end
    text = "".join(parts)
    try:
        return sizes, text.encode("utf-8")
    except UnicodeEncodeError:  # "\ud800": not Unicode, and the library refuses such files
        bad = next(k for k in keys if _not_utf8(k))
        raise BadInputError(f"cannot write {bad!r:.200} to a safetensors header: it holds a lone UTF-16 "
                            "surrogate, which is not valid Unicode") from None


_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # what save_file writes


def _not_utf8(value: Any) -> bool:
    text = value if isinstance(value, str) else "".join(map(str, value))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
