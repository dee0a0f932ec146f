"""`mapper export` says why each target key it does not map back is left behind (no rule, declared
new, skipped on a shape mismatch), grouped with counts, and lists them sorted, in text and JSON.
Torch-free: the fixtures are hand-written safetensors files and the export copies bytes."""
from __future__ import annotations

import json

from tiny_safetensors import write_f32

from mapper_core.io.export import plan_export
from mapper_core.rules import parse_rules
from mapper_core.specs import TensorSpec

RULES = """\
version: 1
rules:
  - match: 'enc\\.(\\d+)\\.weight'
    target: 'encoder.{1}.weight'
    on_shape_mismatch: skip
new: ['head\\..*']
"""
# written in this (unsorted) order on purpose; the reader keeps a file's order
TUNED = {"encoder.0.weight": [4, 3], "zeta.bias": [5], "encoder.2.weight": [6, 6], "head.weight": [5, 2],
         "encoder.1.weight": [2, 4], "alpha.weight": [3]}


def files(tmp_path):
    write_f32(tmp_path / "src.safetensors", {"enc.0.weight": [4, 3], "enc.1.weight": [2, 4], "enc.2.weight": [5, 5]})
    write_f32(tmp_path / "tuned.safetensors", TUNED)
    (tmp_path / "rules.yaml").write_text(RULES)
    return tmp_path


def test_text_groups_the_left_behind_keys_by_reason_with_counts(tmp_path, mapper):
    files(tmp_path)
    proc = mapper("export", "tuned.safetensors", "back.safetensors", "--rules", "rules.yaml", "--source-specs",
                  "src.safetensors", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    start = lines.index("left behind 4 target keys (--unmatched keep writes them):")
    assert lines[start + 1:start + 4] == [
        "  2 keys no rule produces: alpha.weight, zeta.bias",
        "  1 key declared new (new: in the rules): head.weight",
        "  1 key skipped on a shape mismatch (on_shape_mismatch: skip): encoder.2.weight"]
    assert "no rule produces: alpha.weight, encoder.2.weight" not in proc.stdout


def test_json_keeps_its_fields_sorts_the_list_and_adds_each_reason(tmp_path, mapper):
    files(tmp_path)
    proc = mapper("export", "tuned.safetensors", "back.safetensors", "--rules", "rules.yaml", "--source-specs",
                  "src.safetensors", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["left_behind"] == ["alpha.weight", "encoder.2.weight", "head.weight", "zeta.bias"]
    assert report["reasons"] == {"alpha.weight": "no_rule", "encoder.2.weight": "shape_skip",
                                 "head.weight": "declared_new", "zeta.bias": "no_rule"}
    assert report["summary"]["left_behind"] == 4 and report["written"]["tensors"] == 2


def test_kept_keys_say_their_reasons_too(tmp_path, mapper):
    files(tmp_path)
    proc = mapper("export", "tuned.safetensors", "back.safetensors", "--rules", "rules.yaml", "--unmatched", "keep",
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # without --source-specs the mismatched key cannot be told apart: its template inverts, so it is exported
    assert "kept 3 target keys, under their own names:\n  2 keys no rule produces: alpha.weight, zeta.bias\n" \
           "  1 key declared new (new: in the rules): head.weight" in proc.stdout


def test_one_reason_stays_one_line(tmp_path, mapper):
    files(tmp_path)
    (tmp_path / "rules.yaml").write_text(RULES.split("new:")[0])
    proc = mapper("export", "tuned.safetensors", "back.safetensors", "--rules", "rules.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert ("left behind 3 target keys no rule produces (--unmatched keep writes them): alpha.weight, head.weight, "
            "zeta.bias") in proc.stdout


def test_unmatched_error_lists_each_refused_key_with_its_reason(tmp_path, mapper):
    files(tmp_path)
    proc = mapper("export", "tuned.safetensors", "back.safetensors", "--rules", "rules.yaml", "--unmatched", "error",
                  "--source-specs", "src.safetensors", cwd=tmp_path)
    assert proc.returncode == 1 and not (tmp_path / "back.safetensors").exists()
    assert "4 target keys the export does not produce; nothing was written" in proc.stderr
    assert ("  alpha.weight\n  encoder.2.weight: skipped on a shape mismatch (on_shape_mismatch: skip)\n"
            "  head.weight: declared new (new: in the rules)\n  zeta.bias") in proc.stderr


def test_the_python_plan_knows_the_reasons_and_sorts():
    ruleset = parse_rules(RULES, "rules.yaml")
    target = {k: TensorSpec("F32", tuple(s)) for k, s in TUNED.items()}
    source = {"enc.0.weight": TensorSpec("F32", (4, 3)), "enc.2.weight": TensorSpec("F32", (5, 5))}
    plan = plan_export(ruleset, target, source)
    assert plan.left_behind == ("alpha.weight", "encoder.1.weight", "encoder.2.weight", "head.weight", "zeta.bias")
    assert [plan.reason(k) for k in plan.left_behind] == ["no_rule", "no_rule", "shape_skip", "declared_new",
                                                          "no_rule"]
    by_templates = plan_export(ruleset, target)
    assert by_templates.left_behind == ("alpha.weight", "head.weight", "zeta.bias")
    assert by_templates.to_dict()["reasons"]["head.weight"] == "declared_new"
