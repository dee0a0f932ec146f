"""What `mapper convert` says besides what it wrote: target keys nothing fills, options its source cannot take."""
from __future__ import annotations

import json
import struct

from cli_runner import mapper  # tests/helpers


def _safetensors(path, keys):
    entries = {k: {"dtype": "F32", "shape": [2], "data_offsets": [8 * i, 8 * i + 8]} for i, k in enumerate(keys)}
    header = json.dumps(entries).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * (8 * len(keys)))


def _files(tmp_path):
    src = tmp_path / "src.safetensors"
    _safetensors(src, ["a.w"])
    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\nrules:\n  - match: 'a\\.(\\w+)'\n    target: 'b.{1}'\nnew: ['head\\..*']\n")
    target = tmp_path / "t.json"
    spec = {"dtype": "F32", "shape": [2]}
    target.write_text(json.dumps({"tensors": {"b.w": spec, "c.w": spec, "head.w": spec}}))
    return src, rules, target


def test_target_keys_nothing_fills_are_named_after_the_write(tmp_path):
    src, rules, target = _files(tmp_path)
    done = mapper("convert", src, tmp_path / "out.safetensors", "--rules", rules, "--target", target)
    assert done.returncode == 0
    assert "target: 1 key nothing fills (uninitialized): c.w; declare them under new:" in done.stdout
    assert "target: 1 key declared new" in done.stdout
    done = mapper("convert", src, tmp_path / "o2.safetensors", "--rules", rules, "--target", target, "--json")
    data = json.loads(done.stdout)
    assert data["uninitialized"] == ["c.w"] and data["expected_uninitialized"] == ["head.w"]
    done = mapper("convert", src, tmp_path / "o3.safetensors", "--rules", rules, "--target", target, "--strict")
    assert done.returncode == 1 and not (tmp_path / "o3.safetensors").exists()


def test_without_a_target_nothing_is_said_of_one(tmp_path):
    src, rules, _ = _files(tmp_path)
    done = mapper("convert", src, tmp_path / "out.safetensors", "--rules", rules)
    assert done.returncode == 0 and "target:" not in done.stdout
    done = mapper("convert", src, tmp_path / "o2.safetensors", "--rules", rules, "--json")
    assert "uninitialized" not in json.loads(done.stdout)


def test_strip_prefix_on_a_safetensors_source_is_refused_not_ignored(tmp_path):
    src, rules, _ = _files(tmp_path)
    done = mapper("convert", src, tmp_path / "out.safetensors", "--strip-prefix", "a.")
    assert done.returncode == 2 and "--strip-prefix applies to torch checkpoints" in done.stderr
    assert not (tmp_path / "out.safetensors").exists()
