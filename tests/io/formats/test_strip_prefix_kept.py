"""--strip-prefix that some keys lack keeps them as they are, and says so (a tied lm_head.weight beside
the model.* keys of a Hugging Face state dict): a warning naming them, once per command."""
from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")

from mapper_core.errors import CheckpointWarning  # noqa: E402
from mapper_core.io.formats import open_checkpoint  # noqa: E402


@pytest.fixture
def hf(tmp_path):
    emb = torch.ones(3, 2)
    torch.save({"model.embed.weight": emb, "model.norm.weight": torch.ones(2), "lm_head.weight": emb, "step": 3},
               tmp_path / "hf.pt")
    return tmp_path


def test_the_reader_warns_and_lists_the_keys_it_kept(hf):
    with pytest.warns(CheckpointWarning) as caught:
        with open_checkpoint(hf / "hf.pt", strip_prefix="model.") as reader:
            assert sorted(reader.specs()) == ["embed.weight", "lm_head.weight", "norm.weight"]
            assert reader.kept_unprefixed == ("lm_head.weight",)  # the non-tensor 'step' is not counted
    assert [str(w.message) for w in caught] == [
        f"{hf / 'hf.pt'}: stripped the prefix 'model.' from 2 keys; 1 key lacks it and is kept as it is: "
        "'lm_head.weight'"]


def test_no_warning_when_every_key_has_the_prefix_or_none_is_given(hf):
    torch.save({"model.a": torch.ones(1), "model.b": torch.ones(1)}, hf / "all.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)
        with open_checkpoint(hf / "all.pt", strip_prefix="model.") as reader:
            assert reader.kept_unprefixed == ()
        with open_checkpoint(hf / "hf.pt") as reader:
            assert reader.kept_unprefixed == ()


def test_the_commands_say_it_once(hf, mapper):
    done = mapper("convert", "hf.pt", "out.safetensors", "--strip-prefix", "model.", cwd=hf)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("mapper: warning: hf.pt: stripped the prefix 'model.' from 2 keys; 1 key lacks it and "
                             "is kept as it is: 'lm_head.weight'") == 1
    inspected = mapper("inspect", "hf.pt", "--strip-prefix", "model.", cwd=hf)
    assert inspected.returncode == 0 and inspected.stderr.count("1 key lacks it and is kept as it is") == 1
