"""A file whose name says one format and whose content another is named for what it holds (no torch needed)."""
from __future__ import annotations

import importlib.util
import pickle
import zipfile

import pytest

from cli_runner import mapper  # tests/helpers
from mapper_core.errors import CheckpointError
from mapper_core.io.formats import builtin_formats, choose_format
from mapper_core.io.formats.sniff import what_is

LEGACY = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)


def torch_zip(path):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
        zf.writestr("archive/byteorder", "little")
    return path


CONTENT = {
    "a torch zip checkpoint": torch_zip,
    "a legacy torch checkpoint": lambda p: p.write_bytes(LEGACY) and p,
    "a GGUF file": lambda p: p.write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(24)) and p,
    "an ONNX model": lambda p: p.write_bytes(b"\x08\x08\x12\x07pytorch:\x02\x08\x01") and p,
    "a NumPy .npy array": lambda p: p.write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'}") and p,
    "an HDF5 file": lambda p: p.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(8)) and p,
}


@pytest.mark.parametrize("kind", list(CONTENT))
def test_content_is_named(tmp_path, kind):
    path = CONTENT[kind](tmp_path / "model.safetensors")
    assert what_is(path).startswith(kind)


@pytest.mark.parametrize("kind", ["a GGUF file", "an ONNX model", "an HDF5 file"])
def test_a_wrong_name_is_said_with_what_the_file_is(tmp_path, kind):
    path = CONTENT[kind](tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=f"is {kind}.*, not safetensors; .*format plugin"):
        choose_format(path, builtin_formats())
    r = mapper("inspect", path)
    if kind == "a GGUF file" and importlib.util.find_spec("mapper_gguf"):
        assert r.returncode == 0 and "(gguf)" in r.stdout  # the installed gguf plugin's sniffer reads it
        return
    assert r.returncode == 2 and f"is {kind}" in r.stderr and "header" not in r.stderr


def test_a_named_format_the_content_contradicts_is_refused(tmp_path):
    path = torch_zip(tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="is a torch zip checkpoint .*, not safetensors; .*--format torch"):
        choose_format(path, builtin_formats(), "safetensors")


def test_unrecognised_content_is_left_to_the_reader(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"junk")
    assert what_is(path) is None
    assert choose_format(path, builtin_formats()).name == "safetensors"


@pytest.mark.parametrize("name", ["model.pt", "model.bin"])
def test_a_truncated_torch_zip_is_called_truncated_with_what_to_do(tmp_path, name):
    whole = torch_zip(tmp_path / "whole.pt").read_bytes()
    path = tmp_path / name
    path.write_bytes(whole[: len(whole) // 2])  # an interrupted download: the zip directory at the end is gone
    assert what_is(path) == "a truncated or damaged zip archive"
    r = mapper("inspect", path)
    assert r.returncode == 2, r.stderr
    assert f"{path}: is a truncated or damaged zip archive" in r.stderr and "fetch or copy the file again" in r.stderr
    assert "format plugin" not in r.stderr and "Traceback" not in r.stderr
