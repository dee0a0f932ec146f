"""A conversion given a plan (not rules) still records which rules made it."""
from __future__ import annotations

import hashlib
import json
import struct

from mapper_core.io.convert import convert
from mapper_core.io.formats import open_checkpoint
from mapper_core.plan.make import make_plan
from mapper_core.rules import load_rules


def _header(path):
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n])


def test_a_plan_made_from_a_rules_file_carries_its_hash_into_the_output(tmp_path):
    src = tmp_path / "src.safetensors"
    header = json.dumps({"a.w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    src.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    rules_path = tmp_path / "r.yaml"
    rules_path.write_text("version: 1\nrules:\n  - match: 'a\\.(\\w+)'\n    target: 'b.{1}'\n")
    digest = hashlib.sha256(rules_path.read_bytes()).hexdigest()
    with open_checkpoint(src) as reader:
        plan = make_plan(reader.specs(), load_rules(rules_path))
        assert plan.rules_sha256 == digest
        result = convert(src, tmp_path / "out.safetensors", reader=reader, plan=plan)
    assert result.rules_sha256 == digest
    assert _header(tmp_path / "out.safetensors")["__metadata__"]["mapper.rules_sha256"] == digest
    # an explicit hash still wins, as before
    with open_checkpoint(src) as reader:
        convert(src, tmp_path / "o2.safetensors", reader=reader, plan=plan, rules_sha256="0" * 64)
    assert _header(tmp_path / "o2.safetensors")["__metadata__"]["mapper.rules_sha256"] == "0" * 64
