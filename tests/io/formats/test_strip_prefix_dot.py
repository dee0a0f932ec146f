"""--strip-prefix without its trailing dot would leave every key starting with '.': refused with the fix."""
from __future__ import annotations

from pathlib import Path

import pytest

from mapper_core.errors import CheckpointError
from mapper_core.io.formats.torch_format import strip_key_prefix

STATE = {"model.enc.0.weight": 1, "model.enc.0.bias": 2}


def test_a_prefix_missing_its_dot_is_refused_with_the_dotted_one():
    with pytest.raises(CheckpointError, match=r"did you mean the prefix 'model\.' \(with the dot\)"):
        strip_key_prefix(STATE, Path("x.ckpt"), "model")


def test_the_dotted_prefix_and_an_underscore_prefix_work():
    assert strip_key_prefix(STATE, Path("x.ckpt"), "model.") == ({"enc.0.weight": 1, "enc.0.bias": 2}, "model.")
    out, removed = strip_key_prefix({"model_a.w": 1, "model_b.w": 2}, Path("x.ckpt"), "model_")
    assert out == {"a.w": 1, "b.w": 2} and removed == "model_"
