"""A torch --target has its own unwrap and prefix options; SRC's options no longer rename its keys."""
from __future__ import annotations

import json

import pytest

from mapper_core.plan.prefix_hint import target_prefix_hint

RULES = "version: 1\nrules:\n  - match: '(\\d+)\\.(weight|bias)'\n    target: 'net.{1}.{2}'\n"


def test_the_prefix_of_every_unfilled_target_key_is_found():
    missing = ["net.0.weight", "net.0.bias"]
    assert target_prefix_hint(missing, ["model.net.0.weight", "model.net.0.bias"]) == "model."
    assert target_prefix_hint(missing, ["a.b.net.0.weight", "a.b.net.0.bias"]) == "a.b."
    assert target_prefix_hint(missing, ["model.net.0.weight", "other.x"]) is None  # not shared
    assert target_prefix_hint(missing, ["model.x.0.weight", "model.x.0.bias"]) is None  # not found under it
    assert target_prefix_hint([], ["model.a"]) is None


@pytest.fixture
def files(tmp_path):
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(2, 3))
    torch.save(net.state_dict(), tmp_path / "bare.pt")
    lightning = {f"model.net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": lightning, "epoch": 3}, tmp_path / "run.ckpt")
    (tmp_path / "r.yaml").write_text(RULES)
    return tmp_path


def test_a_bare_source_plans_against_a_lightning_target(files, mapper):
    before = mapper("plan", "bare.pt", "--rules", "r.yaml", "--target", "run.ckpt", cwd=files)
    assert before.returncode == 1
    assert ("run.ckpt: every target key nothing fills starts with 'model.', and the plan's targets are found under it "
            "('net.0.weight' is 'model.net.0.weight' there); add --target-strip-prefix model.") in before.stderr
    done = mapper("plan", "bare.pt", "--rules", "r.yaml", "--target", "run.ckpt", "--target-strip-prefix", "model.",
                  "--json", cwd=files)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["summary"]["target_filled"] == 1.0
    # convert says it too, before its refusal of the plan's errors
    refused = mapper("convert", "bare.pt", "out.safetensors", "--rules", "r.yaml", "--target", "run.ckpt", cwd=files)
    assert refused.returncode == 1 and "add --target-strip-prefix model." in refused.stderr
    assert refused.stderr.index("--target-strip-prefix") < refused.stderr.index("nothing was written")


def test_strip_prefix_names_the_source_only(files, mapper):
    # it used to strip the target too, and then failed on a source without the prefix
    done = mapper("plan", "bare.pt", "--rules", "r.yaml", "--target", "run.ckpt", "--strip-prefix", "",
                  "--target-strip-prefix", "model.", cwd=files)
    assert done.returncode == 0, done.stderr
    unwrapped = mapper("plan", "bare.pt", "--rules", "r.yaml", "--target", "run.ckpt", "--target-unwrap", "state_dict",
                       "--target-strip-prefix", "model.", cwd=files)
    assert unwrapped.returncode == 0, unwrapped.stderr


@pytest.mark.parametrize("extra, said", [
    ([], "--target-strip-prefix only applies to a --target checkpoint file (a torch one); add --target T"),
    (["--target", "model:nothing"], "a model target's keys are its own: drop --target-strip-prefix"),
])
def test_target_options_without_a_target_file_are_refused(tmp_path, mapper, extra, said):
    from tiny_safetensors import write_f32

    write_f32(tmp_path / "a.safetensors", {"0.weight": [2]})
    (tmp_path / "r.yaml").write_text(RULES)
    done = mapper("plan", "a.safetensors", "--rules", "r.yaml", *extra, "--target-strip-prefix", "model.", cwd=tmp_path)
    assert done.returncode == 2 and said in done.stderr


def test_target_options_for_a_safetensors_target_are_refused(tmp_path, mapper):
    from tiny_safetensors import write_f32

    write_f32(tmp_path / "a.safetensors", {"0.weight": [2]})
    write_f32(tmp_path / "t.safetensors", {"model.net.0.weight": [2]})
    (tmp_path / "r.yaml").write_text(RULES)
    done = mapper("plan", "a.safetensors", "--rules", "r.yaml", "--target", "t.safetensors", "--target-unwrap", "x",
                  cwd=tmp_path)
    assert done.returncode == 2
    assert "t.safetensors: --target-unwrap applies to torch checkpoints" in done.stderr
    hinted = mapper("plan", "a.safetensors", "--rules", "r.yaml", "--target", "t.safetensors", cwd=tmp_path)
    assert "begin the rules' templates with 'model.'" in hinted.stderr
