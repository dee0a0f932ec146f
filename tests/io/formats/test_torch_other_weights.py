"""Weights the unwrap rule leaves beside the state dict (an EMA copy): named by the --unwrap that takes
them, down to the dict of tensors (Lightning's callbacks.EMA.ema_state_dict), in convert's warning and
in inspect's report alike."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from cli_runner import mapper  # noqa: E402  (tests/helpers)
from mapper_core.io.formats import open_checkpoint  # noqa: E402
from mapper_core.io.inspection import inspect_path, render_text  # noqa: E402


def _weights(scale: float = 1.0) -> dict:
    return {"layer.weight": torch.full((3, 4), scale), "layer.bias": torch.full((3,), scale)}


def _lightning(path):
    torch.save({"epoch": 3, "state_dict": _weights(),
                "callbacks": {"EMA": {"ema_state_dict": _weights(0.5), "decay": 0.999}}}, path)
    return path


def _ema(path):
    torch.save({"state_dict": _weights(), "state_dict_ema": _weights(0.5)}, path)
    return path


def test_the_unwrap_named_reaches_the_dict_of_tensors(tmp_path):
    with open_checkpoint(_lightning(tmp_path / "l.ckpt")) as r:
        assert r.unwrap_path == "state_dict" and r.other_weights == {"callbacks.EMA.ema_state_dict": 2}
    with open_checkpoint(_ema(tmp_path / "e.pt")) as r:
        assert r.other_weights == {"state_dict_ema": 2}


def test_the_warning_proposes_an_unwrap_that_works(tmp_path):
    src = _lightning(tmp_path / "l.ckpt")
    r = mapper("convert", src, tmp_path / "a.safetensors")
    assert r.returncode == 0 and "--unwrap callbacks.EMA.ema_state_dict takes it instead" in r.stderr, r.stderr
    r = mapper("convert", src, tmp_path / "b.safetensors", "--unwrap", "callbacks.EMA.ema_state_dict")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("make, path", [(_ema, "state_dict_ema"), (_lightning, "callbacks.EMA.ema_state_dict")],
                         ids=["ema", "lightning"])
def test_inspect_shows_the_other_weights(tmp_path, make, path):
    src = make(tmp_path / "m.pt")
    report = inspect_path(src)
    assert report.other_weights == {path: 2}
    assert f"  --unwrap {path}  2 tensors" in render_text(report)
    r = mapper("inspect", src)
    assert r.returncode == 0 and "other weights (an EMA copy?)" in r.stdout and f"--unwrap {path}" in r.stdout
    assert json.loads(mapper("inspect", src, "--json").stdout)["other_weights"] == {path: 2}
    taken = json.loads(mapper("inspect", src, "--unwrap", path, "--json").stdout)
    assert "other_weights" not in taken and taken["unwrap_path"] == path
