"""A spec file (``--target spec.json``, or SRC) is read whole, so it is read only when it is a regular
file under the cap: a runaway file, /dev/zero and a refused value of megabytes are named, not
read into memory or copied into the message. Torch-free."""
from __future__ import annotations

import json

import pytest
from limited_mapper import limited_mapper
from tiny_safetensors import write_f32

from mapper_core.errors import CheckpointError
from mapper_core.io.formats import open_checkpoint, spec_json

RULES = "version: 1\nrules:\n  - match: '(.+)'\n    target: '{1}'\n"


@pytest.fixture
def folder(tmp_path):
    write_f32(tmp_path / "src.safetensors", {"a.w": [2, 2]})
    (tmp_path / "r.yaml").write_text(RULES)
    (tmp_path / "t.json").write_text(json.dumps({"a.w": {"dtype": "F32", "shape": [2, 2]}}) + " " * 100)
    return tmp_path


def _too_big(path, size: int) -> str:
    return (f"{path}: the file is {size:,} bytes; spec files are limited to {spec_json.MAX_BYTES:,} bytes (some 2 "
            "million tensors as write_spec_json writes them; parsing takes about 6x the file in memory). Check that "
            "this is really a spec file; if it is, and you have the memory, pass --allow-expansion (Python: "
            "allow_expansion=True)")


def test_the_cap_is_the_documented_256_mib():
    assert spec_json.MAX_BYTES == 256 * 1024 * 1024  # docs/formats.md says 256 MiB


def test_a_spec_file_past_the_cap_is_refused_before_it_is_read(folder, monkeypatch):
    path = folder / "t.json"
    path.write_text("{ not json at all " * 10)  # read, it would be "not valid JSON": the size comes first
    size = path.stat().st_size
    monkeypatch.setattr(spec_json, "MAX_BYTES", size - 1)
    with pytest.raises(CheckpointError) as caught:
        open_checkpoint(path)
    assert str(caught.value) == _too_big(path, size)


def test_allow_expansion_lifts_the_cap(folder, monkeypatch):
    path = folder / "t.json"
    monkeypatch.setattr(spec_json, "MAX_BYTES", 10)
    with open_checkpoint(path, allow_expansion=True) as reader:
        assert list(reader.specs()) == ["a.w"]


def test_a_target_spec_file_past_the_cap_is_refused_by_the_cli(folder, mapper, monkeypatch):
    size = (folder / "t.json").stat().st_size
    monkeypatch.setattr(spec_json, "MAX_BYTES", size - 1)
    done = mapper("plan", "src.safetensors", "--rules", "r.yaml", "--target", "t.json", cwd=folder)
    assert done.returncode == 2
    assert done.stderr == f"mapper: error: {_too_big('t.json', size)}\n"
    done = mapper("plan", "src.safetensors", "--rules", "r.yaml", "--target", "t.json", "--allow-expansion",
                  cwd=folder)
    assert done.returncode == 0, done.stderr


def test_a_spec_file_linked_to_dev_zero_is_refused_not_read(folder):
    (folder / "zero.json").symlink_to("/dev/zero")
    done = limited_mapper("plan", "src.safetensors", "--rules", "r.yaml", "--target", "zero.json", cwd=folder)
    assert done.returncode == 2, done.stderr
    assert done.stderr == ("mapper: error: zero.json: is a character device (a link to /dev/zero), not a regular "
                           "file; a spec file is a JSON file of tensor key → {dtype, shape}; give its path\n")


def test_a_refused_value_of_megabytes_is_shown_by_its_start(folder):
    path = folder / "long.json"
    path.write_text(json.dumps({"k" * 300: {"dtype": "X" * 1_000_000, "shape": [-1] * 100_000}}))
    with pytest.raises(CheckpointError) as caught:
        open_checkpoint(path)
    message = str(caught.value)
    assert len(message) < 2_000
    assert f"tensor '{'k' * 200}... (300 characters)': unknown dtype \"{'X' * 199}... (1,000,002 characters)" in message
    assert "shape must be a list of non-negative integers, got [-1, -1," in message
    assert "... (400,000 characters)" in message
