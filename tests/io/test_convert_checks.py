"""Issue 9: convert checks what plan checks, before anything is written.

A result that does not fit the target (a wrong transform), a plan with errors, and a
conversion that would write no tensor are refused (PlanError, exit 1) with nothing written;
non-tensor values of the source ride along as 'mapper.extra'; each phase is announced.
"""
from __future__ import annotations

import json
import re
import textwrap

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mapper_core.errors import PlanError
from mapper_core.io.convert import convert
from mapper_core.io.formats import open_checkpoint
from mapper_core.io.provenance import EXTRA_KEY
from mapper_core.plan.make import make_plan
from mapper_core.rules import load_rules
from mapper_core.specs import TensorSpec
from wrong_transform import MISMATCH_LINE, RULES as RESHAPED  # tests/helpers

@pytest.fixture
def src(tmp_path):
    path = tmp_path / "src.safetensors"
    save_file({"fc.weight": torch.randn(64, 32), "fc.bias": torch.randn(64)}, str(path))
    return path


def rules_file(tmp_path, text: str, name: str = "rules.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return load_rules(path)


TARGET = {"net.fc.weight": TensorSpec("F32", (64, 32)), "net.fc.bias": TensorSpec("F32", (64,))}


def test_a_wrong_transform_against_the_target_is_refused_and_nothing_is_written(tmp_path, src):
    out = tmp_path / "out.safetensors"
    with pytest.raises(PlanError, match=re.escape(MISMATCH_LINE)):
        convert(src, out, rules=rules_file(tmp_path, RESHAPED), target_specs=TARGET)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["rules.yaml", "src.safetensors"]


def test_a_plan_made_without_the_target_is_checked_against_it(tmp_path, src):
    ruleset = rules_file(tmp_path, RESHAPED)
    with open_checkpoint(src) as reader:
        plan = make_plan(reader.specs(), ruleset)
        fits_not = r"(?s)would not fit.*net\.fc\.weight \(from fc\.weight\): shape \[32, 64\], the target's \[64, 32\]"
        with pytest.raises(PlanError, match=fits_not):
            convert(src, tmp_path / "out.safetensors", reader=reader, plan=plan, target_specs=TARGET)
    assert not (tmp_path / "out.safetensors").exists()


def test_a_fitting_result_is_written(tmp_path, src):
    good = RESHAPED.replace("[32, 64]", "[64, -1]")
    result = convert(src, tmp_path / "out.safetensors", rules=rules_file(tmp_path, good), target_specs=TARGET)
    assert result.tensors == 2 and result.rules == "wrong-transform" and len(result.rules_sha256) == 64
    assert load_file(str(tmp_path / "out.safetensors"))["net.fc.weight"].shape == (64, 32)


def test_a_plain_conversion_is_checked_against_a_target_too(tmp_path, src):
    with pytest.raises(PlanError, match="the target has no such key"):
        convert(src, tmp_path / "out.safetensors", target_specs=TARGET)


def test_rules_that_match_nothing_write_nothing_and_say_why(tmp_path, src):
    ruleset = rules_file(tmp_path, """\
        version: 1
        name: wrong-prefix
        rules:
          - match: 'model\\.fc\\.(.+)'
            target: 'net.fc.{1}'
        """, "prefix.yaml")
    with pytest.raises(PlanError) as info:
        convert(src, tmp_path / "out.safetensors", rules=ruleset)
    message = str(info.value)
    assert "0 tensors" in message and "'fc.weight'" in message and "prefix.yaml" in message
    assert "nothing was written" in message and not (tmp_path / "out.safetensors").exists()


def test_an_empty_checkpoint_is_not_converted(tmp_path):
    empty = tmp_path / "empty.pt"
    torch.save({}, empty)
    with pytest.raises(PlanError, match="holds no tensors, so there is nothing to write"):
        convert(empty, tmp_path / "o.safetensors")
    assert not (tmp_path / "o.safetensors").exists()


def test_non_tensor_values_ride_along_as_mapper_extra(tmp_path):
    pt = tmp_path / "train.pt"
    torch.save({"w": torch.ones(2), "step": 5, "config": {"lr": 0.1}, "name": "run", "nan": float("nan")}, pt)
    result = convert(pt, tmp_path / "out.safetensors")
    assert result.tensors == 1
    with safe_open(str(tmp_path / "out.safetensors"), framework="pt") as f:
        extra = json.loads(f.metadata()[EXTRA_KEY])
        assert list(f.keys()) == ["w"]
    assert extra == {"config": {"lr": 0.1}, "name": "run", "step": 5}


def test_each_phase_is_announced(tmp_path, src):
    phases, progress = [], []
    convert(src, tmp_path / "out.safetensors", verify=True, phase=lambda name, total: phases.append((name, total)),
            progress=lambda done, total, key: progress.append((phases[-1][0], done, total)))
    nbytes = (64 * 32 + 64) * 4
    assert phases[0] == ("writing", nbytes) and phases[-1] == ("verifying", nbytes)
    assert {name for name, _ in phases} <= {"writing", "hashing", "verifying"}
    assert progress[-1] == ("verifying", nbytes, nbytes)


def test_a_key_with_a_newline_or_escape_cannot_fake_lines_in_a_refusal():
    from mapper_core.errors import PlanError
    from mapper_core.io.convert_checks import refuse_misfits
    from mapper_core.specs import TensorSpec

    spec = TensorSpec("F32", (2,))
    with pytest.raises(PlanError) as info:
        refuse_misfits([("evil\nresult: clean\x1b[2K", "evil\nresult: clean\x1b[2K", spec)], {}, "t.safetensors")
    message = str(info.value)
    assert "\nresult: clean" not in message and "\x1b" not in message
    assert "evil\\nresult: clean\\x1b[2K" in message


def test_a_step_that_cannot_apply_is_named_a_transform_error_not_a_shape_mismatch():
    from mapper_core.io.convert_checks import refuse_plan_errors
    from mapper_core.plan.make import make_plan
    from mapper_core.rules import parse_rules
    from mapper_core.specs import TensorSpec

    rules = parse_rules("version: 1\nname: s\nrules:\n  - match: 'i8'\n    target: 'i8x'\n"
                        "    transform: [{scale: {factor: 2.0}}]\n", "s.yaml")
    plan = make_plan({"i8": TensorSpec("I8", (5,))}, rules)
    with pytest.raises(PlanError) as info:
        refuse_plan_errors(plan, strict=False)
    text = str(info.value)
    assert "transform: i8 -> i8x (rule 0, line 4): transform step 1 (scale" in text and "scale needs a floating-point tensor" in text
    assert "shape mismatch" not in text and "(absent)" not in text
