"""The static pickle scan: the storages a torch pickle names and the memory it asks for (no torch needed)."""
from __future__ import annotations

import io
import pickle

import pytest

from mapper_core.io.formats.pickle_scan import ScanError, scan
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
