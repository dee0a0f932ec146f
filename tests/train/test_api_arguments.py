"""The train entry points name an argument of the wrong kind (ArgumentTypeError), a freeze group
given as one str is that group (not its letters), a key the plan maps that the source state dict
lacks is named, and apply_to_state_dict's tensors are the source's own (documented)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mapper_core.errors import ArgumentTypeError, BadInputError
from mapper_core.rules import parse_rules
from mapper_core.train.apply import (apply_to_module, apply_to_state_dict, frozen_names, module_specs, param_groups,
                                     plan_for_module, set_frozen)
from mapper_core.train.freeze import freeze, unfreeze

RULES = ("version: 1\nrules:\n  - match: '(.+)'\n    target: '{1}'\nfreeze:\n  first: ['0\\..*']\n"
         "  second: ['1\\..*']\n")


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    rules = parse_rules(RULES, "r.yaml")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return model, rules, state, plan_for_module(module_specs(model), rules, model)


def refused(call) -> str:
    with pytest.raises(ArgumentTypeError) as caught:
        call()
    return str(caught.value)


def test_a_path_or_none_where_an_object_belongs_is_named(setup):
    model, rules, state, plan = setup
    assert refused(lambda: apply_to_module(plan, model, "lin.safetensors")) == (
        "apply_to_module(): source must be a state dict (key → tensor) or an open Reader, got str "
        "'lin.safetensors'; open the checkpoint first: open_checkpoint(path) (mapper_core.io.formats)")
    assert refused(lambda: apply_to_module(plan, None, state)) == (
        "apply_to_module(): module must be a torch.nn.Module, got NoneType")
    assert refused(lambda: apply_to_state_dict("rules.yaml", state)).startswith(
        "apply_to_state_dict(): plan must be a Plan, got str 'rules.yaml'; make one first: plan_for_module(")
    assert refused(lambda: freeze(model, "r.yaml", ["first"])).startswith(
        "freeze(): ruleset must be a RuleSet, got str 'r.yaml'; load the rules file first: load_rules(path)")
    assert refused(lambda: freeze(None, rules)) == "freeze(): module must be a torch.nn.Module, got NoneType"
    assert refused(lambda: param_groups(model, "r.yaml")).startswith("param_groups(): ruleset must be a RuleSet")
    assert refused(lambda: plan_for_module(module_specs(model), rules, "m.pt")).startswith(
        "plan_for_module(): module must be a torch.nn.Module, got str")
    assert refused(lambda: freeze(model, rules, [1])).startswith(
        "freeze(): groups must be a list of group names (str), got int 1")
    assert refused(lambda: set_frozen(model, rules, 3)).startswith("set_frozen(): groups must be a group name (str)")
    assert all(p.requires_grad for p in model.parameters())


def test_one_group_name_as_a_str_is_that_group(setup):
    model, rules, _, _ = setup
    change = freeze(model, rules, "first")
    assert change.params == ("0.weight", "0.bias")
    assert frozen_names(model, rules, "second") == ["1.weight", "1.bias"]
    assert unfreeze(model, rules, "first").params == ("0.weight", "0.bias")
    with pytest.raises(BadInputError, match="no freeze group 'firsts'"):
        freeze(model, rules, "firsts")


def test_a_key_the_source_lacks_is_named(setup):
    _, _, state, plan = setup
    del state["1.bias"]
    with pytest.raises(BadInputError) as caught:
        apply_to_state_dict(plan, state)
    assert str(caught.value) == ("the source state dict has no key '1.bias', which the plan maps; pass the state "
                                 "dict (or the checkpoint's reader) whose specs the plan was made from")
    assert not isinstance(caught.value, KeyError)


def test_apply_to_state_dict_shares_the_sources_tensors_as_documented(setup):
    model, _, state, plan = setup
    out = apply_to_state_dict(plan, state)
    assert out["0.weight"] is state["0.weight"]  # no copy: the docstring and docs/fine-tuning.md say so
    assert "Nothing is copied" in apply_to_state_dict.__doc__
    apply_to_module(plan, model, state)
    assert model[0].weight.data_ptr() != state["0.weight"].data_ptr()  # apply_to_module copies
