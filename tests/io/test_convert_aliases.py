"""convert() and tied weights: stored once, recorded in metadata, restored as one tensor."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from bitwise import same_bits  # tests/helpers
from mapper_core.io.convert import convert
from mapper_core.io.formats import open_checkpoint
from mapper_core.io.formats.aliases import ALIASES_KEY, load_safetensors
from mapper_core.plan.make import make_plan
from mapper_core.rules import load_rules


def plan_for(reader, ruleset):
    return make_plan(reader.specs(), ruleset, source_origin=str(reader.path))


@pytest.fixture
def tied(tmp_path):
    w = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    sd = {"embed.weight": w, "lm_head.weight": w, "also.tied": w, "row": w[2], "transposed": w.t(),
          "free": torch.arange(3.0)}
    path = tmp_path / "tied.pt"
    torch.save(sd, path)
    return path, sd


def test_tied_weights_are_stored_once_and_restored_as_one_tensor(tmp_path, tied):
    src, sd = tied
    out = tmp_path / "tied.safetensors"
    result = convert(src, out, verify=True)
    stored = load_file(str(out))
    assert sorted(stored) == ["embed.weight", "free", "row", "transposed"]  # views that differ get their own bytes
    with safe_open(str(out), framework="pt") as f:
        aliases = json.loads(f.metadata()[ALIASES_KEY])
    assert aliases == {"also.tied": "embed.weight", "lm_head.weight": "embed.weight"}
    assert result.aliases == 2 and result.tensors == 4 and result.tensor_bytes == (24 + 4 + 24 + 3) * 4
    loaded = load_safetensors(out)
    assert set(loaded) == set(sd)
    assert loaded["lm_head.weight"] is loaded["embed.weight"] is loaded["also.tied"]
    for key, t in sd.items():
        assert same_bits(loaded[key], t), key
    assert loaded["row"].data_ptr() != loaded["embed.weight"].data_ptr()  # a copy, not a view: documented


def test_aliases_follow_the_plan_and_survive_a_skipped_canonical(tmp_path, tied):
    src, sd = tied
    path = tmp_path / "r.yaml"
    path.write_text("version: 1\nname: t\nrules:\n  - match: '(lm_head|also)\\.(.+)'\n    target: 'out.{1}.{2}'\n"
                    "skip: ['embed\\..*', 'row', 'transposed', 'free']\n")
    with open_checkpoint(src) as reader:
        convert(src, tmp_path / "o.safetensors", reader=reader, plan=plan_for(reader, load_rules(path)))
    loaded = load_safetensors(tmp_path / "o.safetensors")
    assert set(load_file(str(tmp_path / "o.safetensors"))) == {"out.lm_head.weight"}
    assert loaded["out.also.tied"] is loaded["out.lm_head.weight"]
    assert same_bits(loaded["out.also.tied"], sd["embed.weight"])


def test_aliases_in_sharded_output(tmp_path, tied):
    src, sd = tied
    convert(src, tmp_path / "s.safetensors.index.json", max_shard_size=64)
    loaded = load_safetensors(tmp_path / "s.safetensors.index.json")
    assert set(loaded) == set(sd) and loaded["lm_head.weight"] is loaded["embed.weight"]
