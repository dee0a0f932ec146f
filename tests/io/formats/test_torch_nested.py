"""Containers of tensors beside the chosen state dict are weights: refused, never left behind silently;
and an empty file is called empty."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from mapper_core.errors import CheckpointError  # noqa: E402
from mapper_core.io.formats.torch_format import open_torch  # noqa: E402


def gan(scale: bool = True) -> dict:
    torch.manual_seed(0)
    out = {"G": torch.nn.Linear(4, 4).state_dict(), "D": torch.nn.Linear(4, 1).state_dict(), "epoch": 5}
    if scale:
        out["scale"] = torch.tensor(1024.0)  # the AMP scaler's loose tensor made the top level look like a state dict
    return out


def save(obj, path, legacy: bool):
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_loose_tensor_beside_state_dicts_is_refused_naming_them(tmp_path, legacy):
    path = save(gan(), tmp_path / "gan.pt", legacy)
    with pytest.raises(CheckpointError) as info:
        open_torch(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "'G' (OrderedDict, 2 tensors), 'D' (OrderedDict, 2 tensors)" in msg
    assert "--unwrap G" in msg and "--unwrap ''" in msg and "1 tensor of the top level" in msg


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_the_named_dict_is_taken_and_the_top_level_on_request(tmp_path, legacy):
    path = save(gan(), tmp_path / "gan.pt", legacy)
    assert sorted(open_torch(path, unwrap="G").specs()) == ["bias", "weight"]
    top = open_torch(path, unwrap="")
    assert list(top.specs()) == ["scale"]
    assert top.non_tensors() == {"G": "OrderedDict holding 2 tensors", "D": "OrderedDict holding 2 tensors",
                                 "epoch": "int"}


def test_without_a_loose_tensor_the_advice_names_the_containers(tmp_path):
    path = save(gan(scale=False), tmp_path / "gan2.pt", legacy=False)
    with pytest.raises(CheckpointError, match=r"found no state dict.*'G' \(OrderedDict, 2 tensors\).*--unwrap G"):
        open_torch(path)


def test_lists_and_deeper_containers_are_counted_and_indexed(tmp_path):
    state = {"x": torch.ones(1), "lst": [torch.ones(2), {"w": torch.ones(1)}], "cfg": {"lr": 0.1}}
    path = save(state, tmp_path / "n.pt", legacy=False)
    with pytest.raises(CheckpointError, match=r"'lst' \(list, 2 tensors\).*--unwrap lst\.1 to take it") as info:
        open_torch(path)
    assert "'cfg'" not in str(info.value)  # a config without tensors is an ordinary non-tensor value
    assert list(open_torch(path, unwrap="lst.1").specs()) == ["w"]


def test_a_list_checkpoint_is_unwrapped_by_index(tmp_path):
    path = save([{"w": torch.ones(1)}], tmp_path / "list.pt", legacy=False)
    with pytest.raises(CheckpointError, match="holds a list.*--unwrap 0 to take it"):
        open_torch(path)
    assert list(open_torch(path, unwrap="0").specs()) == ["w"]
    with pytest.raises(CheckpointError, match=r"unwrap path '3': no index 3 in the top level \(a list of 1\)"):
        open_torch(path, unwrap="3")


def test_a_config_beside_the_weights_is_still_fine(tmp_path):
    path = save({"w": torch.ones(2), "config": {"lr": 0.1, "layers": [1, 2]}, "step": 3}, tmp_path / "t.pt", False)
    assert open_torch(path).non_tensors() == {"config": "dict", "step": "int"}


def test_cli_refuses_with_exit_2_and_convert_json_lists_non_tensors(tmp_path, mapper):
    path = save(gan(), tmp_path / "gan.pt", legacy=False)
    refused = mapper("convert", str(path), str(tmp_path / "x.safetensors"))
    assert refused.returncode == 2 and "--unwrap G" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "x.safetensors").exists()
    plan = mapper("plan", str(path), "--rules", str(write_ident(tmp_path)))
    assert plan.returncode == 2 and "'D' (OrderedDict, 2 tensors)" in plan.stderr
    done = mapper("convert", str(path), str(tmp_path / "top.safetensors"), "--unwrap", "", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["tensors"] == 1 and data["left_behind"] == 0
    assert data["non_tensor"] == {"G": "OrderedDict holding 2 tensors", "D": "OrderedDict holding 2 tensors",
                                  "epoch": "int"}


def write_ident(tmp_path):
    rules = tmp_path / "ident.yaml"
    rules.write_text("version: 1\nrules:\n  - match: '(.+)'\n    target: '{1}'\n")
    return rules


@pytest.mark.parametrize("name", ["empty.pt", "empty.bin"])
def test_an_empty_file_is_called_empty(tmp_path, name, mapper):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"the file is empty \(0 bytes\)"):
        open_torch(tmp_path / name)
    done = mapper("inspect", tmp_path / name, "--format", "torch")
    assert done.returncode == 2 and "the file is empty" in done.stderr and "Ran out of input" not in done.stderr


def trained():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    return model, opt


def test_an_optimizer_is_never_offered_as_the_weights(tmp_path):
    """The advice was '--unwrap optimizer.state.0', which writes Adam's moments as if they were weights."""
    model, opt = trained()
    beside = torch.save({"optimizer": opt.state_dict(), "weights": model.state_dict(), "step": torch.tensor(5)},
                        tmp_path / "w.pt")
    assert beside is None
    with pytest.raises(CheckpointError) as info:
        open_torch(tmp_path / "w.pt")
    assert "'weights' (OrderedDict, 4 tensors)" in str(info.value) and "--unwrap weights" in str(info.value)
    assert "optimizer.state" not in str(info.value)
    torch.save({"optimizer": opt.state_dict(), "weights": model.state_dict()}, tmp_path / "w2.pt")
    with pytest.raises(CheckpointError, match="--unwrap weights") as info:
        open_torch(tmp_path / "w2.pt")
    assert "an optimizer's state is not weights" in str(info.value) and "optimizer.state" not in str(info.value)
    torch.save(opt.state_dict(), tmp_path / "optimizer.pt")
    with pytest.raises(CheckpointError, match="looks like an optimizer's state_dict"):
        open_torch(tmp_path / "optimizer.pt")


def test_counters_in_a_container_beside_a_flat_state_dict_are_not_weights(tmp_path):
    model, _ = trained()
    torch.save({**model.state_dict(), "_meta": {"step": torch.tensor(7), "scale": torch.tensor(2.0)}},
               tmp_path / "flat.pt")
    reader = open_torch(tmp_path / "flat.pt")
    assert sorted(reader.specs()) == sorted(model.state_dict())


def test_weights_beside_the_chosen_state_dict_are_named_and_lightning_state_is_not(tmp_path, mapper):
    """{'model', 'model_ema'} took 'model' in silence: the EMA copy many want was left behind unsaid."""
    model, opt = trained()
    ema = {k: v * 0.5 for k, v in model.state_dict().items()}
    torch.save({"model": model.state_dict(), "model_ema": ema, "opt": opt.state_dict()}, tmp_path / "ema.pt")
    reader = open_torch(tmp_path / "ema.pt")
    assert reader.unwrap_path == "model" and reader.other_weights == {"model_ema": 4}
    done = mapper("convert", tmp_path / "ema.pt", tmp_path / "o.safetensors")
    assert done.returncode == 0, done.stderr
    assert ("took the state dict at 'model'; beside it, 'model_ema' (4 tensors) may be weights too (an EMA copy?) "
            "and is left behind: --unwrap model_ema takes it instead") in done.stderr
    lightning = {"state_dict": model.state_dict(), "optimizer_states": [opt.state_dict()], "epoch": 3,
                 "callbacks": {"ModelCheckpoint": {"best_model_score": torch.tensor(0.5)}}}
    torch.save(lightning, tmp_path / "run.ckpt")
    assert open_torch(tmp_path / "run.ckpt").other_weights == {}
    quiet = mapper("convert", tmp_path / "run.ckpt", tmp_path / "l.safetensors")
    assert quiet.returncode == 0 and "may be weights" not in quiet.stderr
