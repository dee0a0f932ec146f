"""A torch zip whose directory puts two records over the same bytes, or names a record its own header
does not, is refused as damaged or ambiguous, naming the records (trial6 T11): a memory-mapped read
made two tensors torch.load keeps apart look tied."""
from __future__ import annotations

import struct
import zipfile

import pytest

torch = pytest.importorskip("torch")

import hostile_torch as H  # noqa: E402  tests/helpers
from pickle_ops import Pickle  # noqa: E402  tests/helpers

RESAVE = "Re-save the state dict with torch.save from wherever the file came from"
STATE = {"a": torch.ones(4), "b": torch.full((4,), 2.0)}


def rules_file(tmp) -> str:
    path = tmp / "rules.yaml"
    path.write_text("version: 1\nname: r\nrules:\n  - match: '(.*)'\n    target: '{1}'\n")
    return str(path)


def refused_everywhere(mapper, tmp_path, src) -> str:
    out = tmp_path / "o.safetensors"
    messages = set()
    for command in (["convert", src, out, "--verify"], ["inspect", src], ["plan", src, "--rules", rules_file(tmp_path)]):
        done = mapper(*command)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        messages.add(done.stderr)
    assert not out.exists()
    assert len(messages) == 1
    return messages.pop()


def test_two_directory_entries_over_one_record_are_refused_not_tied(tmp_path, mapper):
    src = H.record_points_at(tmp_path / "swap.pt", STATE, "data/0", "data/1")
    loaded = torch.load(src, weights_only=True)  # two storages with the same values: no tie
    assert torch.equal(loaded["a"], loaded["b"])
    assert loaded["a"].untyped_storage().data_ptr() != loaded["b"].untyped_storage().data_ptr()
    with zipfile.ZipFile(src) as zf:
        at = zf.getinfo("swap/data/1").header_offset
    assert refused_everywhere(mapper, tmp_path, src) == (
        f"mapper: error: {src}: the zip archive's records 'swap/data/0' and 'swap/data/1' overlap (the zip directory "
        f"puts both at byte {at:,}); readers disagree on what each holds (torch's memory-mapped load maps both onto the "
        "same bytes, as if they were one tensor; torch.load reads two copies; Python's zipfile, from 3.12, refuses "
        f"them), so the file is ambiguous and refused on purpose. {RESAVE}\n")


def _with_a_header_inside(path):
    """data/0's bytes hold a whole local record named like data/1, and the directory points data/1 there:
    every local header names its record, yet data/1 lies inside data/0."""
    name = b"archive/data/1"
    inner = struct.pack("<4s22xHH", b"PK\x03\x04", len(name), 0) + name + struct.pack("<4f", 9, 9, 9, 9)
    storage0 = inner + b"\0" * (-len(inner) % 4)
    pkl = Pickle().op(b"}").text("a").tensor("0", "FloatStorage", len(storage0) // 4, 0, (4,), (1,)).op(b"s")
    pkl.text("b").tensor("1", "FloatStorage", 4, 0, (4,), (1,)).op(b"s")
    H.archive_with_pickle(path, pkl.bytes(), {"0": storage0, "1": struct.pack("<4f", 2, 2, 2, 2)})
    data = bytearray(path.read_bytes())
    entries = H.central_entries(bytes(data))
    header0 = struct.unpack_from("<I", data, entries["data/0"][0] + 42)[0]
    inside = data.index(b"PK\x03\x04" + b"\0" * 22, header0 + 30)  # the record inside data/0's bytes
    struct.pack_into("<I", data, entries["data/1"][0] + 42, inside)
    path.write_bytes(bytes(data))
    return path, inside


def test_a_record_placed_inside_another_is_refused(tmp_path, mapper):
    src, inside = _with_a_header_inside(tmp_path / "inner.pt")
    message = refused_everywhere(mapper, tmp_path, src)
    assert message.startswith(f"mapper: error: {src}: the zip archive's records 'archive/data/0' and 'archive/data/1' "
                              f"overlap (the zip directory puts 'archive/data/1' at byte {inside:,}, inside "
                              "'archive/data/0' (bytes ")
    assert message.endswith(f"so the file is ambiguous and refused on purpose. {RESAVE}\n")


def test_a_local_header_naming_another_record_is_refused(tmp_path, mapper):
    src = H.local_name_differs(tmp_path / "named.pt", STATE, "data/0", "data/9")
    assert torch.equal(torch.load(src, weights_only=True)["a"], torch.ones(4))  # torch reads by the directory
    assert refused_everywhere(mapper, tmp_path, src) == (
        f"mapper: error: {src}: the zip directory's name and the record's own header disagree for 'named/data/0' "
        "(its local header says 'named/data/9'); the zip archive is damaged, and what its tensors hold would depend "
        f"on the reader: refused. {RESAVE}\n")


def test_a_directory_entry_pointing_where_no_record_starts_is_refused(tmp_path, mapper):
    src = tmp_path / "off.pt"
    torch.save(STATE, src)
    data = bytearray(src.read_bytes())
    at = H.central_entries(bytes(data))["data/1"][0]
    struct.pack_into("<I", data, at + 42, struct.unpack_from("<I", data, at + 42)[0] + 1)
    src.write_bytes(bytes(data))
    message = refused_everywhere(mapper, tmp_path, src)
    assert "the zip directory puts record 'off/data/1' at byte" in message and "where no record starts" in message
    assert message.endswith(f"{RESAVE}\n")


def test_a_dcp_chunk_blob_with_overlapping_records_is_refused(tmp_path, mapper):
    # a DCP chunk is a torch.save blob inside a .distcp file: it gets the same archive checks
    blob = H.record_points_at(tmp_path / "blob.pt", {"w": torch.zeros(4)}, "data/0", "byteorder").read_bytes()
    folder = H.dcp_folder_with_blob(tmp_path / "ckpt", blob)
    done = mapper("convert", folder, tmp_path / "o.safetensors", "--verify")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"mapper: error: {folder / '__0_0.distcp'}: 'b' (chunk at [0], bytes 0+{len(blob)}): "
                                  "the zip archive's records ")
    assert "'blob/byteorder'" in done.stderr and "'blob/data/0'" in done.stderr and " overlap " in done.stderr
    assert not (tmp_path / "o.safetensors").exists()
