"""Shapes a valid checkpoint can hold (thousands of dimensions of 1) are shown bounded in convert's and
export's refusals, as in the readers' (specs.shown_shape): one line, not kilobytes."""
from __future__ import annotations

import json

from tiny_safetensors import write_f32  # tests/helpers


def test_a_target_misfit_of_many_dimensions_is_one_short_line(tmp_path, mapper):
    many = [1] * 5000 + [2]
    src = write_f32(tmp_path / "src.safetensors", {"w": many})
    target = write_f32(tmp_path / "target.safetensors", {"w": [3]})
    done = mapper("convert", src, tmp_path / "out.safetensors", "--target", target)
    assert done.returncode != 0 and not (tmp_path / "out.safetensors").exists()
    assert "(5,001 dimensions)" in done.stderr and len(done.stderr) < 2000, done.stderr[:500]


def test_an_export_mismatch_of_many_dimensions_is_one_short_line(tmp_path, mapper):
    src = write_f32(tmp_path / "fine.safetensors", {"b": [1] * 5000 + [2]})
    specs = tmp_path / "source.json"
    specs.write_text(json.dumps({"a": {"dtype": "F32", "shape": [3]}}))
    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\nrules:\n  - match: 'a'\n    target: 'b'\n")
    done = mapper("export", src, tmp_path / "back.safetensors", "--rules", rules, "--source-specs", specs)
    assert done.returncode != 0
    assert len(done.stderr) < 2000, done.stderr[:500]
