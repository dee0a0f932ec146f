"""Issue 9: real-world torch checkpoints that are not clean state dicts.

Non-tensor values beside the tensors are reported and left behind, never a reason to refuse
the file; a whole pickled nn.Module is read through its state_dict() under trust_pickle and
said to be a module without it; a class from the saving script's __main__, or a package that
is not installed, is named with what to do.
"""
from __future__ import annotations

import sys
import types
import warnings

import pytest
import torch
from torch import nn

from mapper_core.errors import CheckpointError, UnsafeCheckpointError
from mapper_core.io.formats.torch_format import PickledModuleWarning, TrustPickleWarning, open_torch


def save(obj, path):
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("obj, where", [
    ({"w": torch.ones(2), "step": 5, "config": {"lr": 0.1, "layers": [1, 2]}, "name": "run-7"}, ""),
    ({"state_dict": {"w": torch.ones(2), "step": 5, "config": {"lr": 0.1, "layers": [1, 2]}, "name": "run-7"},
      "epoch": 3}, "state_dict"),
])
def test_non_tensor_values_are_reported_not_refused(tmp_path, obj, where):
    r = open_torch(save(obj, tmp_path / "c.pt"))
    assert r.unwrap_path == where and list(r.specs()) == ["w"]
    assert r.non_tensors() == {"step": "int", "config": "dict", "name": "str"}
    assert r.extra_values() == {"step": 5, "config": {"lr": 0.1, "layers": [1, 2]}, "name": "run-7"}


def test_values_json_cannot_hold_are_reported_but_not_in_extra(tmp_path):
    r = open_torch(save({"w": torch.ones(1), "nan": float("nan"), "set": {1, 2}, "t": (1, 2)},
                        tmp_path / "c.pt"))
    assert r.non_tensors() == {"nan": "float", "set": "set", "t": "tuple"}
    assert r.extra_values() == {"t": (1, 2)}


def test_the_module_prefix_is_judged_by_the_tensor_keys(tmp_path):
    r = open_torch(save({"module.w": torch.ones(1), "step": 3}, tmp_path / "dp.pt"))
    assert (list(r.specs()), r.stripped_prefix, r.non_tensors()) == (["w"], "module.", {"step": "int"})


def test_a_pickled_module_without_trust_pickle_says_it_is_a_module(tmp_path):
    path = save(nn.Sequential(nn.Linear(2, 3)), tmp_path / "model.pt")
    with pytest.raises(UnsafeCheckpointError) as info:
        open_torch(path)
    message = str(info.value)
    assert "whole pickled nn.Module" in message and "model.state_dict()" in message
    assert "--trust-pickle" in message and "--unwrap" not in message


def test_a_pickled_module_with_trust_pickle_is_read_through_its_state_dict(tmp_path):
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    path = save(model, tmp_path / "model.pt")
    with pytest.warns(PickledModuleWarning, match="state_dict"), pytest.warns(TrustPickleWarning):
        r = open_torch(path, trust_pickle=True)
    assert r.module_type == "torch.nn.modules.container.Sequential"
    assert list(r.specs()) == list(model.state_dict())
    assert torch.equal(r.get_tensor("0.weight"), model[0].weight.detach())


def refusal_under_trust_pickle(path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrustPickleWarning)
        with pytest.raises(CheckpointError) as info:
            open_torch(path, trust_pickle=True)
    return str(info.value)


def _init(self):
    nn.Module.__init__(self)
    self.fc = nn.Linear(2, 2)


@pytest.mark.filterwarnings("ignore:BuiltinImporter.module_repr:DeprecationWarning")  # the unpickler's repr of __main__
def test_a_class_from_main_is_named_with_what_to_do(tmp_path, monkeypatch):
    main = sys.modules["__main__"]
    Net = type("SavedNet", (nn.Module,), {"__module__": "__main__", "__init__": _init})
    monkeypatch.setattr(main, "SavedNet", Net, raising=False)  # as in the saving script
    path = save(Net(), tmp_path / "main.pt")
    monkeypatch.delattr(main, "SavedNet")
    message = refusal_under_trust_pickle(path)
    assert "'SavedNet'" in message and "__main__" in message
    assert "state_dict()" in message and "PYTHONPATH" in message
    assert "Can't get attribute" not in message


def test_a_missing_package_is_named_with_what_to_do(tmp_path, monkeypatch):
    package = types.ModuleType("omegaconf_stand_in")
    Config = type("DictConfig", (), {"__module__": "omegaconf_stand_in"})
    package.DictConfig = Config
    monkeypatch.setitem(sys.modules, "omegaconf_stand_in", package)
    path = save({"state_dict": {"w": torch.ones(1)}, "hparams": Config()}, tmp_path / "lightning.ckpt")
    monkeypatch.delitem(sys.modules, "omegaconf_stand_in")
    message = refusal_under_trust_pickle(path)
    assert "'omegaconf_stand_in'" in message and "pip install omegaconf_stand_in" in message
    assert "PYTHONPATH" in message and "state_dict" in message


def test_inspect_lists_non_tensor_values(tmp_path):
    from mapper_core.io.inspection import inspect_path, render_text

    report = inspect_path(save({"w": torch.ones(2), "step": 5, "bad\nkey": "x"}, tmp_path / "c.pt"))
    assert report.to_dict()["non_tensor"] == [{"key": "step", "type": "int"}, {"key": "bad\nkey", "type": "str"}]
    last = render_text(report).splitlines()[-1]
    assert last.startswith("non-tensor values") and "'step' (int)" in last and "'bad\\nkey' (str)" in last
