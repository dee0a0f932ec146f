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


# -- a file mapper-core wrote, read again: its aliases are keys of the checkpoint ----------------------

@pytest.fixture
def written(tmp_path, tied):
    src, sd = tied
    out = tmp_path / "tied.safetensors"
    convert(src, out)
    return out, sd


def test_reading_a_written_file_gives_its_aliases_as_keys(written):
    out, sd = written
    with open_checkpoint(out) as reader:
        specs = reader.specs()
        assert set(specs) == set(sd) and reader.aliases() == {"also.tied": "embed.weight",
                                                              "lm_head.weight": "embed.weight"}
        assert specs["lm_head.weight"] == specs["embed.weight"]
        assert reader.locate("lm_head.weight") == reader.locate("embed.weight")
        assert same_bits(reader.get_tensor("lm_head.weight"), sd["lm_head.weight"])


def test_converting_a_written_file_again_keeps_the_tie(tmp_path, written):
    """The alias metadata used to be dropped with the source's other mapper.* keys, and lm_head lost."""
    out, sd = written
    again = tmp_path / "again.safetensors"
    result = convert(out, again)
    assert result.aliases == 2 and result.tensors == 4
    assert again.read_bytes()[:8] and load_file(str(again)).keys() == load_file(str(out)).keys()
    loaded = load_safetensors(again)
    assert loaded["lm_head.weight"] is loaded["embed.weight"] and same_bits(loaded["also.tied"], sd["also.tied"])


def test_a_written_file_as_the_target_has_the_tied_keys(tmp_path, written, tied):
    """`mapper plan model.pt --target converted.safetensors` said 'the target has no such key' for lm_head."""
    out, _ = written
    ruleset = load_rules_text(tmp_path, "version: 1\nrules:\n  - match: '(.+)'\n    target: '{1}'\n")
    with open_checkpoint(tied[0]) as src, open_checkpoint(out) as target:
        plan = make_plan(src.specs(), ruleset, target.specs())
    assert not plan.has_errors(strict=True), plan.errors


def test_sharded_output_reads_back_with_its_aliases(tmp_path, tied):
    src, sd = tied
    folder = tmp_path / "sharded"
    folder.mkdir()
    convert(src, folder / "model.safetensors.index.json", max_shard_size="64B")
    with open_checkpoint(folder / "model.safetensors.index.json") as reader:
        assert set(reader.specs()) == set(sd) and set(reader.aliases()) == {"also.tied", "lm_head.weight"}
        assert same_bits(reader.get_tensor("also.tied"), sd["also.tied"])


def test_an_inconsistent_alias_map_is_refused(tmp_path):
    from mapper_core.errors import CheckpointError
    from safetensors.torch import save_file

    path = tmp_path / "bad.safetensors"
    save_file({"a": torch.zeros(2)}, str(path), metadata={ALIASES_KEY: json.dumps({"a": "a"})})
    with pytest.raises(CheckpointError, match="also stored as a tensor"):
        open_checkpoint(path)


def load_rules_text(tmp_path, text):
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return load_rules(path)
