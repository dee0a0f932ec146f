"""mapper inspect looks where convert refuses: containers of weights the unwrap rule chooses
none of are shown with the --unwrap taking each tensor, and views larger than their storage (a
stride-0 memory bomb) are marked from their headers, never materialised. convert and plan still refuse."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from mapper_core.errors import CheckpointError, ExpansionError  # noqa: E402
from mapper_core.io.formats.torch_format import open_torch  # noqa: E402
from mapper_core.io.inspection import inspect_path, render_text  # noqa: E402


def gan(tmp_path, scale: bool = True):
    torch.manual_seed(0)
    obj = {"G": torch.nn.Linear(4, 4).state_dict(), "D": torch.nn.Linear(4, 1).state_dict(), "epoch": 5}
    if scale:
        obj["scale"] = torch.tensor(1024.0)
    torch.save(obj, tmp_path / "gan.pt")
    return tmp_path / "gan.pt"


def test_inspect_shows_each_container_and_the_unwrap_taking_each_tensor(tmp_path):
    d = inspect_path(gan(tmp_path)).to_dict()
    assert [(t["key"], t.get("unwrap")) for t in d["tensors"]] == [
        ("G.weight", "G"), ("G.bias", "G"), ("D.weight", "D"), ("D.bias", "D"), ("scale", "")]
    assert d["unwrap_choices"] == {"G": 2, "D": 2, "": 1}
    assert d["non_tensor"] == [{"key": "epoch", "type": "int"}]
    assert "unwrap_path" not in d and d["totals"]["tensors"] == 5


def test_inspect_text_names_the_choices_and_that_convert_refuses(tmp_path):
    text = render_text(inspect_path(gan(tmp_path)))
    lines = text.splitlines()
    assert lines[2].split() == ["key", "dtype", "shape", "values", "bytes", "unwrap"]
    assert next(x for x in lines if x.startswith("scale")).split()[-1] == "''"
    assert "so convert and plan refuse the file without --unwrap" in text
    assert "  --unwrap G   2 tensors" in lines and "  --unwrap D   2 tensors" in lines
    assert "  --unwrap ''  1 tensor (the top level's own; the containers are left behind)" in lines


def test_cli_inspect_exits_0_while_convert_and_plan_still_refuse(tmp_path, mapper):
    path = gan(tmp_path)
    shown = mapper("inspect", path, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["unwrap_choices"] == {"G": 2, "D": 2, "": 1}
    refused = mapper("convert", path, tmp_path / "o.safetensors")
    assert refused.returncode == 2 and "would be left behind" in refused.stderr
    with pytest.raises(CheckpointError, match="would be left behind"):
        open_torch(path)
    chosen = mapper("inspect", path, "--unwrap", "G", "--json")
    data = json.loads(chosen.stdout)
    assert data["unwrap_path"] == "G" and [t["key"] for t in data["tensors"]] == ["weight", "bias"]
    assert "unwrap_choices" not in data


def test_only_containers_and_an_optimizer_whose_moments_are_no_choice(tmp_path):
    d = inspect_path(gan(tmp_path, scale=False)).to_dict()
    assert d["unwrap_choices"] == {"G": 2, "D": 2}
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(1, 3)).sum().backward()
    opt.step()
    torch.save({"optimizer": opt.state_dict(), "weights": model.state_dict(), "step": torch.tensor(5)},
               tmp_path / "w.pt")
    d = inspect_path(tmp_path / "w.pt").to_dict()
    assert d["unwrap_choices"] == {"weights": 2, "": 1}
    moments = [t for t in d["tensors"] if t["key"].startswith("optimizer.state.")]
    assert moments and all("unwrap" not in t for t in moments)
    assert any(line.startswith("optimizer.state.0.exp_avg ") and line.split()[-1] == "-"
               for line in render_text(inspect_path(tmp_path / "w.pt")).splitlines())


def test_two_tensors_at_one_dotted_path_are_refused_with_the_choices(tmp_path):
    torch.save({"G.w": torch.ones(2), "G": {"w": torch.ones(2)}}, tmp_path / "clash.pt")
    with pytest.raises(CheckpointError, match=r"clash.pt: two tensors are both at the dotted path 'G.w'.*--unwrap G"):
        inspect_path(tmp_path / "clash.pt")


def test_a_stride0_bomb_is_shown_marked_and_never_materialised(tmp_path, mapper):
    torch.save({"w": torch.zeros(1).expand(10**12), "b": torch.ones(3)}, tmp_path / "bomb.pt")
    with pytest.raises(ExpansionError):
        open_torch(tmp_path / "bomb.pt")
    with open_torch(tmp_path / "bomb.pt", survey=True) as reader:
        assert reader.get_tensor("w").stride() == (0,)  # still the view of one stored number
        assert reader.larger_views == {"w": 4}
    d = inspect_path(tmp_path / "bomb.pt").to_dict()
    rows = {t["key"]: t for t in d["tensors"]}
    assert rows["w"]["storage_bytes"] == 4 and rows["w"]["bytes"] == 4 * 10**12 and "storage_bytes" not in rows["b"]
    assert "past the limit" in d["expansion_refusal"] and "--allow-expansion" in d["expansion_refusal"]
    shown = mapper("inspect", tmp_path / "bomb.pt")
    assert shown.returncode == 0, shown.stderr
    assert "w  (view over 4 B stored)" in shown.stdout
    assert "convert and plan refuse the file: tensor 'w' (shape [1000000000000], stride [0]" in shown.stdout
    assert mapper("convert", tmp_path / "bomb.pt", tmp_path / "o.safetensors").returncode == 2


def test_a_small_repeated_view_is_marked_without_a_refusal(tmp_path):
    torch.save({"w": torch.zeros(1).expand(8)}, tmp_path / "small.pt")
    report = inspect_path(tmp_path / "small.pt")
    assert report.expansion_refusal is None and report.tensors[0].storage_bytes == 4
    assert "views larger than their storage (marked above): convert writes each out in full" in render_text(report)
