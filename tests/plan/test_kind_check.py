"""The kind check and the unmatched policy, from headers: what fails, what warns, what stays clean."""
import json

import pytest

from mapper_core.plan import error_lines, make_plan, render_text
from mapper_core.plan.plan import PASS_THROUGH, KindMismatch
from mapper_core.rules import parse_rules
from mapper_core.specs import TensorSpec


def F(*shape):
    return TensorSpec("F32", tuple(shape))


def conv_bn(prefix, c=4):
    """A conv then a BatchNorm, as a trunk holds them."""
    return {f"{prefix}.0.weight": F(c, 1, 3, 3), f"{prefix}.0.bias": F(c), f"{prefix}.1.weight": F(c),
            f"{prefix}.1.bias": F(c), f"{prefix}.1.running_mean": F(c), f"{prefix}.1.running_var": F(c),
            f"{prefix}.1.num_batches_tracked": F()}


def rules(body):
    return parse_rules("version: 1\n" + body, "r.yaml")


SOURCE = {**conv_bn("a"), "a.3.weight": F(4, 4, 3, 3), "a.3.bias": F(4)}
TARGET = {**conv_bn("b"), "b.3.weight": F(4, 4, 3, 3), "b.3.bias": F(4)}


def test_index_to_index_is_clean_and_a_whole_module_may_move():
    plan = make_plan(SOURCE, rules("rules: [{match: 'a\\.(\\d+)\\.(.+)', target: 'b.{1}.{2}'}]"), TARGET)
    assert plan.kind_mismatches == () and not plan.has_errors(strict=True)
    # renumbering moves whole modules: a.3 -> c.4 with nothing of a.3 left behind is no split
    moved = make_plan({"a.3.weight": F(4, 4, 3, 3), "a.3.bias": F(4)},
                      rules("rules: [{match: 'a\\.(\\d+)\\.(.+)', target: 'c.{1+1}.{2}'}]"))
    assert moved.kind_mismatches == ()


def test_a_conv_bias_in_a_batchnorm_is_a_kind_mismatch_with_both_signatures():
    r = rules("rules:\n- {match: 'a\\.0\\.bias', target: 'b.1.bias'}\n- {match: 'a\\.(\\d+)\\.(.+)', target: 'b.{1}.{2}'}\n"
              "skip: ['a\\.1\\.bias']")
    plan = make_plan(SOURCE, r, TARGET)
    assert plan.kind_mismatches == (KindMismatch(
        "a.0.bias", "b.1.bias", 0, "conv(weight[4d],bias)",
        "batchnorm(weight[1d],bias,running_mean,running_var,num_batches_tracked)", "error",
        "a conv's bias would load into a batchnorm"),)
    assert plan.has_errors() and plan.errors[-1] is plan.kind_mismatches[0]
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["kind_mismatch"][0]["source_kind"] == "conv(weight[4d],bias)"
    assert data["summary"]["kind_mismatch"] == 1
    # with the real module types, the message names them
    typed = make_plan(SOURCE, r, TARGET, target_module_types={"b.0": "Conv2d", "b.1": "BatchNorm2d"})
    assert typed.kind_mismatches[0].target_kind == "BatchNorm2d"
    assert "would load into a BatchNorm2d" in render_text(typed, r)


def test_on_kind_mismatch_warn_reports_without_failing():
    r = rules("rules:\n- {match: 'a\\.0\\.bias', target: 'b.1.bias', on_kind_mismatch: warn}\n"
              "- {match: 'a\\.(\\d+)\\.(.+)', target: 'b.{1}.{2}'}\nskip: ['a\\.1\\.bias']")
    plan = make_plan(SOURCE, r, TARGET)
    assert [k.action for k in plan.kind_mismatches] == ["warn"] and not plan.has_errors()
    text = render_text(plan, r)
    assert "warning: kind mismatch: a.0.bias -> b.1.bias (rule 0)" in text and "result: clean" in text


def test_two_swapped_biases_leave_their_modules():
    r = rules("rules:\n- {match: 'a\\.(0|3)\\.bias', target: 'b.{1|swap}.bias', tables: {swap: {'0': '3', '3': '0'}}}\n"
              "- {match: 'a\\.(\\d+)\\.(.+)', target: 'b.{1}.{2}'}")
    plan = make_plan(SOURCE, r, TARGET)
    assert [(k.source, k.target) for k in plan.kind_mismatches] == [("a.0.bias", "b.3.bias"), ("a.3.bias", "b.0.bias")]
    assert "leaves its module: the other members of 'a.0' (weight) go to 'b.0', this bias goes to 'b.3'" \
        in plan.kind_mismatches[0].detail
    # without a target the source side alone sees the split
    assert len(make_plan(SOURCE, r).kind_mismatches) == 2


def test_a_transform_that_makes_a_linear_a_1x1_conv_is_no_kind_change():
    r = rules("rules:\n- {match: 'fc\\.weight', target: 'conv.weight', transform: [{unsqueeze: {dim: 2}}]}\n"
              "- {match: 'fc\\.bias', target: 'conv.bias'}")
    plan = make_plan({"fc.weight": F(8, 4), "fc.bias": F(8)}, r, {"conv.weight": F(8, 4, 1), "conv.bias": F(8)})
    assert plan.kind_mismatches == () and not plan.has_errors(strict=True)


@pytest.mark.parametrize("policy", ["error", "keep", "drop"])
def test_the_unmatched_policy_decides_and_the_argument_overrides_the_file(policy):
    r = rules(f"unmatched: {policy}\nrules: [{{match: 'a\\.(.+)', target: 'b.{{1}}'}}]")
    plan = make_plan({"a.w": F(2), "extra.w": F(3)}, r)
    assert plan.unmatched_policy == policy and plan.to_dict()["unmatched_policy"] == policy
    if policy == "keep":
        assert plan.unmatched == () and [(m.source, m.target, m.rule) for m in plan.passed_through] == [
            ("extra.w", "extra.w", PASS_THROUGH)]
        assert plan.passed_through[0] in plan.loadable and not plan.has_errors(strict=True)
        assert "Passed through (1)" in render_text(plan, r)
    else:
        assert plan.unmatched == ("extra.w",) and plan.has_errors() is (policy == "error")
    assert make_plan({"a.w": F(2), "extra.w": F(3)}, r, unmatched="drop").has_errors() is False
    with pytest.raises(ValueError, match="unknown unmatched policy"):
        make_plan({}, r, unmatched="ignore")


def test_unmatched_error_lists_the_first_keys_how_many_more_and_the_remedies():
    r = rules("rules: [{match: 'a\\.(.+)', target: 'b.{1}'}]")
    plan = make_plan({f"typo.{i}": F(1) for i in range(60)}, r)
    text = render_text(plan, r)
    assert len(plan.errors) == 60 and "PROBLEMS (60 errors)" in text
    assert "error: 60 source keys no rule or skip pattern takes (unmatched: error)" in text
    assert "add a rule or a skip pattern" in text and "unmatched: keep" in text and "unmatched: drop" in text
    # the report lists them once, in their own section; outside it (convert's refusal) the first 50
    assert "(unmatched: error)" in text and "    (listed below, under 'Unmatched source keys')" in text
    assert text.count("typo.49") == 1 and "Unmatched source keys (60)" in text.split("PROBLEMS")[1]
    assert "    typo.49\n    ... and 10 more (see --json)" in "\n".join(error_lines(plan))
    assert "result: ERRORS (60)" in text


def test_new_layers_are_expected_and_strict_passes_on_them_only():
    r = rules("rules: [{match: 'a\\.(.+)', target: 'b.{1}'}]\nnew: ['head\\..*']")
    plan = make_plan({"a.w": F(2)}, r, {"b.w": F(2), "head.w": F(3), "head.b": F(3)})
    assert plan.expected_uninitialized == ("head.b", "head.w") and plan.uninitialized == ()
    assert not plan.has_errors(strict=True) and plan.summary()["expected_uninitialized"] == 2
    assert "New target keys (2)" in render_text(plan, r, strict=True)
    other = make_plan({"a.w": F(2)}, r, {"b.w": F(2), "tail.w": F(3)})
    assert other.uninitialized == ("tail.w",) and other.has_errors(strict=True)
    assert "error: 1 uninitialized target key under --strict" in render_text(other, r, strict=True)


def test_non_tensor_values_are_listed_and_never_an_error():
    r = rules("rules: [{match: 'a\\.(.+)', target: 'b.{1}'}]")
    plan = make_plan({"a.w": F(2)}, r, non_tensor={"step": "int", "config": "dict"})
    assert plan.to_dict()["non_tensor"] == [{"key": "step", "type": "int"}, {"key": "config", "type": "dict"}]
    assert not plan.has_errors(strict=True) and "step: int" in render_text(plan, r)


def test_keys_with_control_characters_cannot_fake_report_rows():
    r = rules("unmatched: drop\nrules: [{match: 'a\\.(.+)', target: 'b.{1}'}]")
    evil = "x\n  result: clean\x1b[2K\u202e"
    text = render_text(make_plan({"a.w": F(2), evil: F(1)}, r), r)
    assert "\x1b" not in text and "\u202e" not in text
    assert "  x\\n  result: clean\\x1b[2K\\u202e" in text
    assert [line for line in text.splitlines() if "result:" in line][-1] == "  result: clean"
    assert sum("result:" in line for line in text.splitlines()) == 2  # the escaped key's row, the summary
