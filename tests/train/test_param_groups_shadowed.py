"""A param group whose parameters earlier groups all took is not dropped in silence."""
import warnings

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from mapper_core.rules import parse_rules  # noqa: E402
from mapper_core.train.apply import param_groups  # noqa: E402

RULES = parse_rules("""\
version: 1
rules:
  - match: '(.+)'
    target: '{1}'
param_groups:
  a: {match: ['stem\\..*'], lr: 1}
  dup: {match: ['stem\\..*'], lr: 5.0}
  head: {match: ['head\\..*'], lr: 0.1}
""", "shadow.yaml")


def model():
    return nn.ModuleDict({"stem": nn.Linear(3, 3), "head": nn.Linear(3, 2)})


def test_a_group_shadowed_by_an_earlier_one_is_warned_about_by_name():
    with pytest.warns(UserWarning) as caught:
        groups = param_groups(model(), RULES)
    assert [g["name"] for g in groups] == ["a", "head"]  # first match wins, as documented
    [w] = caught
    message = str(w.message)
    assert "rules shadow.yaml: param group 'dup' gets no parameter" in message
    assert "taken by the earlier group 'a'" in message and "lr 5.0 applies to nothing" in message
    assert "move 'dup' before 'a'" in message
    assert w.filename == __file__  # points at the caller


def test_a_group_empty_because_its_parameters_are_frozen_is_not_shadowed():
    m = model()
    for p in m["stem"].parameters():
        p.requires_grad_(False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        groups = param_groups(m, RULES, trainable_only=True)
    assert [g["name"] for g in groups] == ["head"]
