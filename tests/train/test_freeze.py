"""finetune: freeze groups freeze BatchNorm statistics too, and unfreezing restores them."""
import copy

import pytest
import torch
from torch import nn

from mapper_core.errors import BadInputError
from mapper_core.train.freeze import freeze, frozen_norm_layers, stats_frozen, unfreeze
from mapper_core.rules.ruleset import FreezeGroup, RuleSet

RULES = RuleSet(name="t", rules=(), freeze=(
    FreezeGroup("trunk", (r"trunk\..*",)),
    FreezeGroup("bare", (r"bare\..*",)),
))

CASES = {
    1: (lambda: nn.Linear(4, 4), nn.BatchNorm1d, lambda: torch.randn(8, 4)),
    2: (lambda: nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d, lambda: torch.randn(2, 4, 5, 5)),
    3: (lambda: nn.Conv3d(4, 4, 3, padding=1), nn.BatchNorm3d, lambda: torch.randn(2, 4, 3, 5, 5)),
}


class Net(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        layer, norm, _ = CASES[dim]
        self.trunk = nn.Sequential(layer(), norm(4))
        self.head = nn.Sequential(layer(), norm(4))

    def forward(self, x):
        return self.head(self.trunk(x))


def make(dim: int) -> tuple[nn.Module, callable]:
    return Net(dim), CASES[dim][2]


def stats(bn: nn.Module) -> list[torch.Tensor]:
    return [bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()]


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_frozen_norm_statistics_do_not_drift_after_train_and_forward(dim):
    model, data = make(dim)
    change = freeze(model, RULES, ["trunk"])
    assert set(change.params) == {"trunk.0.weight", "trunk.0.bias", "trunk.1.weight", "trunk.1.bias"}
    assert change.norm_layers == ("trunk.1",)
    before, head_before = stats(model.trunk[1]), stats(model.head[1])
    for _ in range(3):
        model.train()  # every call, not only the first, must leave the frozen layer in eval
        model(data())
    assert all(torch.equal(a, b) for a, b in zip(before, stats(model.trunk[1])))
    assert not model.trunk[1].training  # the hook set it back at the forward
    # the unfrozen head still learns its statistics: the test would notice a no-op
    assert not torch.equal(head_before[0], model.head[1].running_mean)
    assert int(model.head[1].num_batches_tracked) == 3


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_unfreeze_restores_normal_behaviour(dim):
    model, data = make(dim)
    freeze(model, RULES, ["trunk"])
    model.train()
    change = unfreeze(model, RULES, ["trunk"])
    assert change.norm_layers == ("trunk.1",)
    assert all(p.requires_grad for p in model.parameters())
    assert model.trunk[1].training and not stats_frozen(model.trunk[1])
    before = stats(model.trunk[1])
    model(data())
    assert not torch.equal(before[0], model.trunk[1].running_mean)
    assert int(model.trunk[1].num_batches_tracked) == 1


def test_unfreeze_in_eval_mode_leaves_the_layer_in_eval():
    model, _ = make(2)
    freeze(model, RULES, ["trunk"])
    model.eval()
    unfreeze(model, RULES, ["trunk"])
    assert not model.trunk[1].training


def test_requires_grad_only_freeze_lets_statistics_drift():
    """What the seed did, and why freeze() exists."""
    model, data = make(2)
    for p in model.trunk.parameters():
        p.requires_grad_(False)
    before = stats(model.trunk[1])
    model.train()
    model(data())
    assert not torch.equal(before[0], model.trunk[1].running_mean)


def test_freeze_twice_reports_nothing_new_and_frozen_norm_layers_lists_them():
    model, data = make(1)
    freeze(model, RULES, ["trunk"])
    again = freeze(model, RULES, ["trunk"])
    assert again.params == () and again.norm_layers == ()
    assert frozen_norm_layers(model) == ["trunk.1"]
    before = stats(model.trunk[1])
    model.train()
    model(data())
    assert all(torch.equal(a, b) for a, b in zip(before, stats(model.trunk[1])))
    # one eval hook, not two: a single unfreeze gives the layer its training behaviour back
    unfreeze(model, RULES, ["trunk"])
    model.train()
    model(data())
    assert int(model.trunk[1].num_batches_tracked) == 1


def test_norm_layer_with_a_trainable_parameter_is_not_frozen():
    rules = RuleSet(name="t", rules=(), freeze=(FreezeGroup("w", (r"trunk\.1\.weight",)),))
    model, _ = make(1)
    change = freeze(model, rules, ["w"])
    assert change.params == ("trunk.1.weight",) and change.norm_layers == ()


def test_parameterless_norm_layer_is_frozen_by_its_buffer_name():
    model = nn.Module()
    model.bare = nn.Sequential(nn.BatchNorm1d(3, affine=False))
    assert freeze(model, RULES, ["bare"]).norm_layers == ("bare.0",)
    model.train()
    model.bare(torch.randn(4, 3))
    assert torch.equal(model.bare[0].running_mean, torch.zeros(3))


def test_frozen_state_survives_deepcopy_and_unknown_group_is_refused():
    model, data = make(2)
    freeze(model, RULES, ["trunk"])
    twin = copy.deepcopy(model)
    before = stats(twin.trunk[1])
    twin.train()
    twin(data())
    assert torch.equal(before[0], twin.trunk[1].running_mean)
    with pytest.raises(BadInputError, match="no freeze group 'nope'"):
        freeze(model, RULES, ["nope"])


def test_a_deep_copied_frozen_model_stays_frozen_and_unfreezes_on_its_own():
    model, data = make(2)
    freeze(model, RULES, ["trunk"])
    twin = copy.deepcopy(model)
    assert frozen_norm_layers(twin) == ["trunk.1"]
    assert unfreeze(twin, RULES, ["trunk"]).norm_layers == ("trunk.1",)
    twin.train()
    twin(data())
    assert int(twin.trunk[1].num_batches_tracked) == 1  # the copy's hook is gone ...
    assert frozen_norm_layers(model) == ["trunk.1"]  # ... and the original's is still there
    model.train()
    model(data())
    assert int(model.trunk[1].num_batches_tracked) == 0


def test_freezing_leaves_the_state_dict_as_it_was():
    model, _ = make(2)
    plain = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(UserWarning, match="freeze group 'bare': the pattern 'bare\\\\..\\*' matches no name of the Net"):
        freeze(model, RULES)  # all groups: one for another model is a warning, not an error
    for frozen in (model, copy.deepcopy(model)):
        state = frozen.state_dict()
        assert list(state) == list(plain) and all(torch.equal(state[k], plain[k]) for k in plain)
    fresh, _ = make(2)
    fresh.load_state_dict(model.state_dict())  # loads into an unfrozen model: nothing extra to refuse


def test_unfreeze_all_releases_every_parameter_and_norm_layer():
    from mapper_core.train.freeze import unfreeze_all

    model, data = make(2)
    freeze(model, RULES, ["trunk"])
    model.train()
    change = unfreeze_all(model)
    assert change.norm_layers == ("trunk.1",) and len(change.params) == 4
    assert all(p.requires_grad for p in model.parameters()) and frozen_norm_layers(model) == []
    model(data())
    assert int(model.trunk[1].num_batches_tracked) == 1


def test_sync_batchnorm_is_frozen_too():
    model = nn.Module()
    model.trunk = nn.Sequential(nn.SyncBatchNorm(3))
    assert freeze(model, RULES, ["trunk"]).norm_layers == ("trunk.0",)
    model.train()
    model.trunk(torch.randn(4, 3, 2, 2))  # in training mode this would need a process group
    assert torch.equal(model.trunk[0].running_mean, torch.zeros(3))


def test_a_named_group_whose_pattern_matches_nothing_is_refused():
    model, _ = make(1)
    rules = RuleSet(name="t", rules=(), freeze=(FreezeGroup("trunk", (r"trunk\..*", r"trnk\.0\.weight")),))
    with pytest.raises(BadInputError, match=r"freeze group 'trunk': the pattern 'trnk\\\.0\\\.weight' matches no name"):
        freeze(model, rules, ["trunk"])
    assert all(p.requires_grad for p in model.parameters())  # refused before anything changed


def test_a_param_group_pattern_matching_nothing_is_warned_about():
    from mapper_core.rules.ruleset import ParamGroup
    from mapper_core.train.apply import param_groups

    model, _ = make(1)
    rules = RuleSet(name="t", rules=(), param_groups=(ParamGroup("heads", (r"heads\..*",), options={"lr": 1.0}),
                                                       ParamGroup("rest", default=True)))
    with pytest.warns(UserWarning, match="param group 'heads': the pattern"):
        groups = param_groups(model, rules)
    assert [g["name"] for g in groups] == ["rest"]
