"""The bulk checks of a DCP .metadata (dcp_bulk) accept exactly what the per-entry checks accept: for any
chunks, chunks_fit says what checking each chunk says; for any storage entries, storage_in_bulk either
declines (the per-entry loop then names the fault) or gives what that loop gives. No torch needed."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mapper_core.errors import CheckpointError
from mapper_core.io.formats.dcp_bulk import DcpChunk, chunks_fit, overlap, storage_in_bulk
from mapper_core.io.formats.dcp_metadata import _CLASSES, _storage_checked

ITEM = st.one_of(st.integers(-3, 12), st.booleans(), st.none(), st.just("2"), st.just([1]))
TUPLE = st.one_of(st.lists(ITEM, max_size=3).map(tuple), st.none(), st.just([0, 0]), st.integers(0, 3))
SIZE = st.lists(st.integers(0, 12), max_size=3).map(tuple)


def _one_fits(offsets, sizes, size) -> bool:
    """The per-chunk check as the reader made it before the bulk checks (the reference)."""
    def ints(v):
        return type(v) is tuple and (not v or set(map(type, v)) == {int})

    return (ints(offsets) and ints(sizes) and len(offsets) == len(sizes) == len(size)
            and min(offsets, default=0) >= 0 and min(sizes, default=0) >= 0
            and all(map(int.__le__, map(int.__add__, offsets, sizes), size)))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(TUPLE, TUPLE), max_size=5), SIZE)
def test_chunks_fit_is_each_chunks_check(chunks, size):
    offs, sizs = [o for o, _ in chunks], [s for _, s in chunks]
    assert chunks_fit(offs, sizs, size) == all(_one_fits(o, s, size) for o, s in chunks)


def _entry(fields: dict, cls: str):
    record = _CLASSES[cls]()
    record.__dict__.update(fields)
    return record


NAME = st.one_of(st.sampled_from(["__0_0.distcp", "__1_0.distcp"]), st.sampled_from(["", "..", "a/b", 3, None, ["x"]]))
RANGE = st.one_of(st.integers(0, 50), st.integers(-2, -1), st.just(True), st.just("1"))
INDEX = st.fixed_dictionaries({"fqn": st.one_of(st.sampled_from(["w", "b"]), st.just(7)),
                               "offset": st.one_of(st.none(), st.lists(ITEM, max_size=2).map(tuple), st.just([0]))})
INFO = st.fixed_dictionaries({"relative_path": NAME, "offset": RANGE, "length": RANGE},
                             optional={"transform_descriptors": st.sampled_from([None, [], ["zstd"], "zstd", [3]])})


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(INDEX, INFO), max_size=4))
def test_storage_in_bulk_declines_or_agrees_with_the_checked_loop(entries):
    storage = {_entry(index, "MetadataIndex"): _entry(info, "_StorageInfo") for index, info in entries}
    index_type, info_type = _CLASSES["MetadataIndex"], _CLASSES["_StorageInfo"]

    def bad(what):
        return CheckpointError(what)

    bulk = storage_in_bulk(storage, index_type, info_type)
    try:
        checked = _storage_checked(storage, index_type, info_type, bad)
    except CheckpointError:
        assert bulk is None
        return
    assert bulk is None or bulk == checked


def test_a_foreign_entry_is_left_to_the_checked_loop():
    index_type, info_type = _CLASSES["MetadataIndex"], _CLASSES["_StorageInfo"]
    assert storage_in_bulk({"w": _entry({}, "_StorageInfo")}, index_type, info_type) is None
    assert storage_in_bulk({}, index_type, info_type) == {}


def test_overlap_of_many_chunks_is_found_without_a_copy_per_chunk():
    rows = [DcpChunk((i, 0), (1, 4), "f", 0, 0) for i in range(20000)]
    assert not overlap(rows)
    assert overlap(rows + [DcpChunk((19998, 2), (2, 1), "f", 0, 0)])
    assert overlap([DcpChunk((0,), (3,), "f", 0, 0), DcpChunk((2,), (1,), "f", 0, 0)])
    assert not overlap([DcpChunk((0,), (0,), "f", 0, 0), DcpChunk((0,), (2,), "f", 0, 0)])  # empty meets nothing
