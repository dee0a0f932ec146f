"""mapper plan with a target says when a freeze or param-group pattern names no target key."""
from __future__ import annotations

import json

from cli_runner import mapper  # tests/helpers

RULES = """version: 1
rules:
  - match: 'backbone\\.(.+)'
    target: 'encoder.{{1}}'
freeze:
  pretrained: ['{freeze}']
param_groups:
  slow: {{match: ['{group}'], lr: 1.0e-5}}
"""


def run(tmp_path, freeze, group, *extra):
    (tmp_path / "src.json").write_text(json.dumps({"backbone.w": {"dtype": "F32", "shape": [2]}}))
    (tmp_path / "tgt.json").write_text(json.dumps({"encoder.w": {"dtype": "F32", "shape": [2]}}))
    (tmp_path / "r.yaml").write_text(RULES.format(freeze=freeze, group=group))
    return mapper("plan", tmp_path / "src.json", "--rules", tmp_path / "r.yaml", *extra)


def test_a_group_written_with_source_names_is_named(tmp_path):
    done = run(tmp_path, "backbone\\..*", "encoder\\..*", "--target", tmp_path / "tgt.json")
    assert done.returncode == 0, done.stderr
    assert "freeze group 'pretrained': the pattern 'backbone\\..*' matches no key of the target (1 key," in done.stderr
    assert "is it a source name?" in done.stderr and "param group" not in done.stderr


def test_groups_that_name_target_keys_pass_quietly(tmp_path):
    done = run(tmp_path, "encoder\\..*", "encoder\\.w", "--target", tmp_path / "tgt.json")
    assert done.returncode == 0 and "matches no key" not in done.stderr


def test_without_a_target_nothing_is_checked(tmp_path):
    done = run(tmp_path, "nothing", "nothing\\.either")
    assert done.returncode == 0 and "matches no key" not in done.stderr


def test_a_param_group_shadowed_by_an_earlier_one_is_named(tmp_path):
    (tmp_path / "src.json").write_text(json.dumps({"backbone.w": {"dtype": "F32", "shape": [2]}}))
    (tmp_path / "tgt.json").write_text(json.dumps({"encoder.w": {"dtype": "F32", "shape": [2]}}))
    (tmp_path / "r.yaml").write_text(
        "version: 1\nrules:\n  - match: 'backbone\\.(.+)'\n    target: 'encoder.{1}'\n"
        "param_groups:\n  first: {match: ['encoder\\..*'], lr: 1.0e-4}\n  dup: {match: ['encoder\\.w'], lr: 5.0}\n")
    done = mapper("plan", tmp_path / "src.json", "--rules", tmp_path / "r.yaml", "--target", tmp_path / "tgt.json")
    assert done.returncode == 0, done.stderr
    assert "param group 'dup' gets no key of the target: every key it matches is taken by an earlier group" \
        in done.stderr and "param group 'first'" not in done.stderr
