"""A target holding a regular expression's escapes or anchors, copied from ``match:``, is refused
with the template as it should be written (torch-free). Before, ``layers\\.{1}``, ``^output.weight``
and ``norm.weight$`` were valid rules and convert wrote those characters into the key names."""
from __future__ import annotations

import json

import pytest

from mapper_core.plan.make import make_plan
from mapper_core.rules import parse_rules
from mapper_core.specs import TensorSpec
from rules_problems import problems_of  # tests/helpers

RULES = "version: 1\nrules:\n  - match: 'model\\.layers\\.(\\d+)\\.(weight|bias)'\n    target: %s\n"


@pytest.mark.parametrize("target, said, fix", [
    (r"'layers\.{1}\.{2}'", r"holds '\.': a regular expression's escape", "write 'layers.{1}.{2}'"),
    (r"'layers\\.{1}.{2}'", r"holds '\\.': a regular expression's escape", "write 'layers.{1}.{2}'"),
    ("'^layers.{1}.{2}'", "holds a leading '^': a regular expression's anchor", "write 'layers.{1}.{2}'"),
    ("'layers.{1}.{2}$'", "holds a trailing '$': a regular expression's anchor", "write 'layers.{1}.{2}'"),
    (r"'^layers\.{1}\.{2}$'", r"holds '\.' and a leading '^', a trailing '$': a regular expression's syntax",
     "write 'layers.{1}.{2}'"),
    (r"'layers.\d+.{2}'", r"holds '\d'", "write the key as it should read, with {1} (or {name}) where"),
])
def test_regex_syntax_in_a_target_is_refused_with_the_fix(target, said, fix):
    [problem] = problems_of(RULES % target)
    assert problem.line == 4 and problem.path == "$.rules[0].target"
    assert said in problem.message and fix in problem.message
    assert "a template is plain text, only match: is a regular expression" in problem.message


def test_json_rules_are_checked_the_same_way():
    text = json.dumps({"version": 1, "rules": [{"match": r"lm_head\.weight", "target": "^output.weight"}]})
    [problem] = problems_of(text, "r.json")
    assert problem.path == "$.rules[0].target" and "write 'output.weight'" in problem.message


def test_a_table_entry_may_still_hold_a_backslash():
    """The documented way out for a key that truly holds one: table entries are written as they are."""
    rules = parse_rules("version: 1\nrules:\n  - match: '(a)\\.(\\w+)'\n    target: '{1|t}{2}'\n"
                        "    tables: {t: {a: 'odd\\.'}}\n", "r.yaml")
    plan = make_plan({"a.w": TensorSpec("F32", (1,))}, rules)
    assert [m.target for m in plan.mapped] == ["odd\\.w"]


def test_validate_refuses_the_file_with_each_line(tmp_path, mapper):
    (tmp_path / "t.yaml").write_text("version: 1\nrules:\n  - match: 'a\\.(\\d+)'\n    target: 'b\\.{1}'\n"
                                     "  - match: 'c'\n    target: 'norm.weight$'\n")
    proc = mapper("validate", tmp_path / "t.yaml")
    assert proc.returncode == 2, proc.stdout
    assert "t.yaml:4: $.rules[0].target: target 'b\\.{1}' holds '\\.'" in proc.stderr
    assert "t.yaml:6: $.rules[1].target: target 'norm.weight$' holds a trailing '$'" in proc.stderr
