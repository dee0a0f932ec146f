"""A target written with re.sub's \\1 or a shell's $1 is refused with the braces form (torch-free)."""
from __future__ import annotations

import pytest

from mapper_core.rules import parse_rules
from mapper_core.rules.template_hints import regex_syntax, sub_style_reference
from rules_problems import problems_of  # tests/helpers

RULES = "version: 1\nrules:\n  - match: 'conv(?P<i>\\d+)\\.(weight|bias)'\n    target: %s\n"


@pytest.mark.parametrize("target, said, fixed", [
    ("'c.\\1.weight'", "'\\1'", "'c.{1}.weight'"),
    ("'c.$1.bias'", "'$1'", "'c.{1}.bias'"),
    ("'c.\\g<i>.\\2'", "'\\g<i>', '\\2'", "'c.{i}.{2}'"),
    ("'c.${i}.$2'", "'${i}', '$2'", "'c.{i}.{2}'"),
])
def test_sub_style_group_references_are_refused_with_the_template_form(target, said, fixed):
    [problem] = problems_of(RULES % target)
    assert problem.line == 4 and problem.path == "$.rules[0].target"
    assert f"holds {said}, a group reference" in problem.message
    assert f"templates use {{1}} (or {{name}}): write {fixed}" in problem.message


@pytest.mark.parametrize("target", ["c.{1}.weight", "c.{{1}}.x", "price$.{2}", "c.{i}.{2}", "a^b.{2}"])
def test_other_templates_pass(target):
    assert sub_style_reference(target) is None and regex_syntax(target) is None
    assert parse_rules(RULES % f"'{target}'", "ok.yaml").rules[0].target == target


def test_validate_names_the_line_and_exits_2(tmp_path, mapper):
    (tmp_path / "pyfmt.yaml").write_text(RULES % "'c.\\1.weight'")
    proc = mapper("validate", tmp_path / "pyfmt.yaml")
    assert proc.returncode == 2
    assert "pyfmt.yaml:4: $.rules[0].target: target 'c.\\1.weight' holds '\\1'" in proc.stderr
    assert "write 'c.{1}.weight'" in proc.stderr
