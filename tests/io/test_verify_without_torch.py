"""--verify on the header-only install: without torch, our strict reader reads the output back
and every data region must equal its source's bytes. Runs with and without torch installed
(with torch, the import is blocked for the call)."""
from __future__ import annotations

import json
import struct
import sys

import pytest

from mapper_core.errors import VerifyError
from mapper_core.io.convert import convert
from mapper_core.io.formats import open_checkpoint
from mapper_core.io.formats.writer import Entry, FileRange
from mapper_core.io.verify import verify_file


def write_raw(path, tensors: dict[str, tuple[str, list[int], bytes]]) -> None:
    """A safetensors file from raw bytes, without torch or the safetensors library."""
    header, data = {}, b""
    for key, (dtype, shape, raw) in tensors.items():
        header[key] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


@pytest.fixture(autouse=True)
def no_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails as if not installed


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "src.safetensors"
    write_raw(path, {"a": ("F32", [2, 3], bytes(range(24))), "b": ("BF16", [4], bytes(range(100, 108))),
                     "empty": ("F32", [0], b"")})
    return path


def entries(path):
    with open_checkpoint(path) as r:
        return [Entry(k, spec, FileRange(path, *r.byte_range(k))) for k, spec in r.specs().items()]


def test_a_faithful_copy_passes(tmp_path, src):
    out = tmp_path / "out.safetensors"
    assert convert(src, out, verify=True).checked == 3
    assert verify_file(out, entries(src)) == 3


def test_a_flipped_byte_is_named_with_its_offset(tmp_path, src):
    out = tmp_path / "out.safetensors"
    convert(src, out)
    raw = bytearray(out.read_bytes())
    start = 8 + struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:start])
    raw[start + header["b"]["data_offsets"][0] + 5] ^= 0x40
    out.write_bytes(bytes(raw))
    with pytest.raises(VerifyError, match=r"tensor 'b' differs from .*src.safetensors bytes \d+\.\.\d+ at byte 5"):
        verify_file(out, entries(src), shown_as="dest.safetensors")


def test_a_wrong_shape_or_a_missing_key_is_named(tmp_path, src):
    out = tmp_path / "out.safetensors"
    write_raw(out, {"a": ("F32", [3, 2], bytes(range(24))), "b": ("BF16", [4], bytes(range(100, 108))),
                    "empty": ("F32", [0], b"")})
    with pytest.raises(VerifyError, match=r"tensor 'a' reads back as F32 \[3, 2\], expected F32 \[2, 3\]"):
        verify_file(out, entries(src))
    write_raw(out, {"a": ("F32", [2, 3], bytes(range(24)))})
    with pytest.raises(VerifyError, match=r"holds 1 tensor, expected 3 \(missing 'b'\)"):
        verify_file(out, entries(src))


def test_an_unreadable_output_is_a_verify_error(tmp_path, src):
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{bad}")
    with pytest.raises(VerifyError, match="cannot be read back"):
        verify_file(out, entries(src), shown_as="dest.safetensors")


def test_a_computed_tensor_needs_torch_and_says_so(tmp_path, src):
    out = tmp_path / "out.safetensors"
    convert(src, out)
    computed = [Entry(e.key, e.spec, lambda: None) for e in entries(src)]
    with pytest.raises(VerifyError, match=r"pip install 'mapper-core\[torch\]'"):
        verify_file(out, computed)
