"""Plugin transforms: parameter schemas with line numbers, inverses that export uses, errors named by plugin."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from mapper_core.errors import PluginError, RulesError
from mapper_core.plugins import get_plugin_manager, load_rules

PLUGIN = """
    from mapper_core.errors import StepError
    from mapper_core.plugins import RuleSetSource, TransformSpec, hookimpl
    from mapper_core.rules import parse_rules
    from mapper_core.specs import TensorSpec

    def roll_spec(s, shift=1, axis=0):
        if not s.shape:
            raise StepError("roll needs at least one axis")
        return s

    def bad_spec(s, **params):
        raise ValueError("cannot do this shape")

    def buggy_spec(s, **params):
        return 1 / 0

    RULES = "version: 1\\nname: inline\\nrules:\\n  - match: a\\n    target: b\\n    transform: [{roll: {shift: 2}}]\\n"

    @hookimpl
    def mapper_transforms():
        return [
            TransformSpec("roll", lambda t, shift=1, axis=0: t.roll(shift, axis), "roll along an axis",
                          spec=roll_spec, inverse=lambda s, shift=1, axis=0: [("roll", {"shift": -shift, "axis": axis})],
                          params_schema={"type": "object", "additionalProperties": False,
                                         "properties": {"shift": {"type": "integer"}, "axis": {"type": "integer"}}}),
            TransformSpec("refuses", lambda t: t, spec=bad_spec),
            TransformSpec("buggy", lambda t: t, spec=buggy_spec),
            TransformSpec("plain", lambda t: t, spec=lambda s: s),
            TransformSpec("liar", lambda t: t.flatten(), spec=lambda s: s),
        ]

    @hookimpl
    def mapper_rule_sets():
        return [RuleSetSource("inline", loader=lambda transforms: parse_rules(RULES, "inline.yaml", transforms=transforms))]
"""


@pytest.fixture
def roll(plugin_modules):
    return plugin_modules("plugt_roll", PLUGIN)


def rules_file(tmp_path, step: str, name: str = "r.yaml"):
    path = tmp_path / name
    path.write_text(f"version: 1\nname: t\nrules:\n  - match: 'w'\n    target: 'v'\n    transform:\n      - {step}\n")
    return path


def test_params_schema_is_checked_with_line_numbers(roll, tmp_path, mapper):
    path = rules_file(tmp_path, "roll: {shift: 1,\n          axes: 0}")
    proc = mapper("--plugin", roll, "validate", str(path))
    assert proc.returncode == 2
    assert f"{path}:8: $.rules[0].transform[0].roll.axes: rule 0 step 1 (roll): unknown key 'axes'" in proc.stderr
    path = rules_file(tmp_path, "roll: {shift: one}")
    proc = mapper("--plugin", roll, "validate", str(path))
    assert proc.returncode == 2 and ".roll.shift: rule 0 step 1 (roll): expected an integer" in proc.stderr


def test_a_qualified_step_name_works_and_export_inverts_without_source_specs(roll, tmp_path, mapper):
    path = rules_file(tmp_path, f"{roll}:roll: {{shift: 1}}")
    src, out, back = tmp_path / "s.safetensors", tmp_path / "o.safetensors", tmp_path / "b.safetensors"
    w = torch.arange(6.0).reshape(3, 2)
    save_file({"w": w}, src)
    assert mapper("--plugin", roll, "convert", str(src), str(out), "--rules", str(path)).returncode == 0
    assert torch.equal(load_file(out)["v"], w.roll(1, 0))
    proc = mapper("--plugin", roll, "export", str(out), str(back), "--rules", str(path))
    assert proc.returncode == 0, proc.stderr
    assert torch.equal(load_file(back)["w"], w)


def test_a_value_error_in_spec_is_a_plan_problem_naming_the_plugin(roll, tmp_path, mapper):
    save_file({"w": torch.ones(2)}, tmp_path / "s.safetensors")
    proc = mapper("--plugin", roll, "plan", str(tmp_path / "s.safetensors"), "--rules",
                  str(rules_file(tmp_path, "refuses: {}")), "--json")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"plugin '{roll}': transform 'refuses': spec(): cannot do this shape" in json.dumps(json.loads(proc.stdout))


def test_another_exception_in_spec_is_a_plugin_error(roll, tmp_path, mapper):
    save_file({"w": torch.ones(2)}, tmp_path / "s.safetensors")
    proc = mapper("--plugin", roll, "plan", str(tmp_path / "s.safetensors"), "--rules", str(rules_file(tmp_path, "buggy: {}")))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"plugin '{roll}': transform 'buggy': spec() failed: ZeroDivisionError" in proc.stderr


def test_an_unexpected_parameter_keeps_its_quotes(roll, tmp_path, mapper):
    # no params_schema: the parameter reaches spec(), whose TypeError is reported with its quotes
    save_file({"w": torch.ones(2)}, tmp_path / "s.safetensors")
    proc = mapper("--plugin", roll, "plan", str(tmp_path / "s.safetensors"), "--rules",
                  str(rules_file(tmp_path, "plain: {dims: 1}")), "--json")
    assert "unexpected keyword argument 'dims'" in proc.stdout


def test_a_loader_rule_set_gets_the_plugin_transforms(roll):
    pm = get_plugin_manager([roll], entry_points=False, env={})
    rs = load_rules(f"{roll}:inline", plugin_manager=pm)
    assert rs.rules[0].transform[0].name == "roll" and rs.rules[0].transform[0].impl.plugin == roll


def test_an_invalid_params_schema_is_a_plugin_error(plugin_modules, tmp_path):
    module = plugin_modules("plugt_badschema", """
        from mapper_core.plugins import TransformSpec, hookimpl

        @hookimpl
        def mapper_transforms():
            return [TransformSpec("odd", lambda t: t, params_schema={"type": 12})]
    """)
    pm = get_plugin_manager([module], entry_points=False, env={})
    with pytest.raises(PluginError, match=f"plugin '{module}': transform 'odd' declares an invalid params_schema"):
        load_rules(str(rules_file(tmp_path, "odd: {}")), plugin_manager=pm)
    with pytest.raises(RulesError, match="unknown transform step 'odd'"):
        load_rules(str(rules_file(tmp_path, "odd: {}")), plugin_manager=get_plugin_manager(entry_points=False, env={}))


def test_an_apply_that_contradicts_its_spec_names_the_plugin(roll, tmp_path, mapper):
    save_file({"w": torch.ones(2, 3)}, tmp_path / "s.safetensors")
    out = tmp_path / "o.safetensors"
    proc = mapper("--plugin", roll, "convert", str(tmp_path / "s.safetensors"), str(out), "--rules",
                  str(rules_file(tmp_path, "liar: {}")))
    assert proc.returncode == 2 and not out.exists()
    assert f"plugin '{roll}': transform 'liar' (liar()): apply() returned F32 [6] but its spec() says F32 [2, 3]" in proc.stderr
    assert "did the file change" not in proc.stderr
