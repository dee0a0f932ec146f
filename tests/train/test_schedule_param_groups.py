"""A schedule step without lr/lr_scale trains what it unfreezes at the lr (and options) of the rules' param group."""
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from mapper_core.rules import parse_rules  # noqa: E402
from mapper_core.train.apply import param_groups  # noqa: E402
from mapper_core.train.freeze import freeze  # noqa: E402
from mapper_core.train.schedule import UnfreezeScheduler  # noqa: E402

RULES = """\
version: 1
rules: []
freeze:
  pretrained: ['emb\\..*', 'norm\\..*', 'head\\.weight']
param_groups:
  slow: {{match: ['emb\\..*'], lr: 1.0e-4}}
  no_decay: {{match: ['norm\\..*'], lr: 2.0e-4, weight_decay: 0.0}}
  rest: {{default: true, weight_decay: 0.1}}
schedule:
  - {{epoch: 1, unfreeze: pretrained{step}}}
"""


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5, 4)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 5)
        self.head.weight = self.emb.weight  # tied: named by emb.weight's group too


def setup(step: str = "", overrides=None):
    rules = parse_rules(RULES.format(step=step), "r.yaml")
    model = Net()
    freeze(model, rules)
    optimizer = torch.optim.AdamW(param_groups(model, rules, trainable_only=True, overrides=overrides), lr=1e-3)
    return model, optimizer, UnfreezeScheduler(model, optimizer, rules, overrides=overrides)


def groups(optimizer):
    return [(g["name"], g["lr"], g["weight_decay"], len(g["params"])) for g in optimizer.param_groups]


def test_without_lr_each_unfrozen_parameter_takes_its_param_groups_options():
    model, optimizer, scheduler = setup()
    assert groups(optimizer) == [("rest", 1e-3, 0.1, 1)]  # head.bias
    applied = scheduler.step(1)
    assert [(u.group, u.lr, u.added) for u in applied] == [
        ("pretrained", 1e-4, ("emb.weight",)), ("pretrained", 2e-4, ("norm.weight", "norm.bias"))]
    assert groups(optimizer)[1:] == [("pretrained", 1e-4, 0.01, 1), ("pretrained", 2e-4, 0.0, 2)]


def test_an_explicit_lr_still_wins_and_the_groups_other_options_stay():
    model, optimizer, scheduler = setup(", lr: 0.5")
    scheduler.step(1)
    assert groups(optimizer)[1:] == [("pretrained", 0.5, 0.01, 1), ("pretrained", 0.5, 0.0, 2)]


def test_overrides_given_to_param_groups_apply_to_the_unfrozen_parameters_too():
    model, optimizer, scheduler = setup(overrides={"slow": {"lr": 3e-5}})
    scheduler.step(1)
    assert groups(optimizer)[1][:2] == ("pretrained", 3e-5)
