"""`--target model:NAME` finds a model's ties as plan_for_module does (module_ties: names of one tensor
in the state dict), so the CLI and the Python API make the same plan: a buffer shared by two modules
ties too, a block registered under two names ties its every tensor, and a name a state-dict hook
leaves out is no tie."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
from cli_runner import mapper  # noqa: E402  tests/helpers
from mapper_core.io.torch_dtypes import spec_of  # noqa: E402
from mapper_core.rules import parse_rules  # noqa: E402
from mapper_core.train.apply import module_ties, plan_for_module  # noqa: E402

PLUGIN = """\
from mapper_core.plugins import ModelFactory, hookimpl


def shared_buffer():
    import torch
    from torch import nn

    net = nn.Module()
    net.a, net.b = nn.Module(), nn.Module()
    table = torch.zeros(3)
    net.a.register_buffer("table", table)
    net.b.register_buffer("table", table)  # one buffer under two names (a shared lookup table)
    return net


def registered_twice():
    from torch import nn

    net = nn.Module()
    net.enc = nn.Linear(2, 2)
    net.dec = net.enc  # the same block under a second name
    return net


def hooked():
    from torch import nn

    net = nn.Module()
    net.wte = nn.Embedding(3, 2)
    net.head = nn.Linear(2, 3, bias=False)
    net.head.weight = net.wte.weight

    def drop_head(module, state, prefix, local):  # save the tied head once, as some models do
        del state[prefix + "head.weight"]

    net._register_state_dict_hook(drop_head)
    return net


@hookimpl
def mapper_models():
    return [ModelFactory("sharedbuf", shared_buffer), ModelFactory("twice", registered_twice),
            ModelFactory("hooked", hooked)]
"""

RULES = {
    "sharedbuf": "version: 1\nrules:\n  - match: 'table'\n    target: 'a.table'\n",
    "twice": "version: 1\nrules:\n  - match: '(weight|bias)'\n    target: 'enc.{1}'\n",
    "hooked": "version: 1\nrules:\n  - match: 'emb'\n    target: 'wte.weight'\n",
}
SOURCES = {"sharedbuf": {"table": (3,)}, "twice": {"weight": (2, 2), "bias": (2,)}, "hooked": {"emb": (3, 2)}}
TIED_FILLED = {"sharedbuf": [["b.table", "a.table"]],
               "twice": [["dec.bias", "enc.bias"], ["dec.weight", "enc.weight"]], "hooked": []}


def builders() -> dict:
    namespace: dict = {}
    exec(compile(PLUGIN, "plugin", "exec"), namespace)  # the plugin's own builders, without registering it
    return {"sharedbuf": namespace["shared_buffer"], "twice": namespace["registered_twice"],
            "hooked": namespace["hooked"]}


@pytest.mark.parametrize("name", sorted(RULES))
def test_the_cli_plans_a_model_target_with_the_ties_plan_for_module_finds(tmp_path, name):
    (tmp_path / "ties_plugin.py").write_text(PLUGIN)
    (tmp_path / "r.yaml").write_text(RULES[name])
    state = {k: torch.randn(shape) for k, shape in SOURCES[name].items()}
    torch.save(state, tmp_path / "src.pt")
    done = mapper("--plugin", "ties_plugin", "plan", tmp_path / "src.pt", "--rules", tmp_path / "r.yaml", "--target",
                  f"model:{name}", "--json", "--strict", env={"PYTHONPATH": str(tmp_path)})
    data = json.loads(done.stdout)
    assert sorted([t["target"], t["tied_to"]] for t in data["tied_filled"]) == TIED_FILLED[name]
    assert done.returncode == 0 and data["uninitialized"] == [], done.stderr  # --strict: nothing left unfilled
    plan = plan_for_module({k: spec_of(v) for k, v in state.items()}, parse_rules(RULES[name], "r.yaml"),
                           builders()[name]())
    assert sorted(map(list, plan.tied_filled)) == TIED_FILLED[name]


def test_module_ties_are_names_of_the_state_dict():
    build = builders()
    assert module_ties(build["sharedbuf"]()) == [("a.table", "b.table")]
    assert module_ties(build["twice"]()) == [("enc.weight", "dec.weight"), ("enc.bias", "dec.bias")]
    assert module_ties(build["hooked"]()) == []  # head.weight is no state-dict name: nothing to fill
