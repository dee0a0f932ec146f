"""verify and suggest on odd input end in a clear error (exit 2) naming what was wrong, never a
traceback: integer bounds and seeds past what torch takes, an input file with no tensors, and a
plugin whose model factory returns something that is not a model."""
from __future__ import annotations

import textwrap

import pytest
import torch
from cli_runner import mapper
from safetensors.torch import save_file

PLUGIN = textwrap.dedent('''
    from mapper_core.plugins import ModelFactory, hookimpl


    def _net():
        from torch import nn
        return nn.Sequential(nn.Linear(4, 4))


    @hookimpl
    def mapper_models():
        return [ModelFactory("net", _net), ModelFactory("number", lambda: 42), ModelFactory("nothing", lambda: None)]
''')
SAME = "version: 1\nrules:\n  - match: '(.+)'\n    target: '{1}'\n"


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "badmodels.py").write_text(PLUGIN)
    save_file(torch.nn.Sequential(torch.nn.Linear(4, 4)).state_dict(), str(tmp_path / "net.safetensors"))
    save_file({}, str(tmp_path / "nothing.safetensors"))
    (tmp_path / "same.yaml").write_text(SAME)
    return tmp_path


def verify(folder, *args, target="model:net"):
    return mapper("--plugin", "badmodels", "verify", "--rules", folder / "same.yaml", "--source",
                  folder / "net.safetensors", "--source-model", "model:net", "--target-model", target, *args,
                  env={"PYTHONPATH": str(folder)}, cwd=folder)


@pytest.mark.parametrize("args, message", [
    (("--input", "2x4:int64:99999999999999999999"),
     "--input '2x4:int64:99999999999999999999': the bound 99999999999999999999 is past what int64 holds; "
     "expected at most 9223372036854775807"),
    (("--input", "2x4:int32:2147483649"), "past what int32 holds; expected at most 2147483648, or :int64 for a "
                                          "larger one"),
    (("--input", "nothing.safetensors"), "--input 'nothing.safetensors': the file holds no tensors"),
    (("--input", "2x4", "--seed", str(1 << 64)), f"--seed {1 << 64}: expected an integer from "
                                                 "-9223372036854775808 to 18446744073709551615"),
])
def test_inputs_torch_would_refuse_are_refused_first(folder, args, message):
    done = verify(folder, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_the_widest_bound_and_seed_torch_takes_still_run(folder):
    done = verify(folder, "--input", "2x4:int32:2147483648", "--seed", str((1 << 64) - 1))
    # the seed and the bound are taken; the Linear then refuses integer inputs, and says so
    assert done.returncode == 2 and "model:net could not run on the inputs [2, 4]" in done.stderr


@pytest.mark.parametrize("model, kind", [("number", "int"), ("nothing", "NoneType")])
def test_a_factory_that_returns_no_model_is_the_plugins_error(folder, model, kind):
    said = (f"plugin 'badmodels': model '{model}' returned a value of type {kind}, not a torch.nn.Module; "
            "its ModelFactory's build must return the model")
    for done in (verify(folder, "--input", "2x4", target=f"model:{model}"),
                 mapper("--plugin", "badmodels", "suggest", "--source", folder / "net.safetensors", "--target",
                        f"model:{model}", env={"PYTHONPATH": str(folder)})):
        assert done.returncode == 2, done.stdout + done.stderr
        assert said in done.stderr and "Traceback" not in done.stderr
