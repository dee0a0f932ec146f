"""The static pickle scan: the storages a torch pickle names and the memory it asks for (no torch needed)."""
from __future__ import annotations

import io
import pickle
import pickletools

import pytest

from mapper_core.io.formats import pickle_steps
from mapper_core.io.formats.pickle_scan import ScanError, scan
from mapper_core.io.formats.pickle_steps import StepBudgetError, count_steps
from pickle_ops import Pickle  # tests/helpers


def test_storages_and_allocations_are_found():
    pkl = Pickle().op(b"}").text("w").tensor("7", "FloatStorage", 12, 0, (3, 4), (4, 1)).op(b"s")
    pkl.text("pad").glob("builtins", "bytearray").int(3 << 30).op(b"\x85R").op(b"s")
    facts = scan(io.BytesIO(pkl.bytes()))
    ref = facts.storages["7"]
    assert (ref.storage_class, ref.numel, ref.location) == ("torch.FloatStorage", 12, "cpu")
    assert facts.allocations == [("builtins.bytearray", 3 << 30)]


def test_a_request_through_the_memo_is_still_seen():
    # the size is memoised first and fetched back with BINGET: the scan follows the memo
    pkl = Pickle().int(5 << 30).op(b"q\x00").op(b"0").op(b"}").text("x")
    pkl.glob("torch", "FloatTensor").op(b"h\x00").op(b"\x85R").op(b"s")
    assert scan(io.BytesIO(pkl.bytes())).allocated == (5 << 30) * 8


def test_bytes_given_to_bytearray_are_not_an_allocation():
    assert scan(io.BytesIO(pickle.dumps({"b": bytearray(b"abc")}, protocol=2))).allocations == []


def test_a_malformed_pickle_is_a_scan_error():
    with pytest.raises(ScanError):
        scan(io.BytesIO(b"\x80\x02t."))  # TUPLE without a MARK
    with pytest.raises(ScanError):
        scan(io.BytesIO(b"\x80\x02X\xff\xff\xff\x00ab"))  # truncated argument


def test_nothing_the_pickle_names_is_imported_or_run(tmp_path):
    canary = tmp_path / "ran"
    pkl = Pickle().glob("os", "system").text(f"touch '{canary}'").op(b"\x85R")
    pkl.glob("builtins", "open").text(str(canary)).text("w").op(b"\x86R").op(b"\x86")
    facts = scan(io.BytesIO(pkl.bytes()))
    assert not canary.exists() and facts.allocations == [] and facts.storages == {}


def test_a_legacy_persistent_id_with_view_metadata_counts():
    pkl = Pickle().op(b"(").text("storage").glob("torch", "HalfStorage").text("k").text("cpu").int(10)
    pkl.op(b"N").op(b"tQ")  # legacy files add a sixth field (view metadata, None here)
    assert scan(io.BytesIO(pkl.bytes())).storages["k"].numel == 10


PICKLES = [{"a": [1, 2.5, "x" * 300, b"y" * 70_000, ("t", None, True), {1, 2}, 10**40, bytearray(b"zz")],
            "b": {"c": -3, "line\nbreak": "é"}}, list(range(300)), "s" * 70_000]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("chunk", [3, 1 << 20])
def test_count_steps_agrees_with_the_standard_library(monkeypatch, protocol, chunk):
    monkeypatch.setattr(pickle_steps, "_CHUNK", chunk)  # arguments and lines across every read boundary
    for obj in PICKLES:
        data = pickle.dumps(obj, protocol=protocol)
        assert count_steps(io.BytesIO(data), 10**9) == sum(1 for _ in pickletools.genops(io.BytesIO(data)))
    two = pickle.dumps(PICKLES[0], protocol=protocol) + pickle.dumps(PICKLES[1], protocol=protocol)
    assert count_steps(io.BytesIO(two), 10**9, pickles=2) == sum(
        sum(1 for _ in pickletools.genops(io.BytesIO(pickle.dumps(o, protocol=protocol)))) for o in PICKLES[:2])


def test_count_steps_refuses_past_its_limit_without_building():
    bomb = b"\x80\x02](" + b"]" * 100_000 + b"e."  # 100,000 empty lists in one list
    assert count_steps(io.BytesIO(bomb), 100_005) == 100_005  # PROTO ] ( ... e .
    with pytest.raises(StepBudgetError, match="more than 100,000 opcodes"):
        count_steps(io.BytesIO(bomb), 100_000)


@pytest.mark.parametrize("pkl", [b"\x80\x02]r" + (1 << 26).to_bytes(4, "little") + b".",  # LONG_BINPUT
                                 b"(lp" + b"9" * 5000 + b"\n.", b"(lp67108864\n."])  # PUT (protocol 0)
def test_a_memo_index_no_pickler_writes_is_refused(pkl):
    # the C unpickler sizes its memo table by the index: 9 bytes would allocate 1 GiB
    with pytest.raises(StepBudgetError, match="memo index"):
        count_steps(io.BytesIO(pkl), 10**9)


@pytest.mark.parametrize("pkl", [b"\x80\x02t.", b"\x80\x02X\xff\xff\xff\x00ab", b"\x80\x02\xff.", b"\x80\x02T\xff\xff\xff\xff."])
def test_count_steps_stops_quietly_at_damage_for_the_unpickler_to_name(pkl):
    count_steps(io.BytesIO(pkl), 10**9)
    with pytest.raises(ScanError):
        scan(io.BytesIO(pkl))


def test_what_the_pickler_writes_never_builds_more_parts_than_it_has_opcodes():
    # without sharing, an object has at most as many parts as there are opcodes: the size limit is
    # never what refuses a pickle written from a tree, even with the memo reusing parts
    shared = ("s", 1.5, (1, 2))
    objects = [*PICKLES, {"a": shared, "b": shared, "c": [shared] * 50, "d": {shared: 1, (shared, 2): 3}},
               {frozenset({1, 2, (3, 4)}): {1, 2}}]
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        for obj in objects:
            data = pickle.dumps(obj, protocol=protocol)
            steps = sum(1 for _ in pickletools.genops(io.BytesIO(data)))
            assert count_steps(io.BytesIO(data), None, size_limit=steps) == steps


@pytest.mark.parametrize("opcodes, limit, refused", [
    (b"(" + b"h\x00" * 3 + b"t", 131_072, "builds an object of 196,606 parts"),  # TUPLE from a mark
    (b"h\x00h\x00\x86", 131_070, "builds an object of 131,071 parts"),  # TUPLE2
    (b"(h\x00\x91(h\x00\x91", 131_000, "hashes objects of 131,070 parts in all"),  # FROZENSET hashes its members
    (b"\x8f(h\x00h\x00\x90", 131_000, "hashes objects of 131,070 parts in all"),  # ADDITEMS too
    (b"}h\x00K\x01sh\x00K\x02s", 131_000, "hashes objects of 131,070 parts in all"),  # SETITEM: keys only
    (b"c__builtin__\ntuple\nh\x00\x85R", 65_537, "builds an object of 65,538 parts"),  # REDUCE: may give a key
])
def test_every_way_to_build_or_hash_counts_the_parts(opcodes, limit, refused):
    base = b"\x80\x04K\x00q\x00" + b"h\x00h\x00\x86q\x00" * 15  # a tuple of 65,535 parts at memo 0
    with pytest.raises(StepBudgetError, match=refused):
        count_steps(io.BytesIO(base + opcodes + b"."), None, size_limit=limit)
    count_steps(io.BytesIO(base + opcodes + b"."), None, size_limit=200_000)  # within a larger limit


def test_a_dcp_metadata_of_shared_parts_is_refused_before_it_is_unpickled(tmp_path):
    # 75 bytes (trial 6, T5): {t: []} with t = (t', t') forty times over hung inspect, plan and convert
    from mapper_core.errors import CheckpointError
    from mapper_core.io.formats.dcp_metadata import read_layout

    meta = tmp_path / ".metadata"
    meta.write_bytes(b"\x80\x02K\x00q\x00" + b"h\x00h\x00\x86q\x00" * 40 + b"}h\x00]s.")
    with pytest.raises(CheckpointError, match=r"\.metadata: refused: the DCP metadata builds an object of 262,143 "
                                              r"parts, more than 131,072 .*never writes this"):
        read_layout(meta)


def test_an_allocation_of_many_huge_factors_is_measured_at_once():
    # bytearray((2**63-1,) * 200,000): multiplying it out took minutes; past 2**64 it is refused anyway
    import time

    pkl = Pickle().op(b"}").text("pad").glob("builtins", "bytearray").op(b"(")
    for _ in range(200_000):
        pkl.int(2**63 - 1)
    pkl.op(b"t\x85R").op(b"s")
    started = time.process_time()
    facts = scan(io.BytesIO(pkl.bytes()))
    assert time.process_time() - started < 5
    assert facts.allocated > 2**64


def test_a_container_counts_what_it_was_filled_with_through_the_memo():
    # torch.load runs OrderedDict(pairs): a list of three references to the list [t, 1] (memoised
    # before it was filled, as every pickler does) hashes t three times; t has 65,535 parts
    t = b"K\x00q\x00" + b"h\x00h\x00\x86q\x00" * 15
    pair = b"]q\x01(h\x00K\x01e"  # [t, 1] at memo 1, filled after it was stored
    pairs = b"0c collections\nOrderedDict\n](h\x01h\x01h\x01e\x85R."
    data = b"\x80\x02" + t + pair + pairs
    with pytest.raises(StepBudgetError, match=r"builds an object of 196,6\d\d parts, more than 131,072"):
        count_steps(io.BytesIO(data), None, size_limit=131_072)
    count_steps(io.BytesIO(data), None, size_limit=300_000)


def test_the_limit_grows_with_the_opcodes_read():
    # a tuple of 200,000 integers is no sharing: its size is within the opcodes before it, whatever the limit
    data = pickle.dumps(tuple(range(200_000)), protocol=2)
    count_steps(io.BytesIO(data), None, size_limit=1000)
