"""explain on a non-tensor value of the source (a step count, DCP's pickled optimizer settings): said to be
one, with what convert does with it, exit 0 — not 'not in the source checkpoint', exit 1."""
import json

import pytest

from cli_runner import mapper
from mapper_core.plan.explain import explain
from mapper_core.plan.make import make_plan
from mapper_core.rules.ruleset import Rule, RuleSet
from mapper_core.specs import TensorSpec

RULES = RuleSet(name="unprefix", rules=(Rule(0, r"model\.(.+)", "{1}"),), unmatched="drop")
UNPREFIX = "version: 1\nname: unprefix\nunmatched: drop\nrules:\n  - match: 'model\\.(.+)'\n    target: '{1}'\n"


def test_a_non_tensor_key_is_said_to_be_one():
    plan = make_plan({"model.w": TensorSpec("F32", (2,))}, RULES, non_tensor={"step": "int"})
    e = explain("step", RULES, plan, non_tensor_fate="leaves it behind")
    assert (e.outcome, e.non_tensor, e.exit_code) == ("non-tensor", "int", 0)
    assert e.render().splitlines() == [
        "key 'step'",
        "  a non-tensor value of the source (int), not a tensor: rules and skip patterns apply to tensors only",
        "  convert leaves it behind",
        "  exit code 0"]
    missing = explain("stpe", RULES, plan)
    assert missing.exit_code == 1 and missing.non_tensor is None and "not in the source" in missing.render()


def test_dcp_non_tensor_items_say_what_convert_does(tmp_path):
    pytest.importorskip("torch")
    from dcp_fixtures import save_dcp

    import torch

    folder = save_dcp({"model": {"w": torch.ones(2)}, "step": 100, "optim": {"param_groups": [{"lr": 0.1}]}},
                      tmp_path / "ck")
    rules = tmp_path / "r.yaml"
    rules.write_text(UNPREFIX)
    for key in ("step", "optim.param_groups.0.lr"):
        done = mapper("explain", folder, key, "--rules", rules)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "not in the source" not in done.stdout
        assert "a non-tensor value of the source (bytes)" in done.stdout
        assert ("convert to a DCP folder without --rules (--output-format dcp) copies it byte for byte"
                in done.stdout)
        assert "any other conversion (with --rules, or to safetensors) leaves it behind" in done.stdout
    got = json.loads(mapper("explain", folder, "step", "--rules", rules, "--json").stdout)
    assert (got["outcome"], got["non_tensor"], got["exit_code"]) == ("non-tensor", "bytes", 0)


def test_a_torch_files_non_tensor_value(tmp_path):
    torch = pytest.importorskip("torch")
    src = tmp_path / "t.pt"
    torch.save({"model.w": torch.ones(2), "step": 5}, src)
    rules = tmp_path / "r.yaml"
    rules.write_text(UNPREFIX)
    done = mapper("explain", src, "step", "--rules", rules)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "a non-tensor value of the source (int)" in done.stdout
    assert "convert leaves it behind; to safetensors, a value JSON can hold is recorded" in done.stdout
