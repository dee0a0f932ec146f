"""A meta tensor (a shape without data) in a torch file: the file stays readable; only writing or
loading that key is refused, naming it (a rotary 'inv_freq' left on meta by init_empty_weights)."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

from cli_runner import mapper  # noqa: E402  (tests/helpers)
from mapper_core.errors import CheckpointError  # noqa: E402
from mapper_core.io.convert import convert  # noqa: E402
from mapper_core.io.formats import open_checkpoint  # noqa: E402
from mapper_core.io.inspection import inspect_path  # noqa: E402

SKIP_INV_FREQ = "version: 1\nrules:\n  - match: '(.*)'\n    target: '{1}'\nskip: ['.*inv_freq']\n"


def _checkpoint(path, legacy: bool = False):
    state = {"layer.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3),
             "rotary.inv_freq": torch.empty(4, dtype=torch.bfloat16, device="meta"),
             "layer.bias": torch.ones(2, dtype=torch.float16)}
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return path


def test_reader_lists_a_meta_key_and_refuses_only_its_bytes(tmp_path):
    with open_checkpoint(_checkpoint(tmp_path / "m.pt")) as r:
        assert r.specs()["rotary.inv_freq"].dtype == "BF16" and r.specs()["rotary.inv_freq"].shape == (4,)
        assert r.meta_keys == {"rotary.inv_freq"}
        assert r.get_tensor("layer.weight").sum().item() == 15
        assert r.aliases() == {} and r.shares_storage("rotary.inv_freq") == ()
        with pytest.raises(CheckpointError, match=r"m\.pt: tensor 'rotary\.inv_freq' is a meta tensor.*skip it"):
            r.get_tensor("rotary.inv_freq")


def test_inspect_shows_the_meta_key(tmp_path):
    src = _checkpoint(tmp_path / "m.pt")
    report = inspect_path(src)
    assert [t.key for t in report.tensors if t.meta] == ["rotary.inv_freq"]
    r = mapper("inspect", src)
    assert r.returncode == 0, r.stderr
    assert "rotary.inv_freq  (meta: no data)" in r.stdout and "meta tensors (marked above): 1 key" in r.stdout
    rows = {t["key"]: t for t in json.loads(mapper("inspect", src, "--json").stdout)["tensors"]}
    assert rows["rotary.inv_freq"]["meta"] is True and "meta" not in rows["layer.weight"]


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_plan_and_convert_that_skip_the_meta_key_succeed(tmp_path, legacy):
    src = _checkpoint(tmp_path / "m.pt", legacy)
    rules = tmp_path / "r.yaml"
    rules.write_text(SKIP_INV_FREQ)
    r = mapper("plan", src, "--rules", rules)
    assert r.returncode == 0 and "rotary.inv_freq" in r.stdout, r.stdout + r.stderr
    r = mapper("convert", src, tmp_path / "o.safetensors", "--rules", rules, "--verify")
    assert r.returncode == 0, r.stderr
    got = load_file(str(tmp_path / "o.safetensors"))
    assert set(got) == {"layer.weight", "layer.bias"} and got["layer.weight"].sum().item() == 15


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_convert_that_writes_the_meta_key_refuses_naming_it(tmp_path, legacy):
    src = _checkpoint(tmp_path / "m.pt", legacy)
    r = mapper("convert", src, tmp_path / "o.safetensors")
    assert r.returncode == 2
    assert "tensor 'rotary.inv_freq' is a meta tensor" in r.stderr and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == [src]  # nothing written, no temporary left
    with pytest.raises(CheckpointError, match="rotary.inv_freq"):
        convert(src, tmp_path / "o.safetensors")
