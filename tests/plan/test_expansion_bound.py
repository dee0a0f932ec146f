"""Transform parameters are bounded when the plan is made: a step cannot ask convert for a gigabyte."""
from __future__ import annotations

import json

import pytest

from mapper_core.plan.make import EXPANSION_FLOOR, expansion_limit, make_plan
from mapper_core.plan.report import mismatch_text
from mapper_core.rules import parse_rules
from mapper_core.specs import TensorSpec
from cli_runner import mapper  # tests/helpers

SOURCE = {"w": TensorSpec("F32", (10,))}


def rules(steps: str, on_mismatch: str = "error"):
    return parse_rules(f"version: 1\nrules:\n  - match: 'w'\n    target: 'v'\n    on_shape_mismatch: {on_mismatch}\n"
                       f"    transform: {steps}\n", "r.yaml")


@pytest.mark.parametrize("on_mismatch", ["error", "skip"])
def test_a_padding_bomb_is_a_plan_error_naming_the_line_and_size(on_mismatch):
    plan = make_plan(SOURCE, rules("[{pad: {dim: 0, after: 268435456}}]", on_mismatch))
    [m] = plan.mismatched
    assert m.action == "error" and plan.has_errors()
    assert m.line == 3 and "1.0 GiB" in m.reason and "--allow-expansion" in m.reason
    assert not plan.loadable
    # the message names the key and the rule once: the reason itself says only what is wrong
    text = mismatch_text(m)
    assert text.startswith("w -> v (rule 0, line 3): its transform makes") and text.count("rule 0") == 1


def test_the_peak_counts_not_only_the_result():
    """Padding to a gigabyte and narrowing back still allocates the gigabyte in convert."""
    plan = make_plan(SOURCE, rules("[{pad: {dim: 0, after: 268435456}}, {narrow: {dim: 0, start: 0, length: 10}}]"))
    assert plan.has_errors() and "1.0 GiB" in plan.mismatched[0].reason


def test_allow_expansion_lets_it_through():
    plan = make_plan(SOURCE, rules("[{pad: {dim: 0, after: 268435456}}]"), allow_expansion=True)
    assert not plan.has_errors() and plan.loadable[0].result_shape == (268435466,)


def test_ordinary_growth_stays_under_the_limit():
    source = {"w": TensorSpec("F32", (512, 512, 3, 3))}  # 9 MiB, inflated 7x into a 3D kernel
    plan = make_plan(source, rules("[{inflate: {dim: 2, size: 7}}]"))
    assert not plan.has_errors()
    assert expansion_limit(10) == EXPANSION_FLOOR and expansion_limit(2**30) == 4 * 2**30


def test_cli_plan_refuses_with_exit_1(tmp_path):
    (tmp_path / "src.json").write_text(json.dumps({"w": {"dtype": "F32", "shape": [10]}}))
    (tmp_path / "r.yaml").write_text("version: 1\nrules:\n  - match: 'w'\n    target: 'v'\n"
                                     "    transform: [{pad: {dim: 0, after: 268435456}}]\n")
    done = mapper("plan", tmp_path / "src.json", "--rules", tmp_path / "r.yaml")
    assert done.returncode == 1 and "(rule 0, line 3): its transform" in done.stdout
    done = mapper("plan", tmp_path / "src.json", "--rules", tmp_path / "r.yaml", "--allow-expansion", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["mapped"][0]["out_shape"] == [268435466]


def test_a_tensor_no_machine_can_hold_is_refused_even_when_expansion_is_allowed():
    plan = make_plan(SOURCE, rules("[{pad: {dim: 0, after: 1000000000000000000000}}]"), allow_expansion=True)
    [m] = plan.mismatched
    assert m.action == "error" and plan.has_errors()
    assert "more than any tensor can hold (2**63 bytes), even with --allow-expansion" in m.reason
    just_under = make_plan(SOURCE, rules("[{pad: {dim: 0, after: 2305843009213693940}}]"), allow_expansion=True)
    assert not just_under.has_errors()  # (10 + after) x 4 bytes = 2**63 - 8: a size torch can name


def test_an_allocation_the_machine_cannot_make_ends_in_an_error_naming_the_tensor(tmp_path):
    pytest.importorskip("torch")
    from safetensors.torch import save_file
    import torch

    save_file({"w": torch.ones(4)}, tmp_path / "src.safetensors")
    (tmp_path / "r.yaml").write_text("version: 1\nrules:\n  - match: 'w'\n    target: 'v'\n"
                                     "    transform: [{pad: {dim: 0, before: 1000000000000000}}]\n")  # 4 PB
    out = tmp_path / "out.safetensors"
    done = mapper("convert", tmp_path / "src.safetensors", out, "--rules", tmp_path / "r.yaml", "--allow-expansion")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert (f"mapper: error: {tmp_path / 'src.safetensors'}: tensor 'w': transform step pad(dim=0, "
            "before=1000000000000000) on a F32 tensor of shape [4] makes 4,000,000,000,000,016 bytes "
            "([1000000000000004]), and this machine could not allocate them (") in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml", "src.safetensors"]  # nothing left behind
