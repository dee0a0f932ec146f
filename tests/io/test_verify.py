"""--verify: the output, read back, must match an independent read of its source bit for bit."""
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


def test_a_file_that_cannot_be_read_back_is_a_verify_error(tmp_path, src):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 16)
    with pytest.raises(VerifyError, match="shown.safetensors: the output cannot be read back"):
        verify_file(bad, range_entries(src), shown_as="shown.safetensors")


def test_a_file_the_library_refuses_is_a_verify_error(tmp_path, src, monkeypatch):
    out = tmp_path / "out.safetensors"
    convert(src, out)

    def refusing(*args, **kwargs):
        raise RuntimeError("HeaderTooLarge")

    monkeypatch.setattr("safetensors.safe_open", refusing)
    with pytest.raises(VerifyError, match="library cannot open the output: HeaderTooLarge"):
        verify_file(out, range_entries(src))


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


def test_the_output_is_read_through_two_buffers_not_mapped(tmp_path, src, monkeypatch):
    # mapping the output (as the library's tensors do) kept every page compared resident:
    # verify reads it with pread into a fixed buffer and never asks the library for a tensor
    from mapper_core.io.formats.pages import FileMappings
    import safetensors

    out = tmp_path / "out.safetensors"
    convert(src, out)
    real_open = safetensors.safe_open
    asked = []

    class NoTensors:
        def __init__(self, *args, **kwargs):
            self.f = real_open(*args, **kwargs)

        def __enter__(self):
            self.f.__enter__()
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def keys(self):
            return self.f.keys()

        def get_slice(self, key):
            asked.append(key)
            return self.f.get_slice(key)

        def get_tensor(self, key):
            raise AssertionError("verify decoded a tensor through the library's mapping")

    monkeypatch.setattr(safetensors, "safe_open", NoTensors)
    assert verify_file(out, range_entries(src)) == 4
    assert sorted(asked) == ["a", "b", "flag", "none"]  # the library still sees every tensor's dtype and shape
    assert not FileMappings(out)


def test_the_stream_verifier_compares_on_its_thread_and_checks_where_the_header_puts_each_tensor(tmp_path, src):
    from mapper_core.io.formats.safetensors_header import read_header
    from mapper_core.io.verify import StreamVerifier

    out = tmp_path / "out.safetensors"
    convert(src, out)
    header = read_header(out)
    entries = range_entries(src)

    def run(shift_key=None):
        v = StreamVerifier()
        try:
            for e in entries:
                at = header.data_start + header.offsets[e.key][0]
                v.written(out, "shown.safetensors", e, at + (1 if e.key == shift_key else 0))
            return v.finish([(out, "shown.safetensors", entries)])
        finally:
            v.close()

    assert run() == 4
    with pytest.raises(VerifyError, match="'none' is recorded at byte \\d+ of the output, but was written at"):
        run(shift_key="none")  # 0 bytes compare equal anywhere: only the header check can tell
    data = bytearray(out.read_bytes())
    data[header.data_start + header.offsets["b"][0]] ^= 1
    out.write_bytes(bytes(data))
    with pytest.raises(VerifyError, match="shown.safetensors: tensor 'b' differs .* at byte 0"):
        run()
