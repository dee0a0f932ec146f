"""The fast path of safetensors header parsing: headers in the form writers actually produce.

``safetensors`` (and mapper-core's own writer) write a header as compact JSON: an optional
``"__metadata__"`` object first, then one ``"name":{"dtype":"F32","shape":[8,8],
"data_offsets":[0,256]}`` per tensor, in data order, with no whitespace and no escapes in the
names. :func:`scan_canonical` reads exactly that form with one regular expression per chunk
of the text, column by column in C (``split``, slices, ``map``): no Python object per JSON
value and no Python call per tensor. Tensors that share a dtype and shape share one
:class:`~mapper_core.specs.TensorSpec`, which is checked once.

It returns None for anything else (whitespace, an escape, another field order, an unknown
dtype, tensors out of data order, a size, hole or duplicate the checks refuse), and the
general parser in :mod:`.safetensors_header` then reads the header and says what is wrong.
So the fast path only decides how quickly a header is read, never what is accepted: ``split``
gives the text between the entries too, and only when every such piece is empty do the entries
tile the text, every byte read as part of one.
"""
from __future__ import annotations

import json
import re
from itertools import chain
from operator import ne, sub
from typing import Any

from ...specs import DTYPE_BITS, MAX_DIM, TensorSpec, shape_numel

_U64 = 2**64 - 1
_NUM = r"(?:0|[1-9][0-9]*)"  # a JSON integer without sign: no leading zeros
_BODY = r'[^"\\\x00-\x1f]*'  # a JSON string body without escapes (control characters must be escaped)
# groups: the name; the kind (dtype and shape digits: 'F32","shape":[8,8'); begin; end. split()
# gives a flat list: text before the first entry, its four groups, text before the next, ...; the
# pieces between entries must all be empty. (A flat list, not findall's tuple per entry: a third
# faster.) The kind is only read up to its ']' here (a fifth faster than spelling it out) and each
# distinct kind is then held to _KIND. The leading '{' is only matched where a chunk starts it.
_ENTRY = re.compile(
    r'(?:\A\{|,)"(%s)":\{"dtype":"([^\]]*)\],"data_offsets":\[(%s),(%s)\]\}' % (_BODY, _NUM, _NUM))
_KIND = re.compile(r'(%s)","shape":\[((?:%s(?:,%s)*)?)' % (_BODY, _NUM, _NUM))
_METADATA = '{"__metadata__":'
CHUNK = 4_000_000  # characters per findall: bounds the columns alive at once (~60,000 tensors)

Scanned = tuple[dict[str, TensorSpec], list[int], dict[str, str], int]


def scan_canonical(text: str, data_size: int) -> Scanned | None:
    """(specs, ends, metadata, first) of a header ``text`` in the canonical form whose tensors tile
    a data area of ``data_size`` bytes, or None when the general parser must decide. ``ends`` are
    the tensors' end offsets in the order of ``specs`` (each begins where the one before ends);
    the tensor entries are ``text[first:]`` up to the closing brace."""
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
            return ({}, [], metadata, pos) if data_size == 0 else None
        if text[pos:pos + 1] != "," or pos > close:
            return None
    first = pos + 1  # after the '{', or the comma after the metadata
    specs: dict[str, TensorSpec] = {}
    all_ends: list[int] = []
    spec_of: dict[str, TensorSpec] = {}  # kind text → its spec, checked once
    size_of: dict[str, int] = {}
    end = 0
    while pos < close:
        stop = text.find(']},"', pos + CHUNK, close)
        stop = close if stop < 0 else stop + 2  # the comma before the next name
        # a chunk starts at the header's '{' (nothing before the first entry) or at a comma
        parts = _ENTRY.split(text[pos:stop])
        if len(parts) == 1 or any(parts[::5]):  # no entry, or some text between or after them: not canonical
            return None
        names, kinds, begins_text, ends_text = parts[1::5], parts[2::5], parts[3::5], parts[4::5]
        del parts
        for kind in set(kinds).difference(spec_of):
            checked = _spec(kind)
            if checked is None:
                return None
            spec_of[kind], size_of[kind] = checked
        # in data order and without holes: each tensor begins where the one before ended (the
        # digits have no leading zeros, so equal text is an equal number)
        if begins_text[0] != str(end) or begins_text[1:] != ends_text[:-1]:
            return None
        try:
            ends = list(map(int, ends_text))
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            return None
        if ends[-1] > _U64 or any(map(ne, map(sub, ends, chain((end,), ends)), map(size_of.__getitem__, kinds))):
            return None
        specs.update(zip(names, map(spec_of.__getitem__, kinds)))
        all_ends += ends
        end, pos = ends[-1], stop
    if len(specs) != len(all_ends) or "__metadata__" in specs or end != data_size:
        return None  # a name twice, a tensor called __metadata__, or a data area of another size
    return specs, all_ends, metadata, first


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


def _spec(kind: str) -> tuple[TensorSpec, int] | None:
    """The spec and byte size of a kind's text (``F32","shape":[8,8``), or None when a check refuses it."""
    parts = _KIND.fullmatch(kind)
    if parts is None:
        return None
    dtype, shape_text = parts.groups()
    bits = DTYPE_BITS.get(dtype)
    if bits is None:
        return None
    try:
        shape = tuple(map(int, shape_text.split(","))) if shape_text else ()
    except ValueError:  # more digits than Python converts
        return None
    numel = shape_numel(shape)
    if numel is None or (shape and max(shape) > MAX_DIM):
        return None
    if bits == 4 and (not shape or shape[-1] % 2):
        return None
    if numel * bits % 8:
        return None
    return TensorSpec(dtype, shape), numel * bits // 8
