"""The text report and the JSON form render the same Plan."""
import json

from mapper_core.plan.make import make_plan
from mapper_core.plan.report import render_text
from mapper_core.rules.ruleset import Rule, RuleSet, SkipPattern
from mapper_core.specs import TensorSpec

F = lambda *shape: TensorSpec("F32", shape)  # noqa: E731

RULES = RuleSet(name="demo", rules=(
    Rule(0, r"a\.(\d+)\.w", "x.{1}.w"),
    Rule(1, r"b\.(\d+)\.w", "x.{1}.w"),
    Rule(2, r"c\.(\w+)", "y.{1}", on_shape_mismatch="skip"),
    Rule(3, r"never\..*", "z"),
), skip=(SkipPattern(r"fc\..*"),), unmatched="drop")
SOURCE = {"a.0.w": F(2), "b.0.w": F(2), "a.1.w": F(3), "c.k": F(4), "fc.w": F(1), "lost": F(1)}
TARGET = {"x.0.w": F(2), "x.1.w": F(5), "y.k": F(9), "fresh": F(1)}


def test_errors_come_first_then_rule_sections_then_summary():
    plan = make_plan(SOURCE, RULES, TARGET, source_origin="src.safetensors")
    text = render_text(plan, RULES)
    problems, rule0 = text.index("PROBLEMS (2 errors, 1 skipped on shape mismatch)"), text.index("Rule 0:")
    assert problems < rule0 < text.index("Summary")
    assert "collision: 2 sources map to 'x.0.w': a.0.w (rule 0), b.0.w (rule 1)" in text
    assert "error: a.1.w -> x.1.w (rule 0): shape [3] but target has [5]" in text
    assert "skipped: c.k -> y.k (rule 2)" in text
    assert "lost" in text.split("Unmatched source keys (1)")[1].splitlines()[1]
    assert "fresh" in text.split("Uninitialized target keys")[1]
    assert "rule 3: 'never\\..*': matched no source key" in text
    assert "result: ERRORS" in text


def test_json_form_has_the_design_keys_and_agrees_with_the_text():
    plan = make_plan(SOURCE, RULES, TARGET)
    data = json.loads(json.dumps(plan.to_dict()))
    assert {"mapped", "skipped", "unmatched", "uninitialized", "mismatched", "collisions",
            "unused_rules", "summary"} <= data.keys()
    s = data["summary"]
    text = render_text(plan, RULES)
    assert f"mapped {s['mapped']}, skipped {s['skipped']}, unmatched {s['unmatched']}" in text
    assert s["collisions"] == 1 and s["errors"] == 2


def test_clean_plan_says_clean():
    rules = RuleSet(name="ok", rules=(Rule(0, r"a\.(\d+)\.w", "x.{1}.w"),))
    text = render_text(make_plan({"a.0.w": F(2)}, rules, {"x.0.w": F(2)}), rules)
    assert "PROBLEMS" not in text and "result: clean" in text and "filled 100.0%" in text


def test_a_transform_that_cannot_apply_shows_no_made_up_result():
    from mapper_core.rules import parse_rules

    rules = parse_rules("version: 1\nrules:\n  - match: 'a\\.(\\w+)'\n    target: 'b.{1}'\n"
                        "    transform:\n      - cast: {dtype: F32}\n", "r.yaml")
    text = render_text(make_plan({"a.w": TensorSpec("C64", (3, 3))}, rules), rules)
    assert "C64 [3, 3] -> (the transform cannot apply: see the error above) via cast(dtype='F32')" in text
    fine = render_text(make_plan({"a.w": TensorSpec("F16", (3, 3))}, rules), rules)
    assert "F16 [3, 3] -> F32 [3, 3] via cast(dtype='F32')" in fine
