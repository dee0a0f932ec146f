"""Freeze groups and param groups on a model with tied weights: patterns match state dict names,
tied names included (rules target them), and act on the one shared parameter."""
import warnings

import pytest

torch = pytest.importorskip("torch")

from mapper_core.rules import parse_rules  # noqa: E402
from mapper_core.train.apply import frozen_names, param_groups, parameter_names, set_frozen  # noqa: E402
from mapper_core.train.freeze import freeze, unfreeze  # noqa: E402
from mapper_core.train.schedule import UnfreezeScheduler  # noqa: E402
from tied_models import TiedLM  # noqa: E402

RULES = parse_rules("""\
version: 1
rules:
  - match: '(.+)'
    target: '{1}'
freeze:
  head: ['lm_head\\.weight']
schedule:
  - {epoch: 1, unfreeze: head, lr: 0.5}
param_groups:
  head: {match: ['lm_head\\..*'], lr: 1.0e-5}
  rest: {default: true, lr: 1.0e-3}
""", "tied.yaml")


def test_every_name_of_a_tied_parameter_is_known():
    assert parameter_names(TiedLM()) == {"wte.weight": ["wte.weight", "lm_head.weight"],
                                         "norm.weight": ["norm.weight"], "norm.bias": ["norm.bias"]}


def test_a_freeze_group_naming_the_tied_output_layer_freezes_the_shared_parameter():
    model = TiedLM()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "matches no name" warning either
        assert frozen_names(model, RULES, ["head"]) == ["wte.weight"]
        change = freeze(model, RULES, ["head"])
    assert change.params == ("wte.weight",) and not model.lm_head.weight.requires_grad
    assert unfreeze(model, RULES, ["head"]).params == ("wte.weight",) and model.wte.weight.requires_grad
    assert set_frozen(model, RULES, ["head"]) == ["wte.weight"] and not model.wte.weight.requires_grad


def test_a_param_group_naming_the_tied_output_layer_takes_the_shared_parameter_once():
    model = TiedLM()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        groups = param_groups(model, RULES)
    assert [(g["name"], g["lr"]) for g in groups] == [("head", 1e-5), ("rest", 1e-3)]
    assert groups[0]["params"] == [model.wte.weight]
    assert sum(len(g["params"]) for g in groups) == 3
    torch.optim.SGD(groups, lr=0.1)  # each parameter in one group: the optimizer takes them


def test_the_scheduler_unfreezes_the_tied_group_by_its_tied_name():
    model = TiedLM()
    freeze(model, RULES, ["head"])
    optimizer = torch.optim.SGD(param_groups(model, RULES, trainable_only=True), lr=0.1)
    scheduler = UnfreezeScheduler(model, optimizer, RULES)
    [done] = scheduler.step(1)
    assert done.added == ("wte.weight",) and model.wte.weight.requires_grad
    assert optimizer.param_groups[-1]["params"] == [model.wte.weight]
