"""apply_to_module on a model built on the meta device: the loaded tensors take the meta tensors'
places (as load_state_dict(assign=True) does), with dtype, requires_grad and ties kept."""
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from mapper_core.io.torch_dtypes import spec_of  # noqa: E402
from mapper_core.plan.make import make_plan  # noqa: E402
from mapper_core.rules.ruleset import Rule, RuleSet, SkipPattern  # noqa: E402
from mapper_core.train.apply import apply_to_module, module_specs  # noqa: E402
from tied_models import TiedLM  # noqa: E402

# the tied output layer is filled through the embedding's name only
IDENTITY = RuleSet(name="same", rules=(Rule(0, r"(.+)", "{1}"),), skip=(SkipPattern(r"lm_head\.weight"),))


def checkpoint(drop=()):
    torch.manual_seed(0)
    model = TiedLM()
    with torch.no_grad():
        model.norm.running_var.uniform_(0.5, 2.0)
    return {k: v for k, v in model.state_dict().items() if k not in drop}


def load(state, model):
    plan = make_plan({k: spec_of(v) for k, v in state.items()}, IDENTITY, module_specs(model))
    return apply_to_module(plan, model, state)


def test_a_meta_model_gets_the_tensors_themselves():
    state = checkpoint()
    with torch.device("meta"):
        model = TiedLM()
    model.norm.weight.requires_grad_(False)
    result = load(state, model)
    assert set(result.loaded) == set(state) - {"lm_head.weight"}
    assert result.missing == ()  # not in the plan, but tied to a loaded name: filled through the tie
    assert result.tied == (("lm_head.weight", "wte.weight"),)
    assert not any(t.is_meta for t in model.state_dict().values())
    assert torch.equal(model.wte.weight, state["wte.weight"])
    assert torch.equal(model.norm.running_var, state["norm.running_var"])
    assert isinstance(model.wte.weight, nn.Parameter) and model.wte.weight.requires_grad
    assert not model.norm.weight.requires_grad  # requires_grad as it was
    assert model.lm_head.weight is model.wte.weight  # still tied
    assert [n for n, _ in model.named_parameters()] == ["wte.weight", "norm.weight", "norm.bias"]
    with torch.no_grad():
        model.wte.weight.add_(1.0)  # the caller's tensors are not the model's
    assert not torch.equal(model.wte.weight, state["wte.weight"])
    x = torch.tensor([[1, 2]])
    assert model.lm_head(model.wte(x)).shape == (1, 2, 6)


def test_what_nothing_fills_stays_on_the_meta_device_and_is_missing():
    state = checkpoint(drop=("norm.bias",))
    with torch.device("meta"):
        model = TiedLM()
    result = load(state, model)
    assert result.missing == ("norm.bias",) and result.tied == (("lm_head.weight", "wte.weight"),)
    assert model.norm.bias.is_meta and not model.norm.weight.is_meta


def test_a_meta_model_in_another_dtype_gets_its_dtype():
    state = checkpoint()
    with torch.device("meta"):
        model = TiedLM().to(torch.bfloat16)
    load(state, model)
    assert model.wte.weight.dtype == torch.bfloat16
    assert torch.equal(model.wte.weight, state["wte.weight"].to(torch.bfloat16))
