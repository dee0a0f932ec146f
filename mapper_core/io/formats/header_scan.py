"""The fast path of safetensors header parsing: headers in the form writers actually produce.

``safetensors`` (and mapper-core's own writer) write a header as compact JSON: an optional
``"__metadata__"`` object first, then one ``"name":{"dtype":"F32","shape":[8,8],
"data_offsets":[0,256]}`` per tensor, in data order, with no whitespace and no escapes in the
names. :func:`scan_canonical` reads exactly that form with one regular expression per chunk
of the text, column by column in C (``findall``, ``zip``, ``map``): no Python object per JSON
value and no Python call per tensor. Tensors that share a dtype and shape share one
:class:`~mapper_core.specs.TensorSpec`, which is checked once.

It returns None for anything else (whitespace, an escape, another field order, an unknown
dtype, tensors out of data order, a size, hole or duplicate the checks refuse), and the
general parser in :mod:`.safetensors_header` then reads the header and says what is wrong.
So the fast path only decides how quickly a header is read, never what is accepted: the
matches must tile the text exactly (their lengths add up to it), which proves that every
byte was read by the pattern.
"""
from __future__ import annotations

import json
import re
from operator import ne, sub
from typing import Any

from ...specs import DTYPE_BITS, MAX_DIM, TensorSpec

_U64 = 2**64 - 1
_NUM = r"(?:0|[1-9][0-9]*)"  # a JSON integer without sign: no leading zeros
_STR = r'([^"\\\x00-\x1f]*)'  # a JSON string body without escapes (control characters must be escaped)
_ENTRY = re.compile(
    r'(?:\A\{|,)"%s":\{"dtype":"%s","shape":\[((?:%s(?:,%s)*)?)\],"data_offsets":\[(%s),(%s)\]\}'
    % (_STR, _STR, _NUM, _NUM, _NUM, _NUM))
_FIXED = len('{"":{"dtype":"","shape":[],"data_offsets":[,]}')  # an entry's length besides its groups
_METADATA = '{"__metadata__":'
CHUNK = 4_000_000  # characters per findall: bounds the columns alive at once (~60,000 tensors)

Scanned = tuple[dict[str, TensorSpec], dict[str, tuple[int, int]], dict[str, str]]


def scan_canonical(text: str, data_size: int) -> Scanned | None:
    """(specs, offsets, metadata) of a header ``text`` in the canonical form whose tensors tile a
    data area of ``data_size`` bytes, or None when the general parser must decide."""
    close = text.rfind("}")
    if not text.startswith("{") or close < 0 or text[close + 1:].strip(" \t\r\n"):
        return None
    metadata: dict[str, str] = {}
    pos = 0
    if text.startswith(_METADATA):
        found = _metadata(text, len(_METADATA))
        if found is None:
            return None
        metadata, pos = found
        if pos == close:  # metadata alone, no tensors
            return ({}, {}, metadata) if data_size == 0 else None
        if text[pos:pos + 1] != "," or pos > close:
            return None
    specs: dict[str, TensorSpec] = {}
    offsets: dict[str, tuple[int, int]] = {}
    spec_of: dict[tuple[str, str], TensorSpec] = {}  # (dtype, shape digits) → its spec, checked once
    size_of: dict[tuple[str, str], int] = {}
    count, end = 0, 0
    while pos < close:
        stop = text.find(']},"', pos + CHUNK, close)
        stop = close if stop < 0 else stop + 2  # the comma before the next name
        rows = _ENTRY.findall(text, pos, stop)
        if not rows:
            return None
        names, dtypes, shapes, begins_text, ends_text = zip(*rows)
        matched = (sum(map(len, names)) + sum(map(len, dtypes)) + sum(map(len, shapes))
                   + sum(map(len, begins_text)) + sum(map(len, ends_text)) + _FIXED * len(rows))
        if matched != stop - pos:  # some text between or after the matches: not canonical
            return None
        kinds = list(zip(dtypes, shapes))
        for kind in set(kinds).difference(spec_of):
            checked = _spec(*kind)
            if checked is None:
                return None
            spec_of[kind], size_of[kind] = checked
        try:
            begins, ends = list(map(int, begins_text)), list(map(int, ends_text))
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            return None
        # in data order and without holes: each tensor begins where the one before ended
        if begins[0] != end or begins[1:] != ends[:-1] or ends[-1] > _U64:
            return None
        if any(map(ne, map(sub, ends, begins), map(size_of.__getitem__, kinds))):
            return None
        specs.update(zip(names, map(spec_of.__getitem__, kinds)))
        offsets.update(zip(names, zip(begins, ends)))
        count, end, pos = count + len(rows), ends[-1], stop
    if len(specs) != count or "__metadata__" in specs or end != data_size:
        return None  # a name twice, a tensor called __metadata__, or a data area of another size
    return specs, offsets, metadata


def _metadata(text: str, start: int) -> tuple[dict[str, str], int] | None:
    """The ``__metadata__`` value starting at ``start`` and the position after it: an object of
    string → string without repeated keys, or null."""
    try:
        value, end = _decoder.raw_decode(text, start)
    except (ValueError, RecursionError):
        return None
    if value is None:
        return {}, end
    if type(value) is not _Pairs or any(type(v) is not str for _, v in value):
        return None
    metadata = dict(value)
    return (metadata, end) if len(metadata) == len(value) else None


class _Pairs(list):
    """An object's pairs in order, so repeated keys stay visible."""

    __slots__ = ()


def _no_constant(name: str) -> Any:
    raise ValueError(name)


_decoder = json.JSONDecoder(object_pairs_hook=_Pairs, parse_constant=_no_constant)


def _spec(dtype: str, shape_text: str) -> tuple[TensorSpec, int] | None:
    """The spec and byte size of ``dtype`` and the digits of ``shape``, or None when a check refuses them."""
    bits = DTYPE_BITS.get(dtype)
    if bits is None:
        return None
    try:
        shape = tuple(map(int, shape_text.split(","))) if shape_text else ()
    except ValueError:  # more digits than Python converts
        return None
    numel = 1
    for d in shape:
        if d > MAX_DIM:
            return None
        numel *= d
        if numel > _U64:
            return None
    if bits == 4 and (not shape or shape[-1] % 2):
        return None
    if numel * bits % 8:
        return None
    return TensorSpec(dtype, shape), numel * bits // 8
