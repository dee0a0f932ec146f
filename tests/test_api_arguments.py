"""The public entry points name an argument of the wrong kind (ArgumentTypeError: a TypeError and a
BadInputError), with what was expected and how to get it, instead of an AttributeError from deep
inside. Torch-free (the train entry points: tests/train/test_api_arguments.py)."""
from __future__ import annotations

import pytest
from tiny_safetensors import write_f32

from mapper_core.errors import ArgumentTypeError, BadInputError
from mapper_core.io.convert import convert
from mapper_core.io.formats import open_checkpoint
from mapper_core.plan import make_plan
from mapper_core.plugins import load_rules as plugin_load_rules
from mapper_core.rules import load_rules, parse_rules
from mapper_core.specs import TensorSpec

RULES = "version: 1\nrules:\n  - match: '(.+)'\n    target: '{1}'\n"
SPECS = {"w": TensorSpec("F32", (2,))}


class Linear:  # stands in for an nn.Module: has a state_dict, is not a mapping
    def state_dict(self):
        return {}


def refused(call) -> str:
    with pytest.raises(ArgumentTypeError) as caught:
        call()
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, BadInputError)
    return str(caught.value)


@pytest.mark.parametrize("call, message", [
    (lambda: load_rules(None), "load_rules(): path must be a path (str or pathlib.Path), got NoneType"),
    (lambda: load_rules({"version": 1}), "load_rules(): path must be a rules file's path, got dict; for rules you "
                                         "hold as text use parse_rules(text, filename)"),
    (lambda: load_rules(b"r.yaml"), "load_rules(): path must be a path (str or pathlib.Path), got bytes b'r.yaml'; "
                                    "decode it to str first"),
    (lambda: parse_rules(RULES.encode(), "x.yaml"), "parse_rules(): text must be the rules as str, got bytes"),
    (lambda: parse_rules(RULES, None), "parse_rules(): filename must be a str naming the rules in messages, got "
                                       "NoneType"),
    (lambda: plugin_load_rules(None), "load_rules(): spec must be a rules file's path or a plugin's rule set "
                                      "name, got NoneType"),
    (lambda: open_checkpoint(None), "open_checkpoint(): path must be a path (str or pathlib.Path), got NoneType"),
    (lambda: open_checkpoint(""), "open_checkpoint(): path must be a path (str or pathlib.Path), not an empty "
                                  "one, got str ''; use '.' for the current folder"),
])
def test_rules_and_checkpoint_paths(call, message):
    assert refused(call).startswith(message)


def test_make_plan_names_a_path_or_a_model_where_specs_or_rules_belong():
    rules = parse_rules(RULES, "same.yaml")
    assert refused(lambda: make_plan(SPECS, "same.yaml")) == (
        "make_plan(): ruleset must be a RuleSet, got str 'same.yaml'; load the rules file first: load_rules(path) "
        "(mapper_core.rules)")
    assert refused(lambda: make_plan("a.safetensors", rules)) == (
        "make_plan(): source_specs must be a mapping of key → TensorSpec, got str 'a.safetensors'; for a checkpoint "
        "file use open_checkpoint(path).specs() (mapper_core.io.formats)")
    assert refused(lambda: make_plan(list(SPECS), rules)).startswith("make_plan(): source_specs must be a mapping")
    assert refused(lambda: make_plan(SPECS, rules, Linear())) == (
        "make_plan(): target_specs must be a mapping of key → TensorSpec, got Linear; for a model use "
        "module_specs(model) (mapper_core.train.apply), or plan_for_module(specs, rules, model)")
    assert make_plan(SPECS, rules, SPECS, unmatched="keep").mapped  # right arguments, keywords too: unchanged


def test_convert_names_its_arguments_before_opening_anything(tmp_path):
    write_f32(tmp_path / "a.safetensors", {"w": [2]})
    src = tmp_path / "a.safetensors"
    assert refused(lambda: convert(src, "")) == ("convert(): dst must be a path (str or pathlib.Path), not an empty "
                                                 "one, got str ''; use '.' for the current folder")
    assert refused(lambda: convert(src, 5)) == "convert(): dst must be a path (str or pathlib.Path), got int 5"
    assert refused(lambda: convert(src, tmp_path / "o.safetensors", plan="rules.yaml")) == (
        "convert(): plan must be a Plan (make_plan(...)) or None, got str 'rules.yaml'; a rules file goes in "
        "rules=load_rules(path)")
    assert "convert(): rules must be a RuleSet or None, got str" in refused(
        lambda: convert(src, tmp_path / "o.safetensors", rules="rules.yaml"))
    assert "convert(): reader must be an open Reader or None" in refused(
        lambda: convert(src, tmp_path / "o.safetensors", reader=str(src)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors"]
