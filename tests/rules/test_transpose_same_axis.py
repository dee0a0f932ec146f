"""A transpose of an axis with itself is a no-op that looks like a transform: refused when the rules
are checked (both dims literal and equal), and a plan error for a key whose rank makes them equal."""
from __future__ import annotations

import pytest
from rules_problems import problems_of  # tests/helpers
from tiny_safetensors import write_f32

from mapper_core.plan.make import make_plan
from mapper_core.rules import parse_rules
from mapper_core.specs import TensorSpec

TRANSPOSE = "version: 1\nrules:\n  - match: 'a\\.(\\w+)'\n    target: 'b.{1}'\n    transform:\n      - transpose: %s\n"
SAID = "swapping an axis with itself changes nothing; name two different axes (e.g. dim0: 0, dim1: 1), or remove the step"


@pytest.mark.parametrize("dims, shown", [("{dim0: 0, dim1: 0}", "0"), ("{dim0: -1, dim1: -1}", "-1")])
def test_equal_literal_dims_are_refused_with_rule_line_and_fix(dims, shown):
    [problem] = problems_of(TRANSPOSE % dims)
    assert problem.line == 6 and problem.path.startswith("$.rules[0].transform[0]")
    assert problem.message == f"rule 0 step 1: transpose: dim0 and dim1 are both {shown}: {SAID}"


def test_dims_equal_only_for_some_rank_load_and_are_a_plan_error_for_that_key():
    ruleset = parse_rules(TRANSPOSE % "{dim0: -1, dim1: 1}", "rules.yaml")  # distinct unless the tensor is 2-d
    plan = make_plan({"a.flat": TensorSpec("F32", (2, 3)), "a.cube": TensorSpec("F32", (2, 3, 4))}, ruleset)
    [bad] = [m for m in plan.mismatched]
    assert bad.source == "a.flat" and bad.action == "error"
    assert f"transpose: dim0 -1 and dim1 1 are the same axis (1) of a 2-d tensor: {SAID}" in bad.reason
    assert bad.rule == 0 and bad.line == 3  # the report names the rule's line beside the reason
    [cube] = [m for m in plan.loadable if m.source == "a.cube"]
    assert cube.result_shape == (2, 4, 3)


def test_the_cli_says_it_at_validate_and_at_plan(tmp_path, mapper):
    (tmp_path / "same.yaml").write_text(TRANSPOSE % "{dim0: 1, dim1: 1}")
    checked = mapper("validate", "same.yaml", cwd=tmp_path)
    assert checked.returncode == 2 and "Traceback" not in checked.stderr
    assert f"same.yaml:6: $.rules[0].transform[0].transpose: rule 0 step 1: transpose: dim0 and dim1 are both 1" \
           in checked.stderr
    (tmp_path / "rank.yaml").write_text(TRANSPOSE % "{dim0: 0, dim1: -2}")
    write_f32(tmp_path / "src.safetensors", {"a.w": [2, 3]})
    planned = mapper("plan", "src.safetensors", "--rules", "rank.yaml", cwd=tmp_path)
    assert planned.returncode == 1
    assert "a.w -> b.w (rule 0, line 3): transform step 1 (transpose(dim0=0, dim1=-2)): transpose: dim0 0 and dim1 -2 " \
           "are the same axis (0) of a 2-d tensor" in planned.stdout
