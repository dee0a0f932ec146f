"""--verify: the output re-read by the safetensors library must match its source bit for bit."""
from __future__ import annotations

import os
import struct

import pytest
import torch
from safetensors.torch import save_file

from mapper_core.io import verify as verify_mod
from mapper_core.io.convert import convert
from mapper_core.errors import VerifyError
from mapper_core.io.formats import open_checkpoint
from mapper_core.io.formats.writer import Entry, FileRange, FileWriter
from mapper_core.io.formats.shards import split_shards
from mapper_core.io.torch_dtypes import spec_of
from mapper_core.io.verify import verify_file


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "src.safetensors"
    save_file({"a": torch.arange(12, dtype=torch.float32).reshape(3, 4), "b": torch.ones(5, dtype=torch.bfloat16),
               "flag": torch.tensor(True), "none": torch.zeros(0)}, str(path))
    return path


def range_entries(path):
    with open_checkpoint(path) as r:
        return [Entry(k, spec, FileRange(path, *r.byte_range(k))) for k, spec in r.specs().items()]


def data_start(path) -> int:
    with open(path, "rb") as fh:
        return 8 + struct.unpack("<Q", fh.read(8))[0]


def test_a_faithful_copy_passes_and_counts_every_tensor(tmp_path, src):
    out = tmp_path / "out.safetensors"
    convert(src, out)
    assert verify_file(out, range_entries(src)) == 4


def test_a_flipped_byte_is_found_and_named(tmp_path, src, monkeypatch):
    monkeypatch.setattr(verify_mod, "PIECE", 16)  # the difference lies past the first piece
    out = tmp_path / "out.safetensors"
    convert(src, out)
    raw = bytearray(out.read_bytes())
    raw[data_start(out) + 37] ^= 0x01  # inside "a" (F32, written first)
    out.write_bytes(bytes(raw))
    with pytest.raises(VerifyError, match=r"tensor 'a' differs from .*src.safetensors bytes \d+\.\.\d+ at byte 37"):
        verify_file(out, range_entries(src))


def test_bits_not_values_are_compared(tmp_path):
    """-0.0 == 0.0 and NaN payloads: equal (or unequal) as numbers, different as bits."""
    source = torch.tensor([-0.0, 1.0])
    nan_a = torch.tensor([0x7FC00001], dtype=torch.int32).view(torch.float32)
    nan_b = torch.tensor([0x7FC00002], dtype=torch.int32).view(torch.float32)
    for written, expected in ((torch.tensor([0.0, 1.0]), source), (nan_b, nan_a)):
        out = tmp_path / "o.safetensors"
        save_file({"x": written}, str(out))
        with pytest.raises(VerifyError, match="tensor 'x' differs from its source tensor at byte"):
            verify_file(out, [Entry("x", spec_of(expected), lambda e=expected: e)])
        out.unlink()


def test_missing_extra_and_reshaped_tensors_are_reported(tmp_path, src):
    out = tmp_path / "out.safetensors"
    convert(src, out)
    entries = range_entries(src)
    with pytest.raises(VerifyError, match="missing 'zz'"):
        verify_file(out, entries + [Entry("zz", entries[0].spec, entries[0].data)])
    with pytest.raises(VerifyError, match="unexpected 'a'"):
        verify_file(out, [e for e in entries if e.key != "a"])
    with pytest.raises(VerifyError, match=r"'a' reads back as F32 \[3, 4\], expected F32 \[4, 3\]"):
        verify_file(out, [Entry(e.key, type(e.spec)(e.spec.dtype, (4, 3)) if e.key == "a" else e.spec, e.data)
                          for e in entries])


def test_a_file_the_library_cannot_open_is_a_verify_error(tmp_path, src):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 16)
    with pytest.raises(VerifyError, match="cannot open the output"):
        verify_file(bad, range_entries(src), shown_as="shown.safetensors")


@pytest.mark.parametrize("kind", ["safetensors", "torch"])
def test_convert_with_verify_refuses_a_damaged_output_and_writes_nothing(tmp_path, src, monkeypatch, kind):
    source = src
    if kind == "torch":
        source = tmp_path / "src.pt"
        torch.save({"a": torch.arange(12, dtype=torch.float32).reshape(3, 4)}, source)
    real = FileWriter.write

    def damaging(self, progress=None):
        real(self, progress)
        os.pwrite(self.fd, b"\xff", self.data_start)  # the first byte of the first tensor

    monkeypatch.setattr(FileWriter, "write", damaging)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(VerifyError, match="out.safetensors: tensor 'a' differs"):
        convert(source, tmp_path / "out.safetensors", verify=True)
    assert sorted(os.listdir(tmp_path)) == before


def test_the_output_is_mapped_afresh_for_each_run_of_tensors_and_left_unmapped(tmp_path, src, monkeypatch):
    # the library's tensors are views of its mapping of the whole output: a long-lived handle
    # would keep every page compared resident, so verify opens the file again every MAPPED_BYTES
    from mapper_core.io.formats.pages import FileMappings

    out = tmp_path / "out.safetensors"
    convert(src, out)
    monkeypatch.setattr(verify_mod, "MAPPED_BYTES", 8)
    opened, real_open = [], verify_mod._open

    def counting_open(*args):
        opened.append(args[0])
        return real_open(*args)

    monkeypatch.setattr(verify_mod, "_open", counting_open)
    entries = range_entries(src)
    assert verify_file(out, entries) == 4
    runs = split_shards(entries, 8)
    assert len(runs) >= 3 and len(opened) == 1 + len(runs)  # the key check, then one handle per run
    assert not FileMappings(out)
