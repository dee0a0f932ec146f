"""apply: state dict, module loading, freeze groups and optimizer param groups."""
import pytest
import torch
from torch import nn

from mapper_core.train.apply import (apply_to_module, apply_to_state_dict, module_specs, module_types,
                                     param_groups, plan_for_module, set_frozen)
from mapper_core.errors import BadInputError, PlanError
from mapper_core.plan.make import make_plan
from mapper_core.rules.ruleset import FreezeGroup, ParamGroup, Rule, RuleSet, SkipPattern
from mapper_core.io.torch_dtypes import spec_of


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
        self.head = nn.Linear(3, 2)


RULES = RuleSet(
    name="t",
    rules=(Rule(0, r"trunk\.(\d+)\.(\w+)", "body.{1}.{2}"),),
    skip=(SkipPattern(r"fc\..*"),),
    freeze=(FreezeGroup("pretrained", (r"body\..*",)),),
    param_groups=(ParamGroup("pretrained", (r"body\..*",), options={"lr": 1e-5}),
                  ParamGroup("new", default=True, options={"lr": 1e-3})),
)


def source_state():
    g = torch.Generator().manual_seed(0)
    src = {f"trunk.{k}": v for k, v in Net().body.state_dict().items()}
    src = {k: (torch.randn(v.shape, generator=g) if v.is_floating_point() else v + 7) for k, v in src.items()}
    src["fc.weight"] = torch.randn(2, 3, generator=g)
    return src


def plan_for(src, model):
    return make_plan({k: spec_of(v) for k, v in src.items()}, RULES, module_specs(model))


def test_apply_to_module_loads_every_planned_tensor_and_reports_missing():
    src, model = source_state(), Net()
    result = apply_to_module(plan_for(src, model), model, src)
    assert set(result.loaded) == {f"body.{k[6:]}" for k in src if k.startswith("trunk.")}
    assert set(result.missing) == {"head.weight", "head.bias"}
    assert result.unexpected == () and result.mismatched == ()
    assert torch.equal(model.body[0].weight, src["trunk.0.weight"])
    assert torch.equal(model.body[1].running_var, src["trunk.1.running_var"])
    assert int(model.body[1].num_batches_tracked) == int(src["trunk.1.num_batches_tracked"])


def test_apply_to_state_dict_renames_and_leaves_skipped_out():
    src = source_state()
    out = apply_to_state_dict(plan_for(src, Net()), src)
    assert set(out) == {"body." + k[len("trunk."):] for k in src if k.startswith("trunk.")}
    assert out["body.0.bias"] is src["trunk.0.bias"]


def test_plan_with_mismatch_is_refused_before_anything_is_copied():
    src, model = source_state(), Net()
    src["trunk.0.weight"] = torch.zeros(5, 4)
    before = model.body[0].bias.clone()
    with pytest.raises(PlanError, match="mapper plan"):
        apply_to_module(plan_for(src, model), model, src)
    assert torch.equal(model.body[0].bias, before)


def test_freeze_group_freezes_only_matching_parameters_and_unfreezes():
    model = Net()
    names = set_frozen(model, RULES, ["pretrained"])
    assert names == ["body.0.bias", "body.0.weight", "body.1.bias", "body.1.weight"]
    assert [p.requires_grad for p in model.head.parameters()] == [True, True]
    assert not any(p.requires_grad for p in model.body.parameters())
    set_frozen(model, RULES, None, frozen=False)
    assert all(p.requires_grad for p in model.parameters())


def test_unknown_freeze_group_is_a_clear_error():
    with pytest.raises(BadInputError, match="no freeze group 'nope'.*pretrained"):
        set_frozen(Net(), RULES, ["nope"])


def test_param_groups_carry_declared_options_and_cover_every_parameter():
    model = Net()
    groups = param_groups(model, RULES)
    assert [(g["name"], g["lr"]) for g in groups] == [("pretrained", 1e-5), ("new", 1e-3)]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.head.parameters()}
    over = param_groups(model, RULES, overrides={"new": {"lr": 0.5}})
    assert over[1]["lr"] == 0.5
    opt = torch.optim.SGD(groups, lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [1e-5, 1e-3]


def test_param_groups_without_default_keep_the_rest_in_their_own_group():
    rules = RuleSet(name="t", rules=(), param_groups=(ParamGroup("body", (r"body\..*",), options={"lr": 1.0}),))
    groups = param_groups(Net(), rules)
    assert [g["name"] for g in groups] == ["body", "rest"] and "lr" not in groups[1]
    with pytest.raises(BadInputError, match="no param group named nope"):
        param_groups(Net(), rules, overrides={"nope": {"lr": 1}})


def test_module_types_name_every_module_that_owns_tensors():
    assert module_types(Net()) == {"body.0": "Linear", "body.1": "BatchNorm1d", "head": "Linear"}


def test_plan_for_module_checks_shapes_against_the_module():
    src = source_state()
    plan = plan_for_module({k: spec_of(v) for k, v in src.items()}, RULES, Net())
    assert [(m.source, m.target) for m in plan.loadable] == [(m.source, m.target) for m in plan_for(src, Net()).loadable]
    assert plan.target_count == len(Net().state_dict()) and not plan.errors
    assert "head.weight" in plan.uninitialized


def test_plan_for_module_checks_module_kinds_with_the_real_types():
    """Issue 9: a bias moved into the BatchNorm after it has the right shape; the module types catch it."""
    src = source_state()
    swapped = RuleSet(name="swapped", rules=(Rule(0, r"trunk\.0\.bias", "body.1.bias"),
                                             Rule(1, r"trunk\.1\.bias", "body.0.bias"),
                                             Rule(2, r"trunk\.(\d+)\.(\w+)", "body.{1}.{2}")),
                      skip=(SkipPattern(r"fc\..*"),))
    plan = plan_for_module({k: spec_of(v) for k, v in src.items()}, swapped, Net())
    kinds = {k.source: (k.target, k.target_kind) for k in plan.kind_mismatches}
    assert kinds["trunk.0.bias"] == ("body.1.bias", "BatchNorm1d") and plan.has_errors()
    with pytest.raises(PlanError):
        apply_to_module(plan, Net(), src)


class _Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(6, 4)
        self.out = nn.Linear(4, 6, bias=False)
        self.out.weight = self.tok.weight  # an output layer sharing the embedding


def test_two_sources_into_tied_target_weights_are_refused_before_anything_is_copied():
    model = _Tied()
    before = model.tok.weight.detach().clone()
    source = {"emb.weight": torch.randn(6, 4), "lm_head.weight": torch.randn(6, 4)}
    rules = RuleSet("tied", (Rule(0, r"emb\.weight", "tok.weight"), Rule(1, r"lm_head\.weight", "out.weight")))
    plan = make_plan({k: spec_of(v) for k, v in source.items()}, rules, module_specs(model))
    assert not plan.errors  # two target names: the header alone cannot tell they are one tensor
    with pytest.raises(PlanError, match=r"'tok\.weight' and 'out\.weight' are one tensor in the model \(tied weights\)"
                                        r".*'emb\.weight' \(rule 0\) and 'lm_head\.weight' \(rule 1\)"):
        apply_to_module(plan, model, source)
    assert torch.equal(model.tok.weight, before)  # nothing copied
    # the tied pair filled once (the first rule takes the key) loads, and both names see it
    same = RuleSet("same", (Rule(0, r"emb\.weight", "tok.weight"), Rule(1, r"emb\.weight", "out.weight")))
    both = {"emb.weight": source["emb.weight"]}
    result = apply_to_module(make_plan({"emb.weight": spec_of(both["emb.weight"])}, same, module_specs(model)),
                             model, both)
    assert result.loaded == ("tok.weight",) and torch.equal(model.out.weight, source["emb.weight"])


def test_untied_parameters_of_a_meta_model_are_not_taken_for_tied():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))  # every meta tensor reports data_ptr 0
    source = {"a.weight": torch.randn(4, 4), "b.weight": torch.randn(4, 4)}
    rules = RuleSet("m", (Rule(0, r"a\.weight", "0.weight"), Rule(1, r"b\.weight", "1.weight")))
    plan = make_plan({k: spec_of(v) for k, v in source.items()}, rules, module_specs(model), unmatched="drop")
    assert apply_to_module(plan, model, source).loaded == ("0.weight", "1.weight")
