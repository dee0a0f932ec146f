"""verify compares the models' final outputs too, and names the source modules whose weights the plan
left behind: a plan that drops a trained layer is not "verified" because every pair it made agrees."""
from __future__ import annotations

import json
import textwrap

import pytest
import torch
from cli_runner import mapper
from safetensors.torch import save_file

from mapper_core.activations import compare_models, render_text

PLUGIN = textwrap.dedent('''
    from mapper_core.plugins import ModelFactory, hookimpl


    def _net(renamed=False, trunk_only=False):
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
                if renamed:  # the classifier moved: fc -> head.fc, same shape
                    self.head = nn.Module()
                    self.head.fc = nn.Linear(4, 5)
                else:
                    self.fc = nn.Linear(4, 5)

            def forward(self, x):
                features = self.body(x)
                if trunk_only:
                    return features
                return (self.head.fc if renamed else self.fc)(features.mean((2, 3)))

        return Net()


    @hookimpl
    def mapper_models():
        return [ModelFactory("net", _net), ModelFactory("renamed", lambda: _net(renamed=True)),
                ModelFactory("trunk", lambda: _net(renamed=True, trunk_only=True))]
''')
# what `mapper suggest` wrote for the renamed pair in the trial: the classifier skipped, its new place left new
SKIP_FC = """\
version: 1
rules:
  - match: 'body\\.(.+)'
    target: 'body.{1}'
skip:
  - 'fc\\..*'
"""
MOVE_FC = """\
version: 1
rules:
  - match: 'body\\.(.+)'
    target: 'body.{1}'
  - match: 'fc\\.(.+)'
    target: 'head.fc.{1}'
"""


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "omodels.py").write_text(PLUGIN)
    torch.manual_seed(0)
    source = torch.nn.Module()
    source.body = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    source.fc = torch.nn.Linear(4, 5)
    save_file(source.state_dict(), str(tmp_path / "net.safetensors"))
    (tmp_path / "skip-fc.yaml").write_text(SKIP_FC)
    (tmp_path / "move-fc.yaml").write_text(MOVE_FC)
    return tmp_path


def run(folder, rules, target, *extra):
    return mapper("--plugin", "omodels", "verify", "--rules", folder / rules, "--source", folder / "net.safetensors",
                  "--source-model", "model:net", "--target-model", target, "--input", "2x3x6x6", *extra,
                  env={"PYTHONPATH": str(folder)})


def test_a_dropped_classifier_fails_on_the_final_outputs(folder):
    result = run(folder, "skip-fc.yaml", "model:renamed")
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "body.0" in out and "verified" not in out  # the one pair agrees ...
    assert "first divergent: the final outputs" in out  # ... but the models do not
    assert "result: DIVERGED: the final outputs beyond tolerance" in out
    assert "not loaded: fc: bias, weight (skipped by 'fc\\..*')" in out  # in the checkpoint's order
    report = json.loads(run(folder, "skip-fc.yaml", "model:renamed", "--json").stdout)
    assert not report["passed"] and not report["complete"]
    assert report["first_divergent"] == {"source": "(final output)", "target": "(final output)"}
    assert report["final_output"]["ok"] is False and report["final_output"]["source_shape"] == [2, 5]
    assert report["left_behind"] == [{"module": "fc", "keys": ["fc.bias", "fc.weight"],
                                      "reasons": ["skipped by 'fc\\..*'"] * 2}]


def test_the_right_mapping_verifies_the_final_outputs_too(folder):
    result = run(folder, "move-fc.yaml", "model:renamed")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "result: verified: 2 of 2 paired modules and the final outputs within tolerance" in result.stdout
    assert "not loaded" not in result.stdout


def test_outputs_that_cannot_be_compared_and_weights_left_behind_are_only_partly_verified(folder):
    result = run(folder, "skip-fc.yaml", "model:trunk")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "not comparable: the source model returns a tensor [2, 5] and the target model a tensor [2, 4, 4, 4]" in out
    assert "result: PARTLY verified: 1 of 1 paired modules within tolerance, but 1 source module with weights " \
           "not loaded (fc)" in out
    assert "result: verified" not in out
    report = json.loads(run(folder, "skip-fc.yaml", "model:trunk", "--json").stdout)
    assert report["passed"] and not report["complete"] and report["final_output"]["ok"] is None


def test_the_library_compares_final_outputs_of_any_structure():
    a = torch.nn.Linear(3, 2)

    def both(model, inputs):  # an input adapter's return value is the final output
        y = model(*inputs)
        return {"logits": y, "extra": (y * 2, None)}

    x = [torch.randn(4, 3)]
    same = compare_models([], a, a, x, run_source=both, run_target=both)
    assert same.final.ok is True and same.passed and same.complete
    shifted = compare_models([], a, a, x, run_source=both, run_target=lambda m, i: {"logits": m(*i) + 1,
                                                                                   "extra": (m(*i) * 2, None)})
    assert shifted.final.ok is False and not shifted.passed and "the final outputs" in render_text(shifted)
    other = compare_models([], a, a, x, run_source=both, run_target=lambda m, i: m(*i))
    assert other.final.ok is None and not other.passed  # nothing compared at all
    assert "2 tensors (['logits'] [4, 2], ['extra'][0] [4, 2])" in other.final.note
    assert "nothing compared" in render_text(other)
    silent = compare_models([], a, a, x, run_source=lambda m, i: None)
    assert "the source model's run returned no tensor" in silent.final.note


def test_with_no_pair_the_tolerance_follows_the_final_outputs_dtype():
    a = torch.nn.Linear(3, 2).to(torch.float16)
    result = compare_models([], a, a, [torch.randn(4, 3, dtype=torch.float16)])
    assert (result.rtol, result.atol) == (1e-3, 1e-5) and result.final.ok is True
