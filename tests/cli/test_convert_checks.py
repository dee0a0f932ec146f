"""Issue 9 through `mapper convert`: it checks what plan checks, refuses before writing, says why,
reads real-world torch files, and talks about sizes, shards and phases the way a person needs."""
from __future__ import annotations

import json
import textwrap

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from wrong_transform import MISMATCH_LINE, write_files  # tests/helpers

TINY_MODEL_PLUGIN = """\
from mapper_core.plugins import ModelFactory, hookimpl


def build():
    from torch import nn

    net = nn.Module()
    net.net = nn.Module()
    net.net.fc = nn.Linear(32, 64)
    return net


@hookimpl
def mapper_models():
    return [ModelFactory("tiny", build)]
"""


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "src.safetensors"
    save_file({"fc.weight": torch.randn(64, 32), "fc.bias": torch.randn(64)}, str(path))
    return path


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def nothing_but(tmp_path, *names: str) -> bool:
    return sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("__")) == sorted(names)


@pytest.mark.parametrize("target", ["file", "model"])
def test_convert_with_a_target_refuses_a_wrong_transform_before_writing(tmp_path, mapper, target):
    src, target_file, rules = write_files(tmp_path)
    out = tmp_path / "out.safetensors"
    if target == "file":
        proc = mapper("convert", src, out, "--rules", rules, "--target", target_file)
    else:
        write(tmp_path, "tiny_models.py", TINY_MODEL_PLUGIN)
        proc = mapper("--plugin", "tiny_models", "convert", src, out, "--rules", rules, "--target", "model:tiny",
                      env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 1, proc.stderr
    assert MISMATCH_LINE in proc.stderr
    assert "nothing was written" in proc.stderr and not out.exists()
    assert not [p for p in tmp_path.iterdir() if "mapper-tmp" in p.name]


def test_a_typo_in_match_writes_no_empty_file(tmp_path, src, mapper):
    rules = write(tmp_path, "typo.yaml", """\
        version: 1
        name: typo
        rules:
          - match: 'model\\.fc\\.(.+)'
            target: 'net.fc.{1}'
        """)
    out = tmp_path / "out.safetensors"
    proc = mapper("convert", src, out, "--rules", rules, "--unmatched", "drop")
    assert proc.returncode == 1, proc.stderr
    assert "0 tensors" in proc.stderr and "'fc.weight'" in proc.stderr and "typo.yaml" in proc.stderr
    assert not out.exists()


def test_a_size_without_a_unit_is_refused_with_a_hint(tmp_path, src, mapper):
    proc = mapper("convert", src, tmp_path / "out.safetensors", "--max-shard-size", "500")
    assert proc.returncode == 2 and "no unit" in proc.stderr and "500MB" in proc.stderr and "2GiB" in proc.stderr
    assert not (tmp_path / "out.safetensors").exists()


def test_many_shards_are_summarised_not_listed(tmp_path, mapper):
    src = tmp_path / "many.safetensors"
    save_file({f"w{i:02d}": torch.zeros(16) for i in range(40)}, str(src))
    proc = mapper("convert", src, tmp_path / "model.safetensors", "--max-shard-size", "64B")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) <= 4 and "40 shards of" in proc.stdout
    assert "model-00001-of-00040.safetensors … model-00040-of-00040.safetensors" in proc.stdout
    assert "model-00002-of-00040" not in proc.stdout
    assert f"index: {tmp_path / 'model.safetensors.index.json'}" in proc.stdout


def test_piped_output_names_each_phase(tmp_path, mapper):
    src = tmp_path / "big.safetensors"
    save_file({"w": torch.zeros(5 << 20)}, str(src))  # 20 MiB: above the threshold for progress
    proc = mapper("convert", src, tmp_path / "out.safetensors", "--verify")
    assert proc.returncode == 0, proc.stderr
    phases = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("mapper: ")]
    assert phases[:2] == ["reading", "writing"] and phases[-1] == "verifying"
    quiet = mapper("convert", src, tmp_path / "q.safetensors", "--verify", "-q")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_a_checkpoint_with_non_tensor_values_converts_and_keeps_them_as_metadata(tmp_path, mapper):
    pt = tmp_path / "train.pt"
    torch.save({"w": torch.ones(2), "step": 5, "config": {"lr": 0.1}}, pt)
    proc = mapper("convert", pt, tmp_path / "out.safetensors")
    assert proc.returncode == 0, proc.stderr
    with safe_open(str(tmp_path / "out.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["mapper.extra"]) == {"config": {"lr": 0.1}, "step": 5}
        assert list(f.keys()) == ["w"]


def test_a_pickled_module_says_so_and_converts_with_trust_pickle(tmp_path, mapper):
    pt = tmp_path / "model.pt"
    model = nn.Sequential(nn.Linear(2, 3))
    torch.save(model, pt)
    refused = mapper("convert", pt, tmp_path / "out.safetensors")
    assert refused.returncode == 2 and "nn.Module" in refused.stderr and "model.state_dict()" in refused.stderr
    trusted = mapper("convert", pt, tmp_path / "out.safetensors", "--trust-pickle")
    assert trusted.returncode == 0, trusted.stderr
    notes = [line for line in trusted.stderr.splitlines() if "nn.Module" in line]
    assert len(notes) == 1 and notes[0].startswith("mapper: warning: ") and "state_dict()" in notes[0]
    assert torch.equal(load_file(str(tmp_path / "out.safetensors"))["0.weight"], model[0].weight.detach())


def test_a_plugin_that_is_not_found_names_the_folder_and_pythonpath(tmp_path, mapper):
    (tmp_path / "mymodule.py").write_text("")
    proc = mapper("--plugin", "mymodule", "plugins", cwd=tmp_path)
    assert "mymodule" in proc.stderr and "PYTHONPATH" in proc.stderr and str(tmp_path) in proc.stderr


PARTIAL = """\
version: 1
name: partial
rules:
  - match: 'fc\\.(.+)'
    target: 'net.fc.{1}'
"""


@pytest.mark.parametrize("policy, code, keys", [(None, 1, None), ("drop", 0, ["net.fc.bias", "net.fc.weight"]),
                                                ("keep", 0, ["net.fc.bias", "net.fc.weight", "scale"])])
def test_unmatched_keys_are_a_decision_on_the_command_line(tmp_path, mapper, policy, code, keys):
    src = tmp_path / "src.safetensors"
    save_file({"fc.weight": torch.ones(2, 2), "fc.bias": torch.ones(2), "scale": torch.ones(1)}, str(src))
    rules = write(tmp_path, "partial.yaml", PARTIAL)
    out = tmp_path / "out.safetensors"
    proc = mapper("convert", src, out, "--rules", rules, *(["--unmatched", policy] if policy else []))
    assert proc.returncode == code, proc.stderr
    if keys is None:  # the default is error: refused, naming the key and the remedies
        assert "unmatched: scale" in proc.stderr and "--unmatched keep|drop" in proc.stderr and not out.exists()
    else:
        assert sorted(load_file(str(out))) == keys


def test_the_plan_lists_non_tensor_values(tmp_path, mapper):
    pt = tmp_path / "train.pt"
    torch.save({"fc.weight": torch.ones(2, 2), "step": 5, "config": {"lr": 0.1}}, pt)
    rules = write(tmp_path, "partial.yaml", PARTIAL)
    proc = mapper("plan", pt, "--rules", rules, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["non_tensor"] == [{"key": "step", "type": "int"}, {"key": "config", "type": "dict"}]


SWAPPED_BIASES = """\
version: 1
name: swapped
rules:
  - match: 'fc\\.bias'
    target: 'net.bn.bias'
  - match: 'bn\\.bias'
    target: 'net.fc.bias'
  - match: '(fc|bn)\\.(.+)'
    target: 'net.{1}.{2}'
"""

NORM_MODEL_PLUGIN = TINY_MODEL_PLUGIN.replace("    net.net.fc = nn.Linear(32, 64)\n", (
    "    net.net.fc = nn.Linear(8, 8)\n    net.net.bn = nn.BatchNorm1d(8)\n"))


def test_convert_against_a_model_refuses_a_bias_moved_into_a_batchnorm(tmp_path, mapper):
    src = tmp_path / "src.pt"
    torch.save({**{f"fc.{k}": v for k, v in nn.Linear(8, 8).state_dict().items()},
                **{f"bn.{k}": v for k, v in nn.BatchNorm1d(8).state_dict().items()}}, src)
    rules = write(tmp_path, "swapped.yaml", SWAPPED_BIASES)
    write(tmp_path, "norm_models.py", NORM_MODEL_PLUGIN)
    out = tmp_path / "out.safetensors"
    proc = mapper("--plugin", "norm_models", "convert", src, out, "--rules", rules, "--target", "model:tiny",
                  env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 1, proc.stderr
    assert "kind mismatch: fc.bias" in proc.stderr and "BatchNorm1d" in proc.stderr and not out.exists()
