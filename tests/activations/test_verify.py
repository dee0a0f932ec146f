"""mapper verify on small models a test plugin contributes: a mapping that holds, one that does not
(and the first module where it breaks), inputs from a file, tolerances, text and JSON alike, and
bad input."""
from __future__ import annotations

import json
import textwrap

import pytest
import torch
from cli_runner import mapper
from safetensors.torch import save_file

from mapper_core.activations import compare_models, render_text
from mapper_core.activations.compare import default_tolerance

PLUGIN = textwrap.dedent('''
    from mapper_core.plugins import ModelFactory, hookimpl


    def _old(**kwargs):
        from torch import nn

        class Old(nn.Module):
            def __init__(self, width=8):
                super().__init__()
                self.features = nn.Sequential(nn.Conv2d(3, width, 3), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                                              nn.Conv2d(width, 16, 3), nn.BatchNorm2d(16), nn.ReLU())
                self.head = nn.Linear(16, 4)

            def forward(self, x):
                return self.head(self.features(x).mean((2, 3)))

        return Old(**kwargs)


    def _new(**kwargs):
        from torch import nn

        class New(nn.Module):
            def __init__(self):
                super().__init__()
                self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                                              nn.Conv2d(8, 16, 3), nn.BatchNorm2d(16), nn.ReLU())
                self.classifier = nn.Conv2d(16, 4, 1)

            def forward(self, x):
                return self.classifier(self.backbone(x).mean((2, 3), keepdim=True))

        return New(**kwargs)


    def _halves(model, inputs):  # an input adapter: the models take one input, verify gives two
        return model(inputs[0] + inputs[1])


    @hookimpl
    def mapper_models():
        return [ModelFactory("old", _old), ModelFactory("new", _new),
                ModelFactory("old-halves", _old, input_adapter=_halves),
                ModelFactory("new-halves", _new, input_adapter=_halves)]
''')
GOOD = """\
version: 1
rules:
  - match: 'features\\.(\\d+)\\.(.+)'
    target: 'backbone.{1}.{2}'
  - match: 'head\\.weight'
    target: 'classifier.weight'
    transform:
      - unsqueeze: {dim: 2}
      - unsqueeze: {dim: 3}
  - match: 'head\\.bias'
    target: 'classifier.bias'
"""


@pytest.fixture
def pair(tmp_path):
    (tmp_path / "vmodels.py").write_text(PLUGIN)
    import importlib.util

    spec = importlib.util.spec_from_file_location("vmodels_local", tmp_path / "vmodels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    old = module._old()
    with torch.no_grad():
        old.features[1].running_mean.uniform_(-1, 1)
        old.features[4].bias.uniform_(-1, 1)
    save_file(old.state_dict(), str(tmp_path / "old.safetensors"))
    (tmp_path / "good.yaml").write_text(GOOD)
    return tmp_path


def run(pair, *args, rules="good.yaml", source="model:old", target="model:new"):
    return mapper("--plugin", "vmodels", "verify", "--rules", pair / rules, "--source", pair / "old.safetensors",
                  "--source-model", source, "--target-model", target, *args, env={"PYTHONPATH": str(pair)})


def test_a_right_mapping_verifies_module_by_module(pair):
    result = run(pair, "--input", "2x3x9x9")
    assert result.returncode == 0, result.stderr
    assert "result: verified: 5 of 5 paired modules and the final outputs within tolerance" in result.stdout
    report = json.loads(run(pair, "--input", "2x3x9x9", "--json").stdout)
    assert [m["target"] for m in report["modules"]] == ["backbone.0", "backbone.1", "backbone.3", "backbone.4",
                                                       "classifier"]
    head = report["modules"][-1]
    assert head["source_shape"] == [2, 4] and head["target_shape"] == [2, 4, 1, 1]  # compared value by value
    assert (report["rtol"], report["atol"]) == default_tolerance(torch.float32)


def test_a_wrong_mapping_names_the_first_divergent_module(pair):
    # a swapped pair of biases is caught by the kind check in planning; a BatchNorm's running mean
    # left at its initialisation fits every shape and kind, and only activations can see it
    (pair / "bad.yaml").write_text(GOOD + "skip:\n  - 'features\\.1\\.running_mean'\n")
    result = run(pair, "--input", "2x3x9x9", rules="bad.yaml")
    assert result.returncode == 1
    assert "first divergent module: features.1 -> backbone.1" in result.stdout
    report = json.loads(run(pair, "--input", "2x3x9x9", "--json", rules="bad.yaml").stdout)
    assert report["first_divergent"] == {"source": "features.1", "target": "backbone.1"}
    assert [m["ok"] for m in report["modules"]] == [True, False, False, False, False]
    text = result.stdout  # the text renders the same numbers as the JSON
    bn = report["modules"][1]
    assert f"{bn['max_abs_diff']:.3g}" in text and f"{bn['cosine']:.6g}" in text


def test_inputs_from_a_file_and_an_input_adapter(pair):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 9, 9)
    save_file({"0": x / 2, "1": x / 2}, str(pair / "halves.safetensors"))
    both = run(pair, "--input", pair / "halves.safetensors", source="model:old-halves", target="model:new-halves")
    assert both.returncode == 0, both.stderr
    # without an adapter the model is called with two inputs it does not take: said, not a traceback
    plain = run(pair, "--input", pair / "halves.safetensors", target="model:new-halves")
    assert plain.returncode == 2 and "model:old could not run on the inputs [2, 3, 9, 9], [2, 3, 9, 9]" in plain.stderr
    assert "Traceback" not in plain.stderr


def test_tolerances(pair):
    (pair / "bad.yaml").write_text(GOOD + "skip:\n  - 'features\\.1\\.running_mean'\n")
    assert run(pair, "--input", "2x3x9x9", rules="bad.yaml").returncode == 1
    loose = json.loads(run(pair, "--input", "2x3x9x9", "--atol", "100", "--json", rules="bad.yaml").stdout)
    assert loose["passed"] and loose["atol"] == 100
    exact = json.loads(run(pair, "--input", "2x3x9x9", "--rtol", "0", "--atol", "0", "--json").stdout)
    assert (exact["rtol"], exact["atol"]) == (0, 0)


@pytest.mark.parametrize("args, message", [
    (("--input", "2x3xQ"), "expected a shape such as 2x1x13x20"),
    (("--input", "2x3x9x9:int3"), "unknown dtype 'int3'"),
    (("--input", "0x3"), "expected every size ≥ 1"),
    ((), "verify needs inputs"),
    (("--input", "2x3x9x9", "--rtol", "-1"), "--rtol -1.0: expected a number ≥ 0"),
])
def test_bad_input_exits_2_with_what_was_expected(pair, args, message):
    result = run(pair, *args)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_checkpoint_that_is_not_the_source_models_is_refused(pair):
    save_file({"features.0.weight": torch.zeros(8, 3, 3, 3)}, str(pair / "partial.safetensors"))
    result = mapper("--plugin", "vmodels", "verify", "--rules", pair / "good.yaml", "--source",
                    pair / "partial.safetensors", "--source-model", "model:old", "--target-model", "model:new",
                    "--input", "1x3x9x9", env={"PYTHONPATH": str(pair)})
    assert result.returncode == 2
    assert "does not fit the source model" in result.stderr and "missing" in result.stderr


def test_the_library_compares_what_it_is_given():
    a, b = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        b.bias.add_(1.0)
    before = {k: v.clone() for k, v in b.state_dict().items()}
    result = compare_models([("", "")], a, b, [torch.randn(2, 3)])
    [m] = result.modules
    assert m.ok is False and m.max_abs == pytest.approx(1.0)
    assert "DIVERGES" in render_text(result)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in before.items())  # the model is not changed
    assert not any(m._forward_hooks for m in (a, b))  # and its hooks are gone


def test_an_input_adapter_must_be_callable():
    from mapper_core.plugins import ModelFactory

    assert "input_adapter must be callable" in ModelFactory("m", dict, input_adapter=3).problem()
    assert ModelFactory("m", dict, input_adapter=print).problem() is None
