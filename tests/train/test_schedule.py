"""schedule: progressive unfreezing declared in rules and applied to a running optimizer."""
import pytest
import torch
from torch import nn

from mapper_core.errors import BadInputError, RulesError
from mapper_core.train.freeze import freeze, stats_frozen
from mapper_core.rules import parse_rules
from mapper_core.train.schedule import UnfreezeScheduler

RULES = """\
version: 1
rules: []
freeze:
  trunk: ['trunk\\..*']
  mid: ['mid\\..*']
schedule:
  - {epoch: 3, unfreeze: mid, lr: 0.5}
  - {epoch: 2, unfreeze: trunk, lr_scale: 0.1}
"""


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
        self.mid = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.mid(self.trunk(x)))


def setup(text=RULES):
    rules = parse_rules(text, "r.yaml")
    model = Net()
    freeze(model, rules)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    return rules, model, optimizer, UnfreezeScheduler(model, optimizer, rules)


def test_schedule_is_read_from_the_rules_file():
    rules = parse_rules(RULES, "r.yaml")
    assert [(s.epoch, s.unfreeze, s.lr, s.lr_scale, s.line) for s in rules.schedule] == [
        (3, "mid", 0.5, None, 7), (2, "trunk", None, 0.1, 8)]


@pytest.mark.parametrize("step, message", [
    ("{epoch: 1, unfreeze: nope}", "r.yaml:7: $.schedule[0].unfreeze: no freeze group named 'nope'"),
    ("{epoch: 1, unfreeze: trunk, lr: 0.1, lr_scale: 0.2}", "r.yaml:7: $.schedule[0].lr_scale: give either `lr`"),
    ("{epoch: 1, unfreeze: trunk, lr_sclae: 0.2}", "unknown key 'lr_sclae' (did you mean 'lr_scale'?)"),
    ("{epoch: 1.5, unfreeze: trunk}", "$.schedule[0].epoch: expected an integer"),
    ("{epoch: 1, unfreeze: trunk, lr_scale: 0}", "$.schedule[0].lr_scale: expected a number > 0"),
    ("{unfreeze: trunk}", "missing required key 'epoch'"),
])
def test_bad_schedule_steps_are_reported_with_their_line(step, message):
    text = f"version: 1\nrules: []\nfreeze:\n  trunk: ['t']\n  mid: ['m']\nschedule:\n  - {step}\n"
    with pytest.raises(RulesError) as exc:
        parse_rules(text, "r.yaml")
    assert message in str(exc.value)


def test_a_group_unfrozen_twice_is_refused():
    text = RULES + "  - {epoch: 5, unfreeze: mid}\n"
    with pytest.raises(RulesError, match=r"r.yaml:9: \$.schedule\[2\].unfreeze: the group 'mid' is already"):
        parse_rules(text, "r.yaml")


def test_step_unfreezes_at_the_declared_epoch_and_adds_a_group_at_the_declared_lr():
    _, model, optimizer, sched = setup()
    assert sched.step(0) == [] and sched.step(1) == []
    assert len(optimizer.param_groups) == 1 and not model.trunk[0].weight.requires_grad
    done = sched.step(2)
    assert [(u.group, u.lr) for u in done] == [("trunk", pytest.approx(0.001))]
    assert set(done[0].added) == {"trunk.0.weight", "trunk.0.bias", "trunk.1.weight", "trunk.1.bias"}
    group = optimizer.param_groups[1]
    assert group["name"] == "trunk" and group["lr"] == pytest.approx(0.001)
    assert {id(p) for p in group["params"]} == {id(p) for p in model.trunk.parameters()}
    assert all(p.requires_grad for p in model.trunk.parameters())
    assert not stats_frozen(model.trunk[1])  # BatchNorm statistics unfrozen with the group
    assert sched.step(2) == []  # applied once
    assert [(u.group, u.lr) for u in sched.step(3)] == [("mid", 0.5)]
    assert len(optimizer.param_groups) == 3


def test_skipped_epochs_are_caught_up_in_epoch_order():
    _, _, optimizer, sched = setup()
    assert [u.group for u in sched.on_epoch_start(7)] == ["trunk", "mid"]
    assert [g["name"] for g in optimizer.param_groups[1:]] == ["trunk", "mid"]


def test_parameters_already_in_the_optimizer_are_never_added_twice():
    rules, model, _, _ = setup()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)  # every parameter, frozen or not
    sched = UnfreezeScheduler(model, optimizer, rules)
    done = sched.step(10)
    assert [u.added for u in done] == [(), ()]
    assert len(optimizer.param_groups) == 1
    assert all(p.requires_grad for p in model.parameters())


def test_base_lr_can_be_given_explicitly():
    rules, model, optimizer, _ = setup()
    sched = UnfreezeScheduler(model, optimizer, rules, base_lr=2.0)
    assert sched.step(2)[0].lr == pytest.approx(0.2)


def test_state_dict_round_trip_keeps_the_position_without_reapplying():
    rules, model, optimizer, sched = setup()
    sched.step(2)
    state = sched.state_dict()
    _, model2, optimizer2, fresh = setup()
    fresh.load_state_dict(state)
    assert fresh.position == 1
    assert len(optimizer2.param_groups) == 1  # the model and optimizer come back via training_state
    assert [u.group for u in fresh.step(3)] == ["mid"]


def test_state_from_another_schedule_is_refused():
    _, _, _, sched = setup()
    with pytest.raises(BadInputError, match="does not fit the schedule"):
        sched.load_state_dict({"position": 1, "steps": [[1, "other"]]})


def test_code_built_ruleset_with_unknown_group_is_refused():
    from mapper_core.rules.ruleset import RuleSet, ScheduleStep

    rules = RuleSet(name="c", rules=(), schedule=(ScheduleStep(1, "ghost"),))
    model = Net()
    with pytest.raises(BadInputError, match="'ghost', which is not a freeze group"):
        UnfreezeScheduler(model, torch.optim.SGD(model.parameters(), lr=0.1), rules)


def test_a_scheduled_group_whose_pattern_matches_nothing_fails_when_the_scheduler_is_made():
    rules = parse_rules(RULES.replace("['mid", "['midd"), "r.yaml")
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    # it used to fail at step(3), hours into training, and block every later step
    with pytest.raises(BadInputError, match=r"freeze group 'mid': the pattern 'midd\\\.\.\*' matches no name"):
        UnfreezeScheduler(model, optimizer, rules)
