"""apply_to_module and tied weights filled under both names: one value (the same tensor in the
checkpoint, or equal copies of it) loads; two different values are still refused."""
import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import save_file  # noqa: E402

from mapper_core.errors import PlanError  # noqa: E402
from mapper_core.io.formats import open_checkpoint  # noqa: E402
from mapper_core.io.torch_dtypes import spec_of  # noqa: E402
from mapper_core.plan.make import make_plan  # noqa: E402
from mapper_core.rules.ruleset import Rule, RuleSet, SkipPattern  # noqa: E402
from mapper_core.io.convert import convert  # noqa: E402
from mapper_core.io.formats.aliases import load_safetensors  # noqa: E402
from mapper_core.train.apply import (apply_to_module, apply_to_state_dict, module_specs, module_ties,  # noqa: E402
                                     plan_for_module)
from tied_models import TiedLM  # noqa: E402

IDENTITY = RuleSet(name="same", rules=(Rule(0, r"(.+)", "{1}"),))  # every key under its own name


def trained():
    torch.manual_seed(0)
    return TiedLM()


def load(source, model):
    specs = source.specs() if hasattr(source, "specs") else {k: spec_of(v) for k, v in source.items()}
    return apply_to_module(make_plan(specs, IDENTITY, module_specs(model)), model, source)


def test_a_tied_checkpoint_loads_into_the_same_tied_model():
    ref = trained()
    model = TiedLM()
    result = load(ref.state_dict(), model)  # wte.weight and lm_head.weight: one tensor under two names
    assert set(result.loaded) == set(ref.state_dict()) and result.missing == ()
    assert torch.equal(model.lm_head.weight, ref.wte.weight) and model.lm_head.weight is model.wte.weight


def test_a_tied_torch_file_loads_through_its_readers_aliases(tmp_path):
    ref = trained()
    torch.save(ref.state_dict(), tmp_path / "lm.pt")
    model = TiedLM()
    with open_checkpoint(tmp_path / "lm.pt") as reader:
        assert reader.aliases() == {"lm_head.weight": "wte.weight"}
        result = load(reader, model)
    assert result.missing == () and torch.equal(model.wte.weight, ref.wte.weight)


def test_equal_copies_of_the_tied_tensor_load(tmp_path):
    ref = trained()
    state = {k: v.clone() for k, v in ref.state_dict().items()}  # two tensors, equal values
    save_file(state, str(tmp_path / "lm.safetensors"))
    model = TiedLM()
    with open_checkpoint(tmp_path / "lm.safetensors") as reader:
        assert load(reader, model).missing == ()
    assert torch.equal(model.lm_head.weight, ref.wte.weight)


def test_different_values_for_the_tied_pair_are_still_refused():
    state = {k: v.clone() for k, v in trained().state_dict().items()}
    state["lm_head.weight"] += 1.0  # an untied checkpoint: the head trained apart from the embedding
    model = TiedLM()
    before = model.wte.weight.detach().clone()
    with pytest.raises(PlanError, match=r"'wte\.weight' and 'lm_head\.weight' are one tensor in the model \(tied "
                                        r"weights\).*'wte\.weight' \(rule 0\) and 'lm_head\.weight' \(rule 0\), which "
                                        r"hold different values"):
        load(state, model)
    assert torch.equal(model.wte.weight, before)  # nothing copied


def test_a_tied_meta_model_loads_a_tied_checkpoint():
    ref = trained()
    with torch.device("meta"):
        model = TiedLM()
    assert load(ref.state_dict(), model).missing == ()
    assert model.lm_head.weight is model.wte.weight and torch.equal(model.wte.weight, ref.wte.weight)


SKIP_HEAD = RuleSet(name="no-head", rules=(Rule(0, r"(.+)", "{1}"),), skip=(SkipPattern(r"lm_head\..*"),))


@pytest.mark.parametrize("meta", [False, True])
def test_a_tied_name_the_plan_leaves_is_filled_through_the_tie_not_missing(meta):
    ref = trained()
    state = ref.state_dict()
    if meta:
        with torch.device("meta"):
            model = TiedLM()
    else:
        model = TiedLM()
    plan = plan_for_module({k: spec_of(v) for k, v in state.items()}, SKIP_HEAD, model)
    assert plan.tied_filled == (("lm_head.weight", "wte.weight"),) and plan.uninitialized == ()
    result = apply_to_module(plan, model, state)
    assert result.missing == () and result.tied == (("lm_head.weight", "wte.weight"),)
    assert "lm_head.weight" not in result.loaded
    assert model.lm_head.weight is model.wte.weight and torch.equal(model.lm_head.weight, ref.wte.weight)


def test_a_plan_made_without_the_ties_still_loads_the_tied_name_through_the_tie():
    state = trained().state_dict()
    model = TiedLM()
    plan = make_plan({k: spec_of(v) for k, v in state.items()}, SKIP_HEAD, module_specs(model))
    assert plan.uninitialized == ("lm_head.weight",)  # the specs alone cannot tell
    assert apply_to_module(plan, model, state).tied == (("lm_head.weight", "wte.weight"),)
    assert module_ties(model) == [("wte.weight", "lm_head.weight")]


def test_the_state_dict_a_plan_gives_holds_the_tied_name_and_loads_strictly():
    ref = trained()
    state = ref.state_dict()
    model = TiedLM()
    plan = plan_for_module({k: spec_of(v) for k, v in state.items()}, SKIP_HEAD, model)
    out = apply_to_state_dict(plan, state)
    assert out["lm_head.weight"] is out["wte.weight"]  # one tensor under two names, as the model holds it
    assert model.load_state_dict(out, strict=True).missing_keys == []
    assert model.lm_head.weight is model.wte.weight and torch.equal(model.lm_head.weight, ref.wte.weight)


def test_a_converted_file_of_the_plan_loads_strictly_into_the_tied_model(tmp_path):
    ref = trained()
    torch.save({k: v.clone() for k, v in ref.state_dict().items()}, tmp_path / "lm.pt")  # untied copies
    model = TiedLM()
    with open_checkpoint(tmp_path / "lm.pt") as reader:
        plan = plan_for_module(reader.specs(), SKIP_HEAD, model)
        result = convert(tmp_path / "lm.pt", tmp_path / "out.safetensors", reader=reader, plan=plan)
    assert (result.tensors, result.aliases) == (len(ref.state_dict()) - 1, 1)  # the head's bytes are not stored
    assert model.load_state_dict(load_safetensors(tmp_path / "out.safetensors"), strict=True).missing_keys == []
    assert torch.equal(model.lm_head.weight, ref.wte.weight)


def test_a_tied_name_whose_partner_is_not_loaded_either_stays_missing():
    state = {k: v for k, v in trained().state_dict().items() if not k.startswith(("wte.", "lm_head."))}
    model = TiedLM()
    plan = plan_for_module({k: spec_of(v) for k, v in state.items()}, SKIP_HEAD, model)
    assert plan.tied_filled == () and set(plan.uninitialized) == {"wte.weight", "lm_head.weight"}
    result = apply_to_module(plan, model, state)
    assert set(result.missing) == {"wte.weight", "lm_head.weight"} and result.tied == ()
    out = apply_to_state_dict(plan, state)
    assert set(model.load_state_dict(out, strict=False).missing_keys) == {"wte.weight", "lm_head.weight"}
