"""A sharded torch checkpoint (Hugging Face's pytorch_model.bin.index.json): read as one source, with
the safetensors index's safety rules and the torch reader's checks on every shard."""
from __future__ import annotations

import argparse
import json
import os

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

from cli_runner import mapper  # noqa: E402  (tests/helpers)
from mapper_core.errors import CheckpointError, UnsafeCheckpointError  # noqa: E402
from mapper_core.io.formats import open_checkpoint  # noqa: E402
from mapper_core.io.formats.spec_json import sniff_spec_json  # noqa: E402

INDEX = "pytorch_model.bin.index.json"
SHARDS = ("pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin")


def _sharded(folder, second=None, weight_map=None):
    """Two shards and their index, as save_pretrained(safe_serialization=False) writes them."""
    folder.mkdir(exist_ok=True)
    first = {"model.embed.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4),
             "model.layers.0.w": torch.ones(4, 4, dtype=torch.float16)}
    second = second if second is not None else {"model.layers.1.w": torch.full((4, 4), 2.0),
                                                "lm_head.weight": torch.zeros(3, 4, dtype=torch.bfloat16)}
    torch.save(first, folder / SHARDS[0])
    torch.save(second, folder / SHARDS[1])
    if weight_map is None:
        weight_map = {k: SHARDS[0] for k in first} | {k: SHARDS[1] for k in second}
    (folder / INDEX).write_text(json.dumps({"metadata": {"total_size": 1}, "weight_map": dict(sorted(weight_map.items()))}))
    return folder / INDEX, {**first, **second}


def test_the_index_is_one_torch_source_in_the_shards_own_order(tmp_path):
    index, state = _sharded(tmp_path / "m")
    with open_checkpoint(index) as r:
        assert list(r.specs()) == list(state)  # not the index's sorted order
        assert r.specs()["lm_head.weight"].dtype == "BF16"
        assert r.weight_map["model.layers.1.w"] == SHARDS[1]
        assert torch.equal(r.get_tensor("model.embed.weight"), state["model.embed.weight"])
    report = json.loads(mapper("inspect", index, "--json").stdout)
    assert report["format"] == "torch" and report["tensors"][0]["shard"] == SHARDS[0]


def test_convert_writes_every_shards_tensors_verified(tmp_path):
    index, state = _sharded(tmp_path / "m")
    out = tmp_path / "o.safetensors"
    r = mapper("convert", index, out, "--verify")
    assert r.returncode == 0, r.stderr
    got = load_file(str(out))
    assert set(got) == set(state) and all(torch.equal(got[k], t) for k, t in state.items())
    meta = json.loads(mapper("inspect", out, "--json").stdout)["metadata"]
    assert set(json.loads(meta["mapper.source_shards_sha256"])) == set(SHARDS)  # the shards are hashed too


def test_a_shard_link_out_of_the_folder_is_refused(tmp_path):
    index, _ = _sharded(tmp_path / "m")
    outside = tmp_path / "elsewhere.bin"
    os.replace(tmp_path / "m" / SHARDS[1], outside)
    os.symlink(outside, tmp_path / "m" / SHARDS[1])
    r = mapper("inspect", index)
    assert r.returncode == 2 and "outside the index's folder" in r.stderr and "--allow-outside-shards" in r.stderr
    assert mapper("inspect", index, "--allow-outside-shards").returncode == 0


@pytest.mark.parametrize("name", ["../x.bin", "sub/x.bin", ""])
def test_a_shard_name_that_is_not_a_plain_file_name_is_refused(tmp_path, name):
    index, state = _sharded(tmp_path / "m")
    (tmp_path / "m" / INDEX).write_text(json.dumps({"weight_map": {k: name for k in state}}))
    with pytest.raises(CheckpointError, match="expected a plain file name beside the index"):
        open_checkpoint(index)


def test_every_key_is_in_exactly_the_shard_the_index_names(tmp_path):
    _, state = _sharded(tmp_path / "m")
    index, _ = _sharded(tmp_path / "m", weight_map={k: SHARDS[0] if "embed" in k or "layers.0" in k else SHARDS[1]
                                                    for k in state} | {"ghost": SHARDS[1]})
    with pytest.raises(CheckpointError, match=r"lists 1 key\(s\) in shard '.*00002.*' that the shard lacks, e.g. "
                                              r"'ghost'"):
        open_checkpoint(index)
    _sharded(tmp_path / "n", weight_map={k: SHARDS[0] for k in ("model.embed.weight", "model.layers.0.w")}
             | {"model.layers.1.w": SHARDS[1]})
    r = mapper("convert", tmp_path / "n" / INDEX, tmp_path / "o.safetensors")
    assert r.returncode == 2 and "holds 1 key(s) the index does not map to it, e.g. 'lm_head.weight'" in r.stderr
    assert not (tmp_path / "o.safetensors").exists()


def test_each_shard_gets_the_torch_readers_checks(tmp_path):
    hidden = {"lm_head.weight": torch.zeros(2), "args": argparse.Namespace(lr=1)}  # a global weights_only refuses
    index, _ = _sharded(tmp_path / "m", second=hidden, weight_map={"lm_head.weight": SHARDS[1]})
    with pytest.raises(UnsafeCheckpointError, match=r"pytorch_model-00002-of-00002\.bin: refused"):
        open_checkpoint(index)


def test_an_index_is_never_read_as_a_spec_file(tmp_path):
    index, _ = _sharded(tmp_path / "m")
    assert not sniff_spec_json(index)
    renamed = tmp_path / "m" / "index.json"
    renamed.write_text(index.read_text())
    r = mapper("inspect", renamed)
    assert r.returncode == 2 and "is the index of a sharded checkpoint" in r.stderr and "*.bin.index.json" in r.stderr
    assert "tensor 'weight_map'" not in r.stderr
