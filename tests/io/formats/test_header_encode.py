"""The header the writer makes, in columns, against the plain loop and against JSON as save_file writes it.

:class:`TensorLayout` renders a million tensors without a Python call each; :func:`_reference`
is the loop it replaced, which also names what cannot be written. For made-up entries (shared
and separate spec objects, every dtype, empty shapes and zero sizes, non-ASCII keys) both must
give the same bytes, and the same refusal where there is one. :func:`library_order` and the
writer's copy runs are held to the one-at-a-time definitions the same way.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapper_core.errors import BadInputError
from mapper_core.io.formats.base import FileRange
from mapper_core.io.formats.entries import Entry, EntryColumns, sizes_of
from mapper_core.io.formats.header_encode import (DTYPE_ORDER, TensorLayout, _columns, _reference, encode_header,
                                                  library_order)
from mapper_core.io.formats.shards import split_shards
from mapper_core.io.formats.writer import _runs, _runs_loop
from mapper_core.specs import DTYPE_BITS, TensorSpec

KEYS = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12).filter(lambda k: k != "__metadata__")
SHAPES = st.lists(st.integers(0, 6), max_size=3).map(tuple)
SPECS = st.builds(TensorSpec, st.sampled_from(DTYPE_ORDER), SHAPES)


@st.composite
def entries(draw, keys=KEYS, unique=True):
    """Entries whose specs are partly one shared object (as a scanned header's are), partly their own."""
    shared = draw(st.lists(SPECS, min_size=1, max_size=3))
    names = draw(st.lists(keys, max_size=30, unique=unique))
    out = []
    for name in names:
        spec = draw(st.sampled_from(shared)) if draw(st.booleans()) else draw(SPECS)
        if draw(st.booleans()):
            spec = TensorSpec(spec.dtype, spec.shape)  # equal, but another object
        out.append(Entry(name, spec, None))
    return out


def old_library_order(items):
    rank = {name: i for i, name in enumerate(DTYPE_ORDER)}
    return sorted(items, key=lambda e: (-rank[e.spec.dtype], e.key))


def save_file_json(items, metadata):
    """The header as save_file writes it: compact JSON, metadata first, padded with spaces to 8."""
    doc, pos = {}, 0
    if metadata:
        doc["__metadata__"] = {k: metadata[k] for k in sorted(metadata)}
    for e in items:
        n = e.spec.numel * DTYPE_BITS[e.spec.dtype] // 8
        doc[e.key] = {"dtype": e.spec.dtype, "shape": list(e.spec.shape), "data_offsets": [pos, pos + n]}
        pos += n
    raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def outcome(function, *args):
    try:
        return function(*args)
    except (BadInputError, KeyError) as exc:
        return type(exc), str(exc)


@settings(max_examples=300, deadline=None)
@given(entries(), st.dictionaries(KEYS, KEYS, max_size=3))
def test_columns_and_the_plain_loop_agree_and_match_save_file(items, metadata):
    keys, specs = [e.key for e in items], [e.spec for e in items]
    fast = _columns(keys, specs)
    slow = outcome(_reference, keys, specs)
    whole = all(s.nbytes * 8 == s.numel * DTYPE_BITS[s.dtype] for s in specs)
    assert (fast is not None) == whole
    if fast is not None:
        assert fast == slow
        ordered = library_order(items)
        assert encode_header(ordered, metadata)[0] == save_file_json(ordered, metadata)
    else:
        assert slow[0] is BadInputError and "whole number of bytes" in slow[1]


@settings(max_examples=200, deadline=None)
@given(entries(keys=st.sampled_from(["a", "b", "c", "__metadata__", "é", "\ud800"]), unique=False))
def test_refusals_name_the_same_entry_as_the_plain_loop(items):
    keys, specs = [e.key for e in items], [e.spec for e in items]
    expected = outcome(_reference, keys, specs)
    got = outcome(TensorLayout, items)
    if isinstance(got, TensorLayout):
        assert (got.sizes, bytes(got._text) + (b"," if items else b"")) == expected
    else:
        assert got == expected


def test_a_spec_with_a_list_shape_or_an_unknown_dtype_takes_the_plain_loop():
    listed = [Entry("a", TensorSpec("F32", [2, 2]), None)]  # type: ignore[arg-type]
    assert _columns(["a"], [listed[0].spec]) is None
    assert TensorLayout(listed).sizes == [16]
    with pytest.raises(BadInputError, match="dtype 'F99'"):
        TensorLayout([Entry("a", TensorSpec("F99", (1,)), None)])


@settings(max_examples=300, deadline=None)
@given(entries())
def test_library_order_is_the_librarys(items):
    assert library_order(items) == old_library_order(items)


def test_the_tensor_part_is_rendered_once_and_metadata_added_to_it():
    items = [Entry(f"k{i}", TensorSpec("F16", (i,)), None) for i in range(5)]
    layout = TensorLayout(items)
    short, long = layout.header({"sha": "0" * 64}), layout.header({"sha": "f" * 64})
    assert len(short) == len(long) and short.replace(b"0" * 64, b"f" * 64) == long
    assert layout.header({}, min_length=400)[8:].rstrip(b" ") == layout.header({})[8:].rstrip(b" ")
    assert len(layout.header({}, min_length=400)) == 8 + 400
    assert layout.offsets == {f"k{i}": (i * (i - 1), i * (i + 1)) for i in range(5)}
    assert encode_header([], {}) == (struct.pack("<Q", 8) + b"{}      ", {})


def test_a_lone_surrogate_in_metadata_is_named_after_the_tensors_pass():
    with pytest.raises(BadInputError, match=r"\('note'"):
        TensorLayout([Entry("a", TensorSpec("U8", (1,)), None)]).header({"note": "x\udc00"})


# --- copy runs ---------------------------------------------------------------------------------

A, B = Path("/a"), Path("/b")


@st.composite
def ranges(draw):
    """Entries whose data follow each other in one file, with gaps, odd sizes, other files and callables."""
    out, sizes, pos = [], [], 0
    path, mixed = A, draw(st.booleans())
    for i in range(draw(st.integers(0, 25))):
        n = draw(st.integers(0, 40))
        pos += draw(st.sampled_from([0, 0, 0, 1, 8]))  # mostly adjacent
        size = n if draw(st.integers(0, 9)) else n + 1  # now and then a range that disagrees with its spec
        data = FileRange(path, pos, pos + n)
        kind = draw(st.integers(0, 19)) if mixed else -1
        if kind == 0:
            data = lambda: None  # noqa: E731 - a tensor source
        elif kind == 1:
            data = FileRange(B, pos, pos + n)
        elif kind == 2:
            data = FileRange(Path("/a"), pos, pos + n)  # the same file, another Path object
        out.append(Entry(f"k{i}", None, data))  # type: ignore[arg-type]
        sizes.append(size)
        pos += n
    return out, sizes


@settings(max_examples=500, deadline=None)
@given(ranges(), st.integers(1, 100))
def test_copy_runs_in_columns_are_the_one_at_a_time_runs(case, limit):
    items, sizes = case
    assert _runs(items, sizes, limit) == _runs_loop([e.data for e in items], sizes, limit)


def test_copy_runs_of_one_file_break_at_gaps_mismatches_and_the_limit():
    items = [Entry(k, None, FileRange(A, s, e)) for k, (s, e) in  # type: ignore[arg-type]
             zip("abcdef", [(0, 4), (4, 8), (8, 12), (13, 17), (17, 21), (21, 30)])]
    assert _runs(items, [4, 4, 4, 4, 4, 4], 8) == [(0, 2), (2, 3), (3, 5), (5, 6)]
    assert _runs(items, [4, 4, 4, 4, 4, 9], 100) == [(0, 3), (3, 6)]
    assert _runs(items, [4, 5, 4, 4, 4, 9], 100) == [(0, 1), (1, 2), (2, 3), (3, 6)]
    assert sizes_of([TensorSpec("F4", (3,))]) == [2]


# --- entries as columns ------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(entries(), st.integers(1, 60), st.integers(0, 3))
def test_columns_give_what_the_same_entries_as_a_list_give(items, limit, shard_at):
    """Order, header, copy runs and shards of EntryColumns are those of its entries as a list."""
    sizes = [e.spec.nbytes for e in items]
    starts = [sum(sizes[:i]) + 16 for i in range(len(items))]
    columns = EntryColumns([e.key for e in items], [e.spec for e in items], A, starts,
                           [s + n for s, n in zip(starts, sizes)])
    listed = list(columns)
    assert listed == [Entry(e.key, e.spec, FileRange(A, s, s + n)) for e, s, n in zip(items, starts, sizes)]
    assert columns == listed and columns[1:3] == listed[1:3] and columns[-1:] == listed[-1:]
    ordered = library_order(columns)
    assert isinstance(ordered, EntryColumns) and list(ordered) == library_order(listed)
    if not all(s.nbytes * 8 == s.numel * DTYPE_BITS[s.dtype] for s in columns.specs):
        return
    assert TensorLayout(ordered).header({"m": "x"}) == TensorLayout(list(ordered)).header({"m": "x"})
    assert _runs(ordered, sizes_of(ordered.specs), limit) == _runs(list(ordered), sizes_of(ordered.specs), limit)
    max_bytes = None if shard_at == 0 else 8 * shard_at
    split, split_list = split_shards(ordered, max_bytes), split_shards(list(ordered), max_bytes)
    assert all(isinstance(g, EntryColumns) for g in split) and [list(g) for g in split] == split_list
