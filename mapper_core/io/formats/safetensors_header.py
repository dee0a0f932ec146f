"""Parse and check one safetensors header, without torch, in one linear pass.

What is accepted follows the official library (``safetensors.safe_open``) except for the
deliberate differences listed in :data:`DIFFERENCES` (checked by the differential tests in
``tests/io/formats/test_official_agreement.py``, described in docs/formats.md):

- the header is at most 100,000,000 bytes of UTF-8 JSON, whitespace allowed around it;
- ``__metadata__`` is absent, ``null`` or an object of string → string;
- every other key is a tensor: an object with ``dtype`` (a known name), ``shape`` (a list of
  non-negative integers) and ``data_offsets`` (``[begin, end]``); other fields are ignored;
- shape × dtype fills whole bytes, exactly ``end - begin`` of them, and the byte ranges tile
  the data area (in order, no overlap, no hole, nothing after the last).

Speed and memory: headers in the form writers produce are read by :mod:`.header_scan`,
column by column, without a Python object per JSON value; any other header (and every
error) goes through the general parser here. There the JSON is decoded by the C scanner with each object kept as its list of
pairs (:class:`JsonObject`, no Python call per object); each entry is checked with a few
type tests and one multiplication, and dropped from the parsed document as soon as its spec
is made, so the document and the specs are never both whole in memory
(``tests/benchmarks/bench_header.py``).
"""
from __future__ import annotations

import json
import math
import os
import re
import struct
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable

from ...errors import CheckpointError, json_problem
from ...specs import DTYPE_BITS, MAX_DIM, TensorSpec, shape_numel, shown_shape
from ...gc_pause import pauses_gc
from .header_scan import scan_canonical

MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit
MAX_JSON_DEPTH = 127  # serde_json's recursion limit: deeper JSON is refused by the library
_U64 = 2**64 - 1
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")

# Every deliberate difference from the official library (docs/formats.md; the differential tests
# expect exactly these): name → what differs and why.
DIFFERENCES: dict[str, str] = {
    "duplicate-key": "a key appearing twice in one JSON object (the library keeps the last one): two "
                     "parsers could read two different files from the same bytes",
    "f6-dtype": "F6_E2M3 / F6_E3M2 tensors are read and copied byte for byte; the library opens such "
                "files but neither of its frameworks can return the tensor",
    "numpy-dtypes": "framework 'numpy' cannot return BF16, F8_* or F4 tensors, nor shapes whose size "
                    "overflows numpy; mapper-core reads them as torch (framework 'pt') does",
}


class JsonObject(list):
    """A parsed JSON object: its ``(key, value)`` pairs in file order (duplicates kept, to be refused)."""

    __slots__ = ()


class SafetensorsHeader:
    """A validated safetensors header: ``specs`` and ``offsets`` (relative to ``data_start``, as
    the file records them) in file order, and ``metadata``.

    A header read column by column keeps its offsets as a list of ends (each tensor begins where
    the one before ends); the ``offsets`` dict is built the first time it is asked for.
    """

    __slots__ = ("path", "header_length", "specs", "metadata", "canonical", "_offsets", "_ends")

    def __init__(self, path: Path, header_length: int, specs: dict[str, TensorSpec],
                 offsets: dict[str, tuple[int, int]] | None, metadata: dict[str, str], *,
                 ends: list[int] | None = None, canonical: tuple[int, int, int] | None = None):
        if (offsets is None) == (ends is None):
            raise TypeError("SafetensorsHeader needs either offsets or ends")
        self.path, self.header_length, self.specs, self.metadata = path, header_length, specs, metadata
        self._offsets, self._ends = offsets, ends
        # a header in the writers' form: where its tensor entries are in the header JSON (begin,
        # end) and hash() of that JSON, to know it unchanged when it is read again
        self.canonical = canonical

    @property
    def data_start(self) -> int:
        return 8 + self.header_length

    @property
    def offsets(self) -> dict[str, tuple[int, int]]:
        if self._offsets is None:
            self._offsets = dict(zip(self.specs, zip(self.begins, self._ends)))  # type: ignore[arg-type]
        return self._offsets

    @property
    def ends(self) -> list[int]:
        """Each tensor's end offset, in the order of ``specs``."""
        if self._ends is None:
            self._ends = list(map(itemgetter(1), self._offsets.values()))  # type: ignore[union-attr]
        return self._ends

    @property
    def begins(self) -> list[int]:
        """Each tensor's begin offset, in the order of ``specs`` (the ranges tile the data area)."""
        ends = self.ends
        return [0, *ends[:-1]] if ends else []

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SafetensorsHeader):
            return NotImplemented
        return ((self.path, self.header_length, self.specs, self.metadata, self.ends)
                == (other.path, other.header_length, other.specs, other.metadata, other.ends))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def parse_json(text: str | bytes, what: str) -> Any:
    """JSON as the official parsers read it: objects as :class:`JsonObject`, no NaN/Infinity, bounded depth.

    ``what`` names the file in the CheckpointError."""
    try:
        return json.loads(text, object_pairs_hook=JsonObject, parse_constant=_refuse_constant,
                          parse_float=_finite_float)
    except RecursionError:
        raise CheckpointError(f"{what}: JSON nested too deeply; the file is damaged or hostile") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{what}: not valid JSON: {json_problem(exc)}") from None


def unique(pairs: Any, what: str) -> dict[str, Any]:
    """A parsed object (:class:`JsonObject`) as a dict; CheckpointError on a duplicate key."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise CheckpointError(f"{what}: key {_quote(twice)} appears twice; the file is ambiguous (refused on purpose)")
    return out


def depth(value: Any) -> int:
    """Nesting depth of parsed JSON (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, list):
            deepest = max(deepest, level)
            children = (v for _, v in item) if type(item) is JsonObject else item
            stack.extend((c, level + 1) for c in children)
    return deepest


def plain(value: Any) -> Any:
    """Parsed JSON with objects as dicts again (for messages and nested metadata)."""
    if type(value) is JsonObject:
        return {k: plain(v) for k, v in value}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def has_lone_surrogate(value: Any) -> bool:
    """True when a string anywhere in ``value`` holds half a UTF-16 pair (``"\\ud800"``)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif type(item) is JsonObject:
            stack.extend(k for k, _ in item)
            stack.extend(v for _, v in item)
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _quote(text: str) -> str:
    return repr(text.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace"))[:200]


@pauses_gc
def read_header(path: str | Path) -> SafetensorsHeader:
    """Read and validate the header of one safetensors file; CheckpointError on anything wrong."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            prefix = fh.read(8)
            if len(prefix) < 8:
                raise CheckpointError(
                    f"{path}: truncated safetensors file ({size} bytes; the 8-byte header length is missing)"
                )
            (n,) = struct.unpack("<Q", prefix)
            if n > MAX_HEADER_BYTES:
                raise CheckpointError(
                    f"{path}: safetensors header length {n} is above the library's limit of 100,000,000 bytes; "
                    "the file is corrupt or not safetensors"
                )
            if n > size - 8:
                raise CheckpointError(
                    f"{path}: safetensors header length {n} runs past the end of the file ({size} bytes); "
                    "the file is truncated or not safetensors"
                )
            raw = fh.read(n)
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a folder, not a safetensors file") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not raw.lstrip(b" \t\r\n").startswith(b"{"):
        raise CheckpointError(f"{path}: safetensors header does not start with '{{'; the file is not safetensors")
    escapes = _MAYBE_SURROGATE.search(raw) is not None  # rare: only then look for lone halves
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: safetensors header is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    digest = hash(raw)  # 26 ms for 78 MB: lets a writer take the tensor entries from the file again
    del raw
    if not escapes:  # the form writers produce, read column by column; anything else goes the general way
        scanned = scan_canonical(text, size - 8 - n)
        if scanned is not None:
            specs, ends, metadata, first = scanned
            span = (len(text[:first].encode("utf-8")), n - (len(text) - text.rfind("}")), digest)
            return SafetensorsHeader(path, n, specs, None, metadata, ends=ends, canonical=span)
    doc = parse_json(text, f"{path}: safetensors header")
    del text
    if escapes and has_lone_surrogate(doc):
        raise CheckpointError(f"{path}: safetensors header holds a lone UTF-16 surrogate (e.g. \"\\ud800\") in a "
                                  "name or value; it is not valid Unicode, and the safetensors library refuses it too")
    return _validate(path, n, size - 8 - n, doc)


def _validate(path: Path, header_length: int, data_size: int, doc: Any) -> SafetensorsHeader:
    if type(doc) is not JsonObject:
        raise CheckpointError(f"{path}: safetensors header must be a JSON object, got {type(doc).__name__}")
    bits_of, max_dim = DTYPE_BITS, MAX_DIM
    metadata: dict[str, str] = {}
    specs: dict[str, TensorSpec] = {}
    offsets: dict[str, tuple[int, int]] = {}
    ordered, seen_metadata = True, False
    last = (0, 0)
    for i in range(len(doc)):
        key, entry = doc[i]
        doc[i] = None  # this entry's parsed JSON goes now: peak memory is one copy, not two
        if key in specs or (key == "__metadata__" and seen_metadata):
            raise CheckpointError(f"{path}: safetensors header: key {_quote(key)} appears twice; the file is "
                                  "ambiguous (refused on purpose)")
        if key == "__metadata__":
            metadata, seen_metadata = _metadata(path, entry), True
            continue
        # fast path: {"dtype": .., "shape": .., "data_offsets": ..} in that order passes with a few type tests
        if type(entry) is JsonObject and len(entry) == 3:
            (k1, dtype), (k2, shape), (k3, offs) = entry
            if k1 != "dtype" or k2 != "shape" or k3 != "data_offsets":
                fields = _entry_fields(path, key, entry)
                dtype, shape, offs = fields["dtype"], fields["shape"], fields["data_offsets"]
        else:
            fields = _entry_fields(path, key, entry)
            dtype, shape, offs = fields["dtype"], fields["shape"], fields["data_offsets"]
        bits = bits_of.get(dtype) if type(dtype) is str else None
        if bits is None:
            _bad_dtype(path, key, dtype)
        if type(shape) is not list:
            _bad_shape(path, key, shape)
        for d in shape:
            if type(d) is not int or d < 0 or d > max_dim:
                _bad_shape(path, key, shape)
        if bits == 4 and (not shape or shape[-1] % 2):
            raise CheckpointError(f"{path}: tensor {_quote(key)}: F4 {shown_shape(shape)} needs an even last "
                                  "dimension (two values share a byte; torch's float4_e2m1fn_x2 and the "
                                  "safetensors library refuse other shapes)")
        numel = shape_numel(shape)
        if numel is None:
            raise CheckpointError(f"{path}: tensor {_quote(key)}: shape {shown_shape(shape)} has more elements "
                                  "than fit 64 bits; the header is damaged")
        if (type(offs) is not list or len(offs) != 2 or type(offs[0]) is not int or type(offs[1]) is not int
                or not 0 <= offs[0] <= offs[1] <= _U64):
            raise CheckpointError(f"{path}: tensor {_quote(key)}: data_offsets must be [begin, end] with "
                                  f"0 <= begin <= end, got {_shown(offs, 400, repr)}"[:400])
        begin_end = (offs[0], offs[1])
        if numel * bits != (begin_end[1] - begin_end[0]) * 8:
            _size_disagrees(path, key, dtype, shape, offs, numel * bits)
        if begin_end < last:
            ordered = False
        last = begin_end
        specs[key] = TensorSpec(dtype, tuple(shape))
        offsets[key] = begin_end
    if not ordered:  # file order, which a streaming copy wants (the library sorts the same way)
        order = sorted(offsets, key=offsets.__getitem__)
        specs = {k: specs[k] for k in order}
        offsets = {k: offsets[k] for k in order}
    _check_tiling(path, offsets, data_size)
    return SafetensorsHeader(path, header_length, specs, offsets, metadata)


def _metadata(path: Path, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if type(value) is not JsonObject:
        raise CheckpointError(f"{path}: __metadata__ must be an object of string → string (or null), got "
                              f"{_shown(value)}; the safetensors library refuses this file too")
    metadata = unique(value, f"{path}: __metadata__")
    for k, v in metadata.items():
        if type(v) is not str:
            raise CheckpointError(f"{path}: __metadata__ {_quote(k)}: values must be strings, got {_shown(v)}")
    return metadata


def _shown(value: Any, width: int = 60, render: Callable[[Any], str] = json.dumps) -> str:
    """The start of a refused ``value`` for a message. Python 3.12+ parses JSON deeper than
    :func:`plain` can walk, so a value past the library's depth is described, not rendered."""
    if depth(value) > MAX_JSON_DEPTH:
        return f"{'an object' if type(value) is JsonObject else 'a list'} nested more than {MAX_JSON_DEPTH} levels deep"
    return render(plain(value))[:width]


def _entry_fields(path: Path, key: str, entry: Any) -> dict[str, Any]:
    """The slow path: a tensor entry that is not exactly {dtype, shape, data_offsets}."""
    where = f"{path}: tensor {_quote(key)}"
    if type(entry) is not JsonObject:
        raise CheckpointError(f"{where}: expected an object with dtype, shape, data_offsets; got "
                              f"{_shown(entry, 80)}")
    fields = unique(entry, where)
    missing = [f for f in ("dtype", "shape", "data_offsets") if f not in fields]
    if missing:
        raise CheckpointError(f"{where}: missing {', '.join(missing)}; a tensor entry needs dtype, shape, data_offsets")
    extra = {k: v for k, v in fields.items() if k not in ("dtype", "shape", "data_offsets")}
    if extra and depth(JsonObject(extra.items())) + 1 > MAX_JSON_DEPTH:
        raise CheckpointError(f"{where}: field(s) {', '.join(map(_quote, extra))} nest JSON deeper than "
                              f"{MAX_JSON_DEPTH} levels; the safetensors library refuses this file too")
    return fields  # unknown fields are ignored, as the library does (forward compatibility)


def _bad_dtype(path: Path, key: str, dtype: Any) -> None:
    shown = repr(dtype)[:60] if isinstance(dtype, str) else _shown(dtype)
    raise CheckpointError(f"{path}: tensor {_quote(key)}: unknown dtype {shown}; known: {', '.join(DTYPE_BITS)}")


def _bad_shape(path: Path, key: str, shape: Any) -> None:
    shown = _shown(shape, 120)
    raise CheckpointError(f"{path}: tensor {_quote(key)}: shape must be a list of non-negative integers "
                          "(at most 2**63-1, what torch and numpy can index), "
                          f"got {shown}")


def _size_disagrees(path: Path, key: str, dtype: str, shape: list, offs: list, total_bits: int) -> None:
    held = offs[1] - offs[0]
    where = f"{path}: tensor {_quote(key)}: shape {shown_shape(shape)} × {dtype}"
    if total_bits % 8:
        raise CheckpointError(f"{where} is {total_bits} bits, not a whole number of bytes; the safetensors library "
                              "refuses it too")
    raise CheckpointError(f"{where} is {total_bits // 8} bytes but data_offsets {offs} hold {held} bytes")


def _check_tiling(path: Path, offsets: dict[str, tuple[int, int]], data_size: int) -> None:
    """The byte ranges must cover the data area exactly: no overlap, no hole, nothing past the end."""
    pos, prev = 0, None
    for key, (begin, end) in offsets.items():
        if begin != pos:
            _tiling_error(path, key, begin, end, pos, prev, data_size)
        pos, prev = end, key
    if pos > data_size:
        begin, end = offsets[prev]  # type: ignore[index]
        raise CheckpointError(
            f"{path}: tensor {_quote(prev)}: data_offsets [{begin}, {end}] run past the end of the data area "  # type: ignore[arg-type]
            f"({data_size} bytes); the file is truncated"
        )
    if pos != data_size:
        raise CheckpointError(
            f"{path}: the data area is {data_size} bytes but the tensors end at {pos}; "
            "the file has trailing bytes or a damaged header"
        )


def _tiling_error(path: Path, key: str, begin: int, end: int, pos: int, prev: str | None, data_size: int) -> None:
    if end > data_size or begin > data_size:
        raise CheckpointError(
            f"{path}: tensor {_quote(key)}: data_offsets [{begin}, {end}] run past the end of the data area "
            f"({data_size} bytes); the file is truncated"
        )
    if begin < pos:
        raise CheckpointError(f"{path}: tensor {_quote(key)}: data_offsets [{begin}, {end}] overlap tensor "
                              f"{_quote(prev or '')} (ends at {pos})")
    after = f"after tensor {_quote(prev)}" if prev else "at the start of the data area"
    raise CheckpointError(f"{path}: tensor {_quote(key)}: hole of {begin - pos} bytes {after} (bytes {pos}..{begin})")
