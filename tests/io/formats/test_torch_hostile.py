"""Hostile torch files: the result equals torch.load(weights_only=True) byte for byte, or is a clear
refusal (exit 2, the file and the record or key named, what to do); memory bombs are refused."""
from __future__ import annotations

import struct
import zipfile

import pytest
import torch
from safetensors.torch import load_file

import hostile_torch as H  # tests/helpers
from bitwise import same_bits  # tests/helpers
from cli_runner import mapper, mapper_process  # tests/helpers
from mapper_core.errors import CheckpointError, ExpansionError, VerifyError
from mapper_core.io.convert import convert
from mapper_core.io.formats import open_checkpoint, torch_archive, torch_pickle

STATE = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.arange(5, dtype=torch.int16),
         "c": torch.linspace(-1, 1, 7, dtype=torch.float64), "d": torch.tensor([1, 0, 1], dtype=torch.uint8)}


def fresh() -> dict:
    return {k: v.clone() for k, v in STATE.items()}


def converted_equals_torch_load(src, out) -> None:
    expected = torch.load(src, weights_only=True)
    got = load_file(str(out))
    assert set(got) == set(expected)
    for k, t in expected.items():
        assert same_bits(got[k], t), k


@pytest.mark.parametrize("build", [H.big_endian, H.deflated_storage], ids=["big-endian", "deflated"])
def test_output_equals_torch_load_byte_for_byte(tmp_path, build):
    src = build(tmp_path / "m.pt", fresh())
    result = convert(src, tmp_path / "o.safetensors", verify=True)
    assert result.checked == 4 and result.method == "tensor"  # never the raw (swapped or compressed) file bytes
    converted_equals_torch_load(src, tmp_path / "o.safetensors")


def test_a_big_endian_view_is_swapped_and_verified(tmp_path):
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    src = H.big_endian(tmp_path / "v.pt", {"w": base, "t": base.t()})
    convert(src, tmp_path / "o.safetensors", verify=True)
    converted_equals_torch_load(src, tmp_path / "o.safetensors")


def test_a_record_shorter_than_its_storage_is_refused(tmp_path):
    src = H.short_storage(tmp_path / "s.pt", {"w": torch.arange(64, dtype=torch.float32)}, keep=100)
    with pytest.raises(RuntimeError):
        torch.load(src, weights_only=True)  # torch refuses it too
    r = mapper("convert", src, tmp_path / "o.safetensors", "--verify")
    assert r.returncode == 2 and not (tmp_path / "o.safetensors").exists()
    assert "record 'archive/data/0' holds 100 bytes" in r.stderr and "256 bytes" in r.stderr
    assert "truncated or damaged" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("record", ["data/0", "data.pkl", "byteorder"])
def test_a_record_named_twice_is_refused_as_ambiguous(tmp_path, record):
    # torch.load reads the first data/0 (sevens), a memory-mapped read of the last one would give zeros:
    # the bytes converted depended on the reader, and --verify compared them with themselves
    state = {"w": torch.zeros(4)}
    first = {"data/0": struct.pack("<4f", 7, 7, 7, 7), "byteorder": b"little"}.get(record)
    src = H.record_twice(tmp_path / "twice.pt", state, record, first if first is not None else H.saved(
        tmp_path / "p.pt", {"w": torch.ones(4)})["data.pkl"])
    if record == "data/0":
        assert torch.equal(torch.load(src, weights_only=True)["w"], torch.full((4,), 7.0))
    out = tmp_path / "o.safetensors"
    for command in (["convert", src, out, "--verify"], ["inspect", src], ["plan", src, "--rules", rules_file(tmp_path)]):
        done = mapper(*command)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr == (
            f"mapper: error: {src}: the zip archive holds two records named 'archive/{record}'; readers disagree on "
            "which copy counts (torch's memory-mapped load takes the first, Python's zipfile the last), so the file "
            "is ambiguous and refused on purpose. Re-save the state dict with torch.save from wherever the file came "
            "from\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["twice.pt", "rules.json"] + (["p.pt"] if first is None else []))


def test_a_dcp_chunk_blob_naming_a_record_twice_is_refused(tmp_path):
    # a DCP chunk is a torch.save blob inside a .distcp file: the same two copies, the same refusal
    blob = H.record_twice(tmp_path / "blob.pt", torch.zeros(4), "data/0", struct.pack("<4f", 7, 7, 7, 7)).read_bytes()
    folder = H.dcp_folder_with_blob(tmp_path / "ckpt", blob)
    done = mapper("convert", folder, tmp_path / "o.safetensors", "--verify")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"mapper: error: {folder / '__0_0.distcp'}: 'b' (chunk at [0], bytes 0+{len(blob)}): "
                                  "the zip archive holds two records named 'archive/data/0'; readers disagree")
    assert not (tmp_path / "o.safetensors").exists()


def rules_file(tmp) -> str:
    path = tmp / "rules.json"
    path.write_text('{"version": 1, "rules": [{"match": "w", "target": "v"}]}')
    return str(path)


def test_verify_reads_the_zip_not_the_mapping(tmp_path, monkeypatch):
    # Force the old mistake: map a deflated file and copy its compressed bytes. --verify, reading
    # the record through the zip reader, must see that the output is not the file's tensor.
    src = H.deflated_storage(tmp_path / "m.pt", fresh())
    real = torch_pickle.check_archive

    def mapped_anyway(*args, **kwargs):
        archive = real(*args, **kwargs)
        archive.in_memory = False
        return archive

    monkeypatch.setattr(torch_pickle, "check_archive", mapped_anyway)
    with pytest.raises(VerifyError, match="differs"):
        convert(src, tmp_path / "o.safetensors", verify=True)
    assert not (tmp_path / "o.safetensors").exists()


@pytest.mark.parametrize("make, expected", [
    (lambda p: torch.save({"w": torch.empty(3, 4, device="meta")}, p), "is a meta tensor"),
    (lambda p: torch.save({"w": torch.nested.nested_tensor([torch.ones(2), torch.ones(3)])}, p), "is a nested tensor"),
    (lambda p: H.stride0_view(p, 1 << 62), "no file or memory can hold it"),
], ids=["meta", "nested", "huge-stride-0"])
def test_tensors_safetensors_cannot_hold_exit_2(tmp_path, make, expected):
    src = tmp_path / "m.pt"
    with pytest.warns(UserWarning) if "nested" in expected else _nothing():
        make(src)
    r = mapper("convert", src, tmp_path / "o.safetensors", "--allow-expansion")
    assert r.returncode == 2, r.stderr
    assert f"tensor 'w' {expected}" in r.stderr or expected in r.stderr
    assert "Traceback" not in r.stderr and "Warning" not in r.stderr


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


BOMBS = {  # at full size in tests/benchmarks/bench_hostile.py; here against limits made small
    "bytearray": lambda p: H.bytearray_bomb(p, 3 << 30),
    "legacy-bytearray": lambda p: H.legacy_bytearray_bomb(p, 3 << 30),
    "deflated-pickle": lambda p: H.deflate_bomb(p, 4 << 20),
    "deflated-storage": lambda p: H.deflate_bomb(p, 4 << 20, "data/0"),
    "stride-0": lambda p: H.stride0_view(p, 1 << 30),
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_memory_bombs_are_refused_before_torch_allocates(tmp_path, name, monkeypatch):
    monkeypatch.setattr(torch_archive, "EXPANSION_FLOOR", 2 << 20)
    monkeypatch.setattr(torch_archive, "PICKLE_LIMIT", 2 << 20)
    src = BOMBS[name](tmp_path / "bomb.pt")
    assert src.stat().st_size < 1 << 20
    with pytest.raises(ExpansionError) as caught:
        open_checkpoint(src)
    message = str(caught.value)
    assert message.startswith(f"{src}: refused: ") and "--allow-expansion" in message
    r = mapper("convert", src, tmp_path / "o.safetensors")
    assert r.returncode == 2 and "refused:" in r.stderr and "Traceback" not in r.stderr


def test_the_default_limit_is_documented_and_bounds_small_files():
    assert torch_archive.expansion_limit(1000) == 256 << 20
    assert torch_archive.expansion_limit(1 << 30) == 4 << 30


def test_allow_expansion_reads_what_the_limit_refuses(tmp_path, monkeypatch):
    monkeypatch.setattr(torch_archive, "EXPANSION_FLOOR", 1024)
    src = H.stride0_view(tmp_path / "s.pt", 4096)  # 16 KiB from one float: past a 1 KiB floor
    assert mapper("convert", src, tmp_path / "o.safetensors").returncode == 2
    r = mapper("convert", src, tmp_path / "o.safetensors", "--allow-expansion", "--verify")
    assert r.returncode == 0, r.stderr
    converted_equals_torch_load(src, tmp_path / "o.safetensors")


def test_a_compressed_checkpoint_within_the_limit_is_read(tmp_path):
    src = H.deflate_bomb(tmp_path / "d.pt", 1 << 20, "data/0")
    convert(src, tmp_path / "o.safetensors", verify=True)
    converted_equals_torch_load(src, tmp_path / "o.safetensors")


def test_a_missing_storage_record_is_named(tmp_path):
    records = H.saved(tmp_path / "m.pt", fresh())
    del records["data/1"]
    src = H.write_archive(tmp_path / "m.pt", records)
    with pytest.raises(CheckpointError, match="no record 'archive/data/1'"):
        open_checkpoint(src)


def test_the_byteorder_record_must_be_little_or_big(tmp_path):
    records = H.saved(tmp_path / "m.pt", fresh())
    records["byteorder"] = b"middle"
    with pytest.raises(CheckpointError, match="byte order b'middle'"):
        open_checkpoint(H.write_archive(tmp_path / "m.pt", records))


def test_what_torch_save_writes_still_maps_and_copies(tmp_path):
    src = tmp_path / "m.pt"
    torch.save(fresh(), src)
    with zipfile.ZipFile(src) as zf:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    result = convert(src, tmp_path / "o.safetensors", verify=True)
    assert result.method == "byte-copy" and result.checked == 4
    converted_equals_torch_load(src, tmp_path / "o.safetensors")


def test_a_killed_trusted_load_was_warned_about_first(tmp_path):
    src = tmp_path / "dies.pt"
    torch.save({"w": torch.ones(2), "x": _Exits()}, src)
    r = mapper_process("inspect", src, "--trust-pickle")
    assert r.returncode == 7  # the payload ended the process
    assert r.stderr.startswith(f"mapper: warning: {src}: loading with trust_pickle")


class _Exits:
    def __reduce__(self):
        import os

        return (os._exit, (7,))


def _trusted(tmp_path):
    import collections

    src = tmp_path / "t.pt"
    torch.save({"w": torch.ones(2), "q": collections.deque([1])}, src)  # weights_only refuses the deque
    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\nname: r\nrules:\n  - match: 'w'\n    target: 'v'\n")
    return src, rules


@pytest.mark.parametrize("command", ["plan", "explain"])
def test_plan_and_explain_render_the_trust_warning_like_every_command(tmp_path, command):
    src, rules = _trusted(tmp_path)
    args = [command, src] + (["w"] if command == "explain" else []) + ["--rules", rules, "--trust-pickle"]
    r = mapper(*args)
    assert r.returncode == 0, r.stderr
    assert r.stderr == f"mapper: warning: {src}: loading with trust_pickle (weights_only=False): this file can " \
                       "run arbitrary code. Only do this for files from a source you trust.\n"


def test_the_library_warns_and_never_prints(tmp_path, capfd):
    from mapper_core.io.formats.torch_format import TrustPickleWarning

    src, _ = _trusted(tmp_path)
    with pytest.warns(TrustPickleWarning, match="can run arbitrary code"):
        open_checkpoint(src, trust_pickle=True).close()
    assert capfd.readouterr() == ("", "")


def test_a_failing_trusted_payload_was_warned_about_before_its_error(tmp_path):
    src = tmp_path / "fails.pt"
    torch.save({"w": torch.ones(2), "x": _Fails()}, src)
    r = mapper("inspect", src, "--trust-pickle")
    lines = r.stderr.splitlines()
    assert r.returncode == 2 and lines[0].startswith("mapper: warning:") and lines[1].startswith("mapper: error:")


class _Fails:
    def __reduce__(self):
        return (int, ("not a number",))


def test_an_allowed_stride0_view_is_written_in_pieces(tmp_path, monkeypatch):
    from mapper_core.io.formats import writer

    monkeypatch.setattr(torch_archive, "EXPANSION_FLOOR", 1024)
    monkeypatch.setattr(writer, "CHUNK", 4096)
    sizes = []

    def spy(tensor, limit):
        for piece in writer_pieces(tensor, limit):
            sizes.append(piece.numel() * piece.element_size())
            yield piece

    writer_pieces = writer.contiguous_pieces
    monkeypatch.setattr(writer, "contiguous_pieces", spy)
    src = H.stride0_view(tmp_path / "s.pt", 10_000)  # 40,000 bytes out of one float
    convert(src, tmp_path / "o.safetensors", allow_expansion=True)
    converted_equals_torch_load(src, tmp_path / "o.safetensors")
    assert sum(sizes) == 40_000 and max(sizes) <= 4096 and len(sizes) == 10
