"""What a torch pickle may build is bounded before anything unpickles it (trial 5, F18): a deflated
data.pkl of millions of empty lists, or a memo index no pickler writes, is refused with the file
named, unless --allow-expansion; what torch.save writes passes. The archive checks need no torch."""
from __future__ import annotations

import pickle
import zipfile

import pytest

from mapper_core.errors import CheckpointError, ExpansionError
from mapper_core.io.formats import torch_archive
from mapper_core.io.formats.torch_archive import ExpansionBudget, check_archive, expansion_limit


def list_bomb(n: int) -> bytes:
    """``{'l': [[], [], ...]}``: n empty lists, one byte of pickle each."""
    return b"\x80\x02}X\x01\x00\x00\x00l](" + b"]" * n + b"es."


def archive(path, pkl: bytes, method: int = zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo("archive/data.pkl"), pkl, compress_type=method)
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/version", "3\n")
    return path


def legacy(path, pkl: bytes):
    head = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
    head += pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
    path.write_bytes(head + pkl + pickle.dumps([], protocol=2))
    return path


def check(path, allow: bool = False):
    size = path.stat().st_size
    return check_archive(path, ExpansionBudget(path, size, None if allow else expansion_limit(size)))


def test_the_step_limit_is_a_floor_or_a_share_of_the_file():
    assert torch_archive.step_limit(1000) == torch_archive.STEP_FLOOR == 1 << 17
    assert torch_archive.step_limit(1 << 30) == (1 << 30) // torch_archive.STEP_RATIO


@pytest.mark.parametrize("build", [archive, legacy], ids=["zip-deflated", "legacy"])
def test_a_pickle_of_many_objects_is_refused_naming_the_file(tmp_path, monkeypatch, build):
    monkeypatch.setattr(torch_archive, "STEP_FLOOR", 10_000)
    monkeypatch.setattr(torch_archive, "STEP_RATIO", 100)
    src = build(tmp_path / "objbomb.pt", list_bomb(50_000))
    with pytest.raises(ExpansionError) as caught:
        check(src)
    message = str(caught.value)
    assert message.startswith(f"{src}: refused: its pickle") and "more than 10,000 opcodes" in message
    assert "--allow-expansion" in message
    assert check(src, allow=True).facts.storages == {}  # the limit lifted: scanned as before


def test_a_memo_index_bomb_is_refused_before_the_scan_allocates(tmp_path):
    src = archive(tmp_path / "memo.pt", b"\x80\x02}X\x01\x00\x00\x00l]r" + (1 << 30).to_bytes(4, "little") + b"s.")
    with pytest.raises(ExpansionError, match=r"memo\.pt: refused: .*memo index 1,073,741,824"):
        check(src)


def test_a_stored_pickle_within_the_limit_passes(tmp_path):
    check(archive(tmp_path / "ok.pt", list_bomb(100_000), zipfile.ZIP_STORED))  # under the floor of 131,072


def test_what_torch_save_writes_passes_past_the_floor(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch_archive, "STEP_FLOOR", 1000)  # 300 one-element tensors: ~9,000 opcodes
    src = tmp_path / "tiny.pt"
    torch.save({f"layer.{i}.weight": torch.zeros(1, 1) for i in range(300)}, src)
    assert len(check(src).facts.storages) == 300


def test_the_command_line_refuses_with_exit_2(tmp_path):
    pytest.importorskip("torch")
    from cli_runner import mapper  # tests/helpers

    src = archive(tmp_path / "objbomb.pt", list_bomb(1_000_000))
    assert src.stat().st_size < 5000
    r = mapper("inspect", src)
    assert r.returncode == 2 and "objbomb.pt: refused: its pickle 'archive/data.pkl' runs more than 131,072" in r.stderr
    assert "Traceback" not in r.stderr


def shared_tuple_key(depth: int) -> bytes:
    """``{t: []}`` where ``t = (t', t')`` ``depth`` times over, each part fetched from the memo: ~6 bytes
    an opcode, and a key of 2**(depth + 1) - 1 parts to hash (trial 6, T5: depth 40 hung for ever)."""
    return b"\x80\x02K\x00q\x00" + b"h\x00h\x00\x86q\x00" * depth + b"}h\x00]s."


@pytest.mark.parametrize("build", [archive, legacy], ids=["zip", "legacy"])
@pytest.mark.parametrize("allow", [False, True], ids=["default", "allow-expansion"])
def test_a_key_of_shared_parts_is_refused_before_anything_hashes_it(tmp_path, build, allow):
    # 250 bytes of pickle: the unpickler's dict would hash a tuple of 2**41 parts, in one C call no
    # signal interrupts; --allow-expansion (memory) does not lift it: no torch.save writes it
    src = build(tmp_path / "hashkey.pt", shared_tuple_key(40))
    with pytest.raises(CheckpointError) as caught:
        check(src, allow=allow)
    message = str(caught.value)
    assert message.startswith(f"{src}: refused: its pickle") and "builds an object of 262,143 parts, more than 131,072" \
        in message and "torch.save never writes this" in message
    assert not isinstance(caught.value, ExpansionError)  # not one --allow-expansion lifts


def test_a_shared_key_below_the_limit_passes_and_many_such_keys_do_not(tmp_path):
    check(archive(tmp_path / "ok.pt", shared_tuple_key(15)))  # 65,535 parts, hashed once: in the budget
    many = b"\x80\x02K\x00q\x00" + b"h\x00h\x00\x86q\x00" * 15 + b"}(" + b"h\x00K\x00" * 3 + b"u."  # hashed 3 times
    with pytest.raises(CheckpointError, match=r"hashes objects of 196,605 parts in all, more than 131,072"):
        check(archive(tmp_path / "many.pt", many))


def test_the_command_line_ends_a_shared_key_pickle_at_once_with_exit_2(tmp_path):
    pytest.importorskip("torch")
    from cli_runner import mapper  # tests/helpers

    src = archive(tmp_path / "hashkey.pt", shared_tuple_key(100))
    r = mapper("inspect", src)
    assert r.returncode == 2 and "hashkey.pt: refused: its pickle 'archive/data.pkl' builds an object of" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_message_shows_at_most_a_short_part_of_each_key(tmp_path):
    # a key of 131,071 parts passes the walk; the "no state dict" message once printed all of it (5 MB)
    pytest.importorskip("torch")  # the unwrapping asks torch what a tensor is
    from mapper_core.io.formats.torch_unwrap import unwrap_state_dict

    key = 0
    for _ in range(16):
        key = (key, key)
    with pytest.raises(CheckpointError) as caught:
        unwrap_state_dict({key: [], "x" * 500: 1}, tmp_path / "k.pt")
    assert len(str(caught.value)) < 1000
    assert "... (500 characters)" not in str(caught.value) and "(502 characters)" in str(caught.value)
