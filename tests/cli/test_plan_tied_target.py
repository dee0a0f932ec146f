"""plan/convert --target model:NAME name tied target weights that the plan fills from two sources."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from cli_runner import mapper  # noqa: E402  tests/helpers
from tied_plugin import PLUGIN  # noqa: E402

RULES = "version: 1\nrules:\n  - match: '(.+)'\n    target: '{1}'\n"


def run(tmp_path, state, *command, rules=RULES):
    (tmp_path / "tiedlm_plugin.py").write_text(PLUGIN)
    (tmp_path / "r.yaml").write_text(rules)
    torch.save(state, tmp_path / "src.pt")
    return mapper("--plugin", "tiedlm_plugin", *command[:1], tmp_path / "src.pt", *command[1:], "--rules",
                  tmp_path / "r.yaml", "--target", "model:tiedlm", env={"PYTHONPATH": str(tmp_path)})


def test_two_different_sources_for_one_tied_tensor_are_named(tmp_path):
    state = {"wte.weight": torch.randn(6, 4), "lm_head.weight": torch.randn(6, 4)}  # untied in the checkpoint
    done = run(tmp_path, state, "plan")
    assert done.returncode == 0, done.stderr
    assert ("target keys 'wte.weight' and 'lm_head.weight' are one tensor in model:tiedlm (tied weights), and the "
            "plan fills them from 'wte.weight' (rule 0) and 'lm_head.weight' (rule 0)") in done.stderr
    converted = run(tmp_path, state, "convert", tmp_path / "out.safetensors")
    assert converted.returncode == 0 and "one tensor in model:tiedlm" in converted.stderr


def test_a_checkpoint_whose_two_names_are_one_tensor_passes_quietly(tmp_path):
    w = torch.randn(6, 4)
    done = run(tmp_path, {"wte.weight": w, "lm_head.weight": w}, "plan")
    assert done.returncode == 0 and "tied weights" not in done.stderr


def test_a_tied_name_whose_partner_is_filled_is_reported_filled_through_the_tie(tmp_path):
    rules = "version: 1\nrules:\n  - match: 'wte\\.weight'\n    target: 'wte.weight'\nskip: ['lm_head\\..*']\n" \
            "new: ['lm_head\\..*']\n"
    w = torch.randn(6, 4)
    state = {"wte.weight": w, "lm_head.weight": w}
    done = run(tmp_path, state, "plan", "--strict", rules=rules)
    assert done.returncode == 0, done.stderr
    assert "Filled through a tie (1)" in done.stdout and "lm_head.weight  = wte.weight" in done.stdout
    assert "New target keys" not in done.stdout
    assert "target keys 2: filled 100.0% (1 through a tie), uninitialized 0, new (expected) 0" in done.stdout
    data = json.loads(run(tmp_path, state, "plan", "--json", rules=rules).stdout)
    assert data["tied_filled"] == [{"target": "lm_head.weight", "tied_to": "wte.weight"}]
    assert data["expected_uninitialized"] == [] and data["summary"]["target_filled"] == 1.0
    converted = run(tmp_path, state, "convert", tmp_path / "out.safetensors", rules=rules)
    assert converted.returncode == 0, converted.stderr
    assert ("target: 1 key filled through a tie (the model ties it to a written key), recorded as that key's alias, "
            "not stored twice: lm_head.weight = wte.weight") in converted.stdout
