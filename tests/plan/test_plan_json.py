"""plan_json: the compact JSON text of a plan, byte for byte json.dumps(plan.to_dict())."""
from __future__ import annotations

import json

from mapper_core.plan.make import make_plan
from mapper_core.plan import plan_json as module
from mapper_core.plan.plan_json import plan_json
from mapper_core.rules.load import parse_rules
from mapper_core.specs import TensorSpec

RULES = """\
version: 1
name: t
rules:
  - match: 'a\\.(\\d+)\\.(weight|bias)'
    target: 'b.{1}.{2}'
  - match: 'u\\.(\\d+)\\.weight'
    target: 'v.{1}.weight'
    transform: [{unsqueeze: {dim: 0}}]
  - match: '(x)\\.(.+)'
    target: '{1|odd}{2}'
    tables: {odd: {x: 'y.é"\\\\'}}  # a target cannot hold a backslash; a table entry can
skip:
  - 'head\\..*'
"""


def dumps(plan, edit=None) -> str:
    data = plan.to_dict()
    if edit:
        edit(data)
    return json.dumps(data, separators=(",", ":"))


def test_the_text_is_json_dumps_of_to_dict(monkeypatch):
    monkeypatch.setattr(module, "BATCH", 2)  # written in several pieces
    rules = parse_rules(RULES, "r.yaml")
    source = {"a.0.weight": TensorSpec("F32", (4, 3)), "a.0.bias": TensorSpec("F32", (4,)),
              "u.1.weight": TensorSpec("BF16", (2, 2)), "x.\u00e9\u2603\n": TensorSpec("I64", ()),
              "head.w": TensorSpec("F32", (1,)), "lost": TensorSpec("U8", (0, 5))}
    target = {"b.0.weight": TensorSpec("F16", (4, 3)), "b.0.bias": TensorSpec("F32", (5,)),
              "v.1.weight": TensorSpec("BF16", (1, 2, 2)), "spare": TensorSpec("F32", (1,))}
    for plan in (make_plan(source, rules), make_plan(source, rules, target),
                 make_plan(source, rules, unmatched="keep")):
        assert plan.mapped and any(m.transform for m in plan.mapped)
        assert plan_json(plan) == dumps(plan)

        def edit(data):
            data["summary"]["strict"] = True
            data["cost"] = {"mapped": ["not", "the", "list"]}
        assert plan_json(plan, edit) == dumps(plan, edit)



def test_skipped_entries_and_odd_keys_are_json_dumps_too(monkeypatch):
    monkeypatch.setattr(module, "BATCH", 2)  # several batches of mapped and of skipped entries
    rules = parse_rules(RULES.replace("    target: '{1|odd}{2}'\n", "    target: '{1|odd}{2}'\n"
                                      "    on_shape_mismatch: skip\n") + r"""  - 'h"\\\.\té.*'""" + "\n", "r.yaml")
    keys = ["x.ends\\", "x.\\\\", 'x."', 'x.","', "x.\u202e\x1b\x00", "x.\ud800", "x.\U0001f600", "x.\u00e9",
            "head.a", 'h"\\.\té1', "lost\\"]
    source = {key: TensorSpec("F32", (i, 1)) for i, key in enumerate(keys)}
    target = {'y.é"\\\\' + key[2:]: TensorSpec("F32", (i + i % 2, 1)) for i, key in enumerate(keys)}
    plan = make_plan(source, rules, target)  # every other x key has the target's shape; the rest are skipped
    assert {s.pattern for s in plan.skipped} == {None, "head\\..*", 'h"\\\\\\.\\té.*'}
    assert len(plan.mapped) == 4 and len(plan.skipped) == 6
    for plan in (plan, make_plan(source, rules), make_plan({}, rules)):
        assert plan_json(plan) == dumps(plan)
