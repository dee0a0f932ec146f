"""explain shows what the plan checked for one key: the transform chain, the kind check, the exit code."""
from mapper_core.plan import explain, make_plan
from mapper_core.rules import parse_rules
from mapper_core.specs import TensorSpec


def F(*shape):
    return TensorSpec("F32", tuple(shape))


LINEAR = {"fc.weight": F(64, 32), "fc.bias": F(64)}


def rules(body):
    return parse_rules("version: 1\n" + body, "r.yaml")


def test_every_transform_step_shows_its_input_and_output_shape():
    r = rules("rules:\n- {match: 'fc\\.weight', target: 'conv.weight', transform: [{unsqueeze: {dim: 2}}, "
              "{transpose: {dim0: 0, dim1: 1}}]}\n- {match: 'fc\\.bias', target: 'conv.bias'}")
    plan = make_plan(LINEAR, r, {"conv.weight": F(32, 64, 1), "conv.bias": F(64)})
    e = explain("fc.weight", r, plan)
    assert e.exit_code == 0 and [s["out"] for s in e.steps] == [[64, 32, 1], [32, 64, 1]]
    assert "transform: [64, 32] -> unsqueeze(dim=2) -> [64, 32, 1] -> transpose(dim0=0, dim1=1) -> [32, 64, 1]" \
        in e.render()
    assert "kinds: conv(weight[3d],bias) -> conv(weight[3d],bias): compatible" in e.render()
    assert e.to_dict()["steps"][0] == {"step": "unsqueeze(dim=2)", "in": [64, 32], "out": [64, 32, 1]}


def test_a_shape_error_gives_exit_code_1_and_a_skip_exit_code_0():
    r = rules("rules:\n- {match: 'fc\\.weight', target: 'conv.weight', transform: [{unsqueeze: {dim: 1}}]}\n"
              "- {match: 'fc\\.bias', target: 'conv.bias', on_shape_mismatch: skip}")
    plan = make_plan(LINEAR, r, {"conv.weight": F(64, 32, 1), "conv.bias": F(8)})
    bad = explain("fc.weight", r, plan)
    assert bad.exit_code == 1 and "[64, 32] -> unsqueeze(dim=1) -> [64, 1, 32]" in bad.render()
    assert "exit code 1" in bad.render()
    assert explain("fc.bias", r, plan).exit_code == 0


def test_a_kind_mismatch_and_an_unmatched_key_under_error_give_exit_code_1():
    r = rules("rules:\n- {match: 'a\\.bias', target: 'bn.bias'}\n- {match: 'a\\.weight', target: 'c.weight'}")
    source = {"a.weight": F(4, 1, 3, 3), "a.bias": F(4), "stray": F(1)}
    target = {"c.weight": F(4, 1, 3, 3), "bn.bias": F(4), "bn.weight": F(4), "bn.running_mean": F(4),
              "bn.running_var": F(4)}
    plan = make_plan(source, r, target, target_module_types={"bn": "BatchNorm2d", "c": "Conv2d"})
    e = explain("a.bias", r, plan)
    assert e.exit_code == 1 and e.kind_mismatch is not None
    assert "error: kind mismatch: conv(weight[4d],bias) -> BatchNorm2d" in e.render()
    stray = explain("stray", r, plan)
    assert stray.exit_code == 1 and "unmatched: error" in stray.render()
    kept = make_plan(source, r, target, unmatched="keep")
    assert explain("stray", r, kept).outcome == "passed through"
    assert explain("stray", r, make_plan(source, r, target, unmatched="drop")).exit_code == 0


def test_explain_escapes_control_characters_in_the_key():
    r = rules("unmatched: drop\nrules: [{match: 'a', target: 'b'}]")
    key = "x\n  mapped by rule 0 -> fake\x1b[1A"
    text = explain(key, r, make_plan({key: F(1)}, r)).render()
    assert "\x1b" not in text and len(text.splitlines()) == len(explain("y", r).render().splitlines()) + 1
    assert text.splitlines()[0] == "key 'x\\n  mapped by rule 0 -> fake\\x1b[1A'"
