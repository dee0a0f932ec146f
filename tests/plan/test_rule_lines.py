"""Collisions in the plan and explain's candidates name the rules' lines, as shape errors do
(torch-free). Before, a collision read "(rules 0, 0)" and explain gave rule indexes only."""
from __future__ import annotations

import json

from mapper_core.plan.explain import explain
from mapper_core.plan.make import make_plan
from mapper_core.plan.report import render_text
from mapper_core.rules import parse_rules
from mapper_core.specs import TensorSpec

F = TensorSpec("F32", (2,))
COLL = """\
version: 1
unmatched: keep
rules:
  - match: 'l\\.(\\d+)\\.(input|post)_norm'
    target: 'layers.{1}.norm'
  - match: 'extra'
    target: 'layers.9.norm'
skip:
  - 'unused\\..*'
"""
KEYS = {"l.0.input_norm": F, "l.0.post_norm": F, "extra": F, "layers.9.norm": F}


def test_a_collision_by_one_rule_names_it_once_with_its_line():
    rules = parse_rules(COLL, "coll.yaml")
    plan = make_plan(KEYS, rules)
    text = render_text(plan, rules)
    assert ("error: collision: 2 sources map to 'layers.0.norm' (both by rule 0, line 4): l.0.input_norm, "
            "l.0.post_norm") in text
    # a key passed through (unmatched: keep) and a rule's target meet: each source with its own
    assert "error: collision: 2 sources map to 'layers.9.norm': extra (rule 1, line 6), layers.9.norm (passed through)" \
        in text
    assert "rules 0, 0" not in text
    assert [c["lines"] for c in json.loads(json.dumps(plan.to_dict()))["collisions"]] == [[4, 4], [6, None]]


def test_explain_gives_each_candidates_line_and_the_rules_file():
    rules = parse_rules(COLL.replace("unmatched: keep\n", "") + "  - 'l\\.0\\..*'\n", "coll.yaml")
    text = explain("l.0.post_norm", rules, make_plan(KEYS, rules, unmatched="keep")).render()
    assert "  skipped by skip pattern l\\.0\\..* (line 9)" in text
    assert "  candidates (coll.yaml):" in text
    assert "    * skip 1 (line 9)  l\\.0\\..*" in text
    assert "      rule 0 (line 3)  l\\.(\\d+)\\.(input|post)_norm" in text
    mapped = explain("extra", rules, make_plan(KEYS, rules, unmatched="keep"))
    assert "  mapped by rule 1 (line 5) -> layers.9.norm" in mapped.render()
    assert mapped.to_dict()["candidates"][0]["line"] == 5
