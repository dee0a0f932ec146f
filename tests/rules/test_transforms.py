"""Transform steps: header inference agrees with the tensors, inverses are bit-exact, rules and plans check them."""
from __future__ import annotations

import pytest
import torch

from mapper_core.train.apply import apply_to_state_dict
from mapper_core.errors import PlanError, RulesError
from mapper_core.plan.make import make_plan
from mapper_core.plugins import contributions, get_plugin_manager
from mapper_core.plugins.registry import TransformSpec
from mapper_core.plan.report import render_text
from mapper_core.rules import parse_rules
from mapper_core.specs import TensorSpec
from mapper_core.io.torch_dtypes import spec_of
from mapper_core.io.tensor_ops import apply_chain
from mapper_core.rules.transforms import (BUILTIN, NotInvertible, TransformChainError, chain_spec,
                                    inverse_chain, is_header_only, is_widening, make_step)

GEN = torch.Generator().manual_seed(0)

# (step, params, input shape, dtype); each is applied, inferred and (where invertible) undone
CASES = [
    ("reshape", {"shape": [6, -1]}, (2, 3, 4), torch.float32),
    ("unsqueeze", {"dim": 2}, (4, 3), torch.float32),
    ("unsqueeze", {"dim": -1}, (4, 3), torch.float32),
    ("squeeze", {"dim": -1}, (4, 3, 1), torch.float32),
    ("transpose", {"dim0": 0, "dim1": -1}, (2, 3, 4), torch.float32),
    ("permute", {"dims": [2, 0, 1]}, (2, 3, 4), torch.float32),
    ("inflate", {"dim": 2, "size": 5, "mode": "center"}, (4, 3, 3, 3), torch.float32),
    ("inflate", {"dim": 2, "size": 3, "mode": "center", "new_axis": False}, (4, 3, 1, 3, 3), torch.float32),
    ("pad", {"dim": 0, "before": 1, "after": 2, "value": 0.5}, (3, 2), torch.float32),
    ("cast", {"dtype": "F32"}, (3, 2), torch.float16),
    ("cast", {"dtype": "F64"}, (3, 2), torch.bfloat16),
    ("cast", {"dtype": "I64"}, (5,), torch.int16),
    ("scale", {"factor": 0.25}, (3, 2), torch.float32),
    ("scale", {"factor": -8}, (3, 2), torch.float16),
]
NOT_INVERTIBLE = [
    ("narrow", {"dim": 0, "start": 1, "length": 2}, (4, 2), torch.float32, "narrow drops"),
    ("inflate", {"dim": 2, "size": 5}, (4, 3, 3, 3), torch.float32, "mode repeat"),
    ("cast", {"dtype": "F16"}, (3,), torch.float32, "not widening"),
    ("scale", {"factor": 0.3}, (3,), torch.float32, "powers of two"),
]


def random(shape, dtype) -> torch.Tensor:
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=GEN) * 3).to(dtype)
    return torch.randint(-100, 100, shape, generator=GEN).to(dtype)


@pytest.mark.parametrize(("name", "params", "shape", "dtype"), CASES + [c[:4] for c in NOT_INVERTIBLE])
def test_header_inference_matches_the_tensor(name, params, shape, dtype):
    step = make_step(name, params)
    tensor = random(shape, dtype)
    out = apply_chain([step], tensor)
    assert chain_spec([step], spec_of(tensor)) == spec_of(out)


@pytest.mark.parametrize(("name", "params", "shape", "dtype"), CASES)
def test_inverse_is_bit_exact(name, params, shape, dtype):
    step = make_step(name, params)
    tensor = random(shape, dtype)
    undo = inverse_chain([step], spec_of(tensor))
    back = apply_chain(undo, apply_chain([step], tensor))
    assert back.dtype == tensor.dtype and torch.equal(back, tensor)


@pytest.mark.parametrize(("name", "params", "shape", "dtype", "why"), NOT_INVERTIBLE)
def test_non_invertible_steps_are_reported_by_name(name, params, shape, dtype, why):
    steps = [make_step("unsqueeze", {"dim": -1}), make_step(name, params)]
    with pytest.raises(TransformChainError) as info:
        inverse_chain(steps, TensorSpec(spec_of(random(shape, dtype)).dtype, shape))
    assert info.value.index == 1 and info.value.step.name == name
    assert f"transform step 2 ({name}(" in str(info.value) and "not invertible" in str(info.value)
    assert why in str(info.value)


def test_a_chain_inverts_in_reverse_order():
    steps = [make_step("unsqueeze", {"dim": 2}), make_step("transpose", {"dim0": 0, "dim1": 1}),
             make_step("cast", {"dtype": "F64"}), make_step("reshape", {"shape": [-1]})]
    tensor = random((4, 3), torch.float32)
    out = apply_chain(steps, tensor)
    assert out.shape == (12,) and out.dtype == torch.float64
    undo = inverse_chain(steps, spec_of(tensor))
    assert [s.name for s in undo] == ["reshape", "cast", "transpose", "squeeze"]
    assert torch.equal(apply_chain(undo, out), tensor)


def test_inflate_repeat_keeps_the_response_to_a_temporally_constant_input():
    conv2d = torch.nn.Conv2d(3, 4, 3, bias=False)
    step = make_step("inflate", {"dim": 2, "size": 5, "mode": "repeat"})
    conv3d = torch.nn.Conv3d(3, 4, (5, 3, 3), bias=False)
    with torch.no_grad():
        conv3d.weight.copy_(apply_chain([step], conv2d.weight))
        image = torch.randn(1, 3, 8, 8, generator=GEN)
        clip = image.unsqueeze(2).expand(1, 3, 5, 8, 8)
        assert torch.allclose(conv3d(clip)[:, :, 0], conv2d(image), atol=1e-5)


def test_inflate_center_sees_only_the_middle_frame():
    weight = torch.randn(4, 3, 3, 3, generator=GEN)
    out = apply_chain([make_step("inflate", {"dim": 2, "size": 5, "mode": "center"})], weight)
    assert torch.equal(out[:, :, 2], weight) and not out[:, :, [0, 1, 3, 4]].any()


def test_reshape_and_squeezes_are_header_only_others_are_not():
    assert is_header_only([make_step("reshape", {"shape": [-1]}), make_step("unsqueeze", {"dim": 0}),
                           make_step("squeeze", {"dim": 0})])
    for name in ("transpose", "permute", "inflate", "narrow", "pad", "cast", "scale"):
        assert not BUILTIN[name].header_only, name


@pytest.mark.parametrize(("step", "params", "shape", "message"), [
    ("reshape", {"shape": [5, -1]}, (2, 3), "not a multiple of 5"),
    ("reshape", {"shape": [4, 2]}, (2, 3), "(8 values)"),
    ("unsqueeze", {"dim": 3}, (2, 3), "dim 3 is out of range for a 3-d tensor"),
    ("squeeze", {"dim": 0}, (2, 3), "its size is 2, not 1"),
    ("permute", {"dims": [1, 0]}, (2, 3, 4), "has 3"),
    ("narrow", {"dim": 1, "start": 2, "length": 2}, (2, 3), "exceeds size 3"),
    ("scale", {"factor": 2}, (2,), "floating-point"),
])
def test_invalid_steps_for_a_shape_name_the_step(step, params, shape, message):
    dtype = "I64" if step == "scale" else "F32"
    with pytest.raises(TransformChainError) as info:
        chain_spec([make_step(step, params)], TensorSpec(dtype, shape))
    assert message in str(info.value) and f"step 1 ({step}(" in str(info.value)


def test_widening_table():
    assert is_widening("F16", "F32") and is_widening("BF16", "F32") and is_widening("F8_E4M3", "F16")
    assert not is_widening("F32", "F16") and not is_widening("F16", "BF16") and not is_widening("BF16", "F16")
    assert is_widening("U8", "I16") and not is_widening("U8", "I8") and not is_widening("I8", "U16")
    assert is_widening("I16", "F32") and not is_widening("I32", "F32") and not is_widening("F32", "I64")


RULES = """\
version: 1
rules:
  - match: 'fc\\.(\\d+)\\.weight'
    target: 'conv.{1}.weight'
    transform:
      - unsqueeze: {dim: 2}
      - cast: {dtype: F64}
  - match: 'fc\\.(\\d+)\\.bias'
    target: 'conv.{1}.bias'
    on_shape_mismatch: skip
    transform:
      - reshape: {shape: [2, -1]}
"""


def test_rules_carry_steps_with_lines():
    rs = parse_rules(RULES, "r.yaml")
    steps = rs.rules[0].transform
    assert [(s.name, dict(s.params), s.line) for s in steps] == [("unsqueeze", {"dim": 2}, 6), ("cast", {"dtype": "F64"}, 7)]
    assert rs.rules[1].transform[0].name == "reshape"


def test_rules_problems_for_steps_have_lines_and_name_known_steps():
    text = RULES.replace("cast: {dtype: F64}", "bogus: {x: 1}").replace("[2, -1]", "[-1, -1]")
    text += "    transform2: []\n"
    with pytest.raises(RulesError) as info:
        parse_rules(text, "r.yaml")
    problems = {p.line: p for p in info.value.problems}
    assert "unknown transform step 'bogus'" in problems[7].message
    assert "known steps: cast, inflate, narrow, pad, permute, reshape, scale, squeeze, transpose, unsqueeze" in problems[7].message
    assert problems[7].path == "$.rules[0].transform[1].bogus"
    assert "did you mean" not in problems[7].message  # nothing close to 'bogus'
    assert "-1 may appear at most once" in problems[12].message and "rule 1 step 1" in problems[12].message
    assert "did you mean 'transform'" in problems[13].message


@pytest.mark.parametrize(("step", "expected"), [
    ("{inflate: {dim: 2, mode: rep}}", ["missing required key 'size'", 'expected one of "repeat", "center"']),
    ("{narrow: {dim: 0, start: 0, lenght: 3}}", ["did you mean 'length'"]),
    ("{scale: {factor: 2}, cast: {dtype: F16}}", ["exactly 1 key, got 2"]),
    ("{cast: {dtype: F17}}", ['"BF16"']),
    ("{permute: {dims: [0, 0]}}", ["must be a permutation of 0..1"]),
])
def test_schema_checks_each_step_kind(step, expected):
    text = f"version: 1\nrules:\n  - match: a\n    target: b\n    transform:\n      - {step}\n"
    with pytest.raises(RulesError) as info:
        parse_rules(text, "r.yaml")
    messages = " | ".join(p.message for p in info.value.problems)
    assert all(e in messages for e in expected), messages
    assert all(p.line == 6 for p in info.value.problems)


def test_plan_infers_shapes_from_headers_and_catches_mismatches():
    rs = parse_rules(RULES, "r.yaml")
    source = {"fc.0.weight": TensorSpec("F32", (4, 3)), "fc.0.bias": TensorSpec("F32", (4,)),
              "fc.1.weight": TensorSpec("F32", (4, 3)), "fc.1.bias": TensorSpec("F32", (5,))}
    target = {"conv.0.weight": TensorSpec("F32", (4, 3, 1)), "conv.0.bias": TensorSpec("F32", (2, 2)),
              "conv.1.weight": TensorSpec("F32", (4, 3)), "conv.1.bias": TensorSpec("F32", (5,))}
    plan = make_plan(source, rs, target)
    ok = {m.source: m for m in plan.loadable}
    assert ok["fc.0.weight"].result_shape == (4, 3, 1) and ok["fc.0.weight"].result_dtype == "F64"
    assert ok["fc.0.bias"].result_shape == (2, 2)
    bad = {m.source: m for m in plan.mismatched}
    assert bad["fc.1.weight"].action == "error" and bad["fc.1.weight"].out_shape == (4, 3, 1)
    assert "not a multiple of 2" in bad["fc.1.bias"].reason and bad["fc.1.bias"].line == 8
    assert bad["fc.1.bias"].action == "skip" and "rule 1" not in bad["fc.1.bias"].reason
    assert [e.source for e in plan.errors] == ["fc.1.weight"]
    text = render_text(plan, rs)
    assert "[4, 3, 1] after its transform" in text and "via unsqueeze(dim=2), cast(dtype='F64')" in text
    mapped = plan.to_dict()["mapped"][0]
    assert mapped["transform"] == [{"unsqueeze": {"dim": 2}}, {"cast": {"dtype": "F64"}}]
    assert (mapped["out_dtype"], mapped["out_shape"]) == ("F64", [4, 3, 1])


def test_apply_runs_the_steps():
    rs = parse_rules(RULES, "r.yaml")
    state = {"fc.0.weight": torch.randn(4, 3, generator=GEN), "fc.0.bias": torch.randn(4, generator=GEN)}
    plan = make_plan({k: spec_of(v) for k, v in state.items()}, rs)
    out = apply_to_state_dict(plan, state)
    assert torch.equal(out["conv.0.weight"], state["fc.0.weight"].unsqueeze(2).double())
    assert torch.equal(out["conv.0.bias"], state["fc.0.bias"].reshape(2, 2))
    plan = make_plan({"fc.0.weight": TensorSpec("F32", (4,))}, rs)  # unsqueeze dim 2 of a 1-d tensor
    with pytest.raises(PlanError):
        apply_to_state_dict(plan, {"fc.0.weight": torch.zeros(4)})


class NegatePlugin:
    """A plugin transform with a spec and an inverse."""

    @staticmethod
    def mapper_transforms():
        return [TransformSpec("negate", lambda t, **p: -t, "multiply by -1",
                              spec=lambda s, **p: s, inverse=lambda s, **p: [("negate", {})])]


def test_plugin_transforms_load_plan_apply_and_invert():
    from mapper_core.plugins.hookspecs import hookimpl

    pm = get_plugin_manager(entry_points=False, env={})
    plugin = NegatePlugin()
    plugin.mapper_transforms = hookimpl(NegatePlugin.mapper_transforms)
    pm.register(plugin, name="negate_plugin")
    try:
        table = contributions(pm).transforms
        assert table["negate"].plugin == "negate_plugin" and table["reshape"].plugin == "mapper_core"
        text = "version: 1\nrules:\n  - match: a\n    target: b\n    transform: [{negate: null}]\n"
        with pytest.raises(RulesError, match="unknown transform step 'negate'"):
            parse_rules(text, "r.yaml")  # without the plugin's transforms
        rs = parse_rules(text, "r.yaml", transforms=table)
        tensor = torch.randn(3, generator=GEN)
        plan = make_plan({"a": spec_of(tensor)}, rs)
        out = apply_to_state_dict(plan, {"a": tensor})["b"]
        assert torch.equal(out, -tensor)
        assert torch.equal(apply_chain(inverse_chain(rs.rules[0].transform, spec_of(tensor)), out), tensor)
    finally:
        pm.unregister(name="negate_plugin")


def test_a_plugin_transform_without_inverse_is_reported():
    from mapper_core.rules.transforms import from_spec

    step = make_step("double", {}, transforms={"double": from_spec(TransformSpec("double", lambda t: 2 * t), "p")})
    with pytest.raises(TransformChainError, match="transform 'double' \\(from plugin 'p'\\) declares no inverse"):
        inverse_chain([step], TensorSpec("F32", (2,)))


def test_not_invertible_is_a_value_error():
    assert issubclass(NotInvertible, ValueError)


def test_a_plugin_rule_set_may_use_the_plugins_transform(tmp_path):
    from mapper_core.plugins.hookspecs import hookimpl
    from mapper_core.plugins import resolve_rules
    from mapper_core.plugins.registry import RuleSetSource

    rules = tmp_path / "neg.yaml"
    rules.write_text("version: 1\nrules:\n  - match: a\n    target: b\n    transform: [{negate: {}}]\n")

    class Plugin:
        @hookimpl
        def mapper_transforms(self):
            return NegatePlugin.mapper_transforms()

        @hookimpl
        def mapper_rule_sets(self):
            return [RuleSetSource("neg", path=rules)]

    pm = get_plugin_manager(entry_points=False, env={})
    pm.register(Plugin(), name="negp")
    try:
        for spec in ("negp:neg", str(rules)):
            assert resolve_rules(spec, pm).rules[0].transform[0].impl.plugin == "negp"
    finally:
        pm.unregister(name="negp")


CONVERT_RULES = """\
version: 1
rules:
  - match: 'fc\\.weight'
    target: 'conv.weight'
    transform: [{unsqueeze: {dim: 2}}, {reshape: {shape: [2, 6, 1]}}]
  - match: 'proj\\.weight'
    target: 'proj_t.weight'
    transform: [{transpose: {dim0: 0, dim1: 1}}, {cast: {dtype: F16}}]
  - match: 'plain'
    target: 'plain'
"""


@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
def test_convert_streams_transforms(tmp_path, fmt):
    from safetensors.torch import load_file, save_file

    from mapper_core.io.convert import convert
    from mapper_core.io.formats import open_checkpoint

    state = {"fc.weight": torch.randn(4, 3, generator=GEN), "proj.weight": torch.randn(2, 5, generator=GEN),
             "plain": torch.arange(6)}
    src = tmp_path / ("src.safetensors" if fmt == "safetensors" else "src.pt")
    if fmt == "safetensors":
        save_file(state, str(src))
    else:
        torch.save(state, src)
    rs = parse_rules(CONVERT_RULES, "r.yaml")
    expected = apply_to_state_dict(make_plan({k: spec_of(v) for k, v in state.items()}, rs), state)
    with open_checkpoint(src) as reader:
        plan = make_plan(reader.specs(), rs)
        result = convert(src, tmp_path / "out.safetensors", reader=reader, plan=plan, verify=True)
    out = load_file(str(tmp_path / "out.safetensors"))
    assert sorted(out) == sorted(expected) and result.checked == 3
    for key, value in expected.items():
        assert value.dtype == out[key].dtype and torch.equal(out[key], value), key
    assert out["conv.weight"].shape == (2, 6, 1) and out["proj_t.weight"].dtype == torch.float16
    assert result.method == "byte-copy+tensor"  # only proj_t.weight went through torch


def test_convert_with_header_only_steps_copies_bytes(tmp_path):
    from safetensors.torch import load_file, save_file

    from mapper_core.io.convert import convert
    from mapper_core.io.formats import open_checkpoint

    save_file({"fc.weight": torch.randn(4, 3, generator=GEN)}, str(tmp_path / "src.safetensors"))
    rs = parse_rules(CONVERT_RULES, "r.yaml")
    with open_checkpoint(tmp_path / "src.safetensors") as reader:
        result = convert(tmp_path / "src.safetensors", tmp_path / "out.safetensors", reader=reader,
                         plan=make_plan(reader.specs(), rs), verify=True)
    assert result.method == "byte-copy"
    src = load_file(str(tmp_path / "src.safetensors"))["fc.weight"]
    assert torch.equal(load_file(str(tmp_path / "out.safetensors"))["conv.weight"], src.reshape(2, 6, 1))


def test_a_misspelt_step_is_answered_with_the_closest_known_one():
    with pytest.raises(RulesError) as info:
        parse_rules(RULES.replace("cast: {dtype: F64}", "transpos: {dim0: 0, dim1: 1}"), "r.yaml")
    assert "unknown transform step 'transpos' (did you mean 'transpose'?); known steps:" in str(info.value)


@pytest.mark.parametrize("dtype", ["F8_E4M3", "F8_E5M2"])
@pytest.mark.parametrize("name, params", [("scale", {"factor": 2.0}), ("inflate", {"dim": 0, "size": 4, "mode": "repeat"})])
def test_arithmetic_on_8_bit_floats_is_refused_in_the_plan_not_in_convert(dtype, name, params):
    # torch has no multiply or divide for float8: convert used to end in NotImplementedError
    with pytest.raises(TransformChainError, match=f"needs F16, BF16, F32 or F64, got {dtype}.*add a cast step"):
        chain_spec([make_step(name, params)], TensorSpec(dtype, (2, 3)))
    assert chain_spec([make_step(name, params)], TensorSpec("BF16", (2, 3))).dtype == "BF16"


def test_a_cast_from_complex_to_real_is_refused_in_the_plan():
    # torch casts it with a UserWarning and keeps only the real part: a silent loss of half the values
    with pytest.raises(TransformChainError, match="cast C64 → F32 would drop the imaginary part"):
        chain_spec([make_step("cast", {"dtype": "F32"})], TensorSpec("C64", (2, 3)))
    assert chain_spec([make_step("cast", {"dtype": "C64"})], TensorSpec("C64", (2,))).dtype == "C64"
    assert chain_spec([make_step("cast", {"dtype": "C64"})], TensorSpec("F32", (2,))).dtype == "C64"
