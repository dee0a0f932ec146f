"""suggest with a target model whose head is tied to its embedding (one tensor, two names): the
head is filled through the tie, as `mapper plan` says, not counted or written as new."""
from __future__ import annotations

import json

import pytest

from cli_runner import mapper  # tests/helpers
from mapper_core.specs import TensorSpec
from mapper_core.suggest import suggest
from tied_plugin import PLUGIN
from tiny_safetensors import write_f32

W = TensorSpec("F32", (6, 4))


def test_a_tied_head_is_filled_through_the_tie_not_new():
    source, target = {"wte.weight": W}, {"wte.weight": W, "lm_head.weight": W}
    untied = suggest(source, target)
    assert [x.key for x in untied.pairing.new] == ["lm_head.weight"]
    result = suggest(source, target, target_ties=[("wte.weight", "lm_head.weight")])
    assert result.pairing.new == () and result.new == ()
    assert result.tied_filled == (("lm_head.weight", "wte.weight"),) == result.plan.tied_filled
    assert result.summary()["new"] == 0 and result.summary()["tied_filled"] == 1
    assert result.to_dict()["tied_filled"] == [{"target": "lm_head.weight", "tied_to": "wte.weight"}]
    assert "0 of 2 target keys new, 1 filled through a tie." in result.text
    assert "# TIED: lm_head.weight is one tensor with wte.weight in the target model" in result.text
    assert "new:" not in result.text and "lm_head" not in result.json_text
    assert not result.plan.has_errors(strict=True) and result.plan.expected_uninitialized == ()


def test_a_tie_whose_names_are_both_unfilled_leaves_them_new():
    source, target = {"other.weight": TensorSpec("F32", (3,))}, {"wte.weight": W, "lm_head.weight": W}
    result = suggest(source, target, target_ties=[("wte.weight", "lm_head.weight")])
    assert {x.key for x in result.pairing.new} == {"wte.weight", "lm_head.weight"} and result.tied_filled == ()


def test_the_cli_agrees_with_plan_on_a_model_with_a_tied_head(tmp_path):
    pytest.importorskip("torch")
    (tmp_path / "tiedlm_plugin.py").write_text(PLUGIN)
    env = {"PYTHONPATH": str(tmp_path)}
    src = write_f32(tmp_path / "src.safetensors", {"wte.weight": (6, 4)})
    rules = tmp_path / "r.yaml"
    done = mapper("--plugin", "tiedlm_plugin", "suggest", "--source", src, "--target", "model:tiedlm", "-o", rules,
                  env=env)
    assert done.returncode == 0, done.stderr
    assert "0 of 2 target keys new, 1 filled through a tie" in done.stdout
    planned = mapper("--plugin", "tiedlm_plugin", "plan", src, "--rules", rules, "--target", "model:tiedlm",
                     "--strict", "--json", env=env)
    assert planned.returncode == 0, planned.stderr
    summary = json.loads(planned.stdout)["summary"]
    assert summary["tied_filled"] == 1 and summary["uninitialized"] == 0 and summary["expected_uninitialized"] == 0
    assert not json.loads(planned.stdout)["unused_rules"]
    # a model:NAME source's ties are not the target's
    back = mapper("--plugin", "tiedlm_plugin", "suggest", "--source", "model:tiedlm", "--target", src, "--json",
                  env=env)
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["tied_filled"] == []
