"""A model folder given where a checkpoint goes (``save_pretrained``'s output, a hub snapshot, a
trainer's checkpoint folder): the weights inside are read, whatever else the folder holds; a folder
whose choice only the user can make is refused with each candidate named."""
from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
from pathlib import Path

import pytest

from mapper_core.errors import CheckpointError, CheckpointWarning
from mapper_core.io.formats import open_checkpoint
from tiny_safetensors import write_f32  # tests/helpers


def hub_folder(tmp: Path) -> Path:
    """A sharded save_pretrained folder: index, two shards, config and tokenizer files."""
    folder = tmp / "llama-hf"
    folder.mkdir()
    write_f32(folder / "model-00001-of-00002.safetensors", {"embed.weight": [4, 2]})
    write_f32(folder / "model-00002-of-00002.safetensors", {"head.weight": [2, 4]})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 64}, "weight_map": {
        "embed.weight": "model-00001-of-00002.safetensors", "head.weight": "model-00002-of-00002.safetensors"}}))
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "tokenizer.json").write_text("{}")
    (folder / "tokenizer.model").write_bytes(b"\n\x0e\n\x05<unk>")  # sentencepiece, not a torch .model
    (folder / "README.md").write_text("# a model card")
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    return folder


def fake_torch_file(path: Path) -> Path:
    """What the torch sniffer recognises (a zip with ``*/data.pkl``); never opened as torch here."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    return path


def read_keys(path: Path, **kwargs) -> tuple[Path, list[str]]:
    with open_checkpoint(path, **kwargs) as reader:
        return Path(reader.path), sorted(reader.specs())


def test_a_sharded_hub_folder_reads_as_its_index(tmp_path):
    folder = hub_folder(tmp_path)
    path, keys = read_keys(folder)
    assert path == folder / "model.safetensors.index.json"
    assert keys == ["embed.weight", "head.weight"]


def test_the_command_line_reads_a_folder_and_writes_what_the_index_gives(tmp_path, mapper):
    folder = hub_folder(tmp_path)
    from_folder = mapper("convert", folder, tmp_path / "a.safetensors")
    from_index = mapper("convert", folder / "model.safetensors.index.json", tmp_path / "b.safetensors")
    assert (from_folder.returncode, from_index.returncode) == (0, 0), from_folder.stderr + from_index.stderr
    assert from_folder.stderr == ""  # one checkpoint in the folder: nothing to say

    def body(path: Path) -> tuple[dict, bytes]:
        data = path.read_bytes()
        n = struct.unpack("<Q", data[:8])[0]
        header = json.loads(data[8:8 + n])
        meta = header.pop("__metadata__")
        return header, data[8 + n:], meta

    header_a, data_a, meta_a = body(tmp_path / "a.safetensors")
    header_b, data_b, meta_b = body(tmp_path / "b.safetensors")
    assert (header_a, data_a) == (header_b, data_b)
    assert meta_a["mapper.source_sha256"] == meta_b["mapper.source_sha256"] == hashlib.sha256(
        (folder / "model.safetensors.index.json").read_bytes()).hexdigest()
    assert meta_a["mapper.source"] == "llama-hf"  # what the user named


def test_safetensors_wins_over_torch_and_the_other_file_is_named(tmp_path, mapper):
    folder = tmp_path / "both"
    folder.mkdir()
    write_f32(folder / "model.safetensors", {"w": [2]})
    fake_torch_file(folder / "pytorch_model.bin")
    with pytest.warns(CheckpointWarning, match=r"read model\.safetensors, its safetensors checkpoint; the folder also "
                                               r"holds pytorch_model\.bin \(torch: the same weights, usually\)"):
        assert read_keys(folder) == (folder / "model.safetensors", ["w"])
    done = mapper("inspect", folder)
    assert done.returncode == 0
    assert done.stderr.startswith(f"mapper: warning: {folder}: read model.safetensors")  # the CLI's format, not Python's
    assert done.stderr.count("warning") == 1


def test_a_trainers_state_is_not_taken_for_the_weights(tmp_path, mapper):
    folder = tmp_path / "checkpoint-500"
    folder.mkdir()
    write_f32(folder / "model.safetensors", {"w": [2]})
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "rng_state_3.pth", "training_args.bin", "scaler.pt"):
        fake_torch_file(folder / name)
    (folder / "trainer_state.json").write_text("{}")
    done = mapper("inspect", folder)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(f"{folder / 'model.safetensors'} (safetensors)")

    (folder / "model.safetensors").unlink()  # only the state left
    done = mapper("inspect", folder)
    assert done.returncode == 2
    assert "a folder with no checkpoint inside" in done.stderr
    assert "optimizer.pt, rng_state.pth, rng_state_3.pth, scaler.pt, scheduler.pt, training_args.bin are a trainer's " \
           "state, not weights: give a file's own path" in done.stderr


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_accelerates_save_state_is_not_taken_for_the_weights(tmp_path, mapper, weights):
    # trial 6 T8: sampler.bin and optimizer_1.bin were weights, and "the same weights, usually"
    folder = tmp_path / "acc"
    folder.mkdir()
    if weights.endswith(".bin"):
        fake_torch_file(folder / weights)
    else:
        write_f32(folder / weights, {"w": [2]})
    for name in ("optimizer.bin", "optimizer_1.bin", "scheduler.bin", "scheduler_1.bin", "sampler.bin",
                 "sampler_1.bin", "scaler.pt"):
        fake_torch_file(folder / name)
    (folder / "random_states_0.pkl").write_bytes(b"\x80\x04N.")
    from mapper_core.io.formats import builtin_formats
    from mapper_core.io.formats.folder import checkpoint_in

    path, _, note = checkpoint_in(folder, builtin_formats())
    assert (path.name, note) == (weights, None)
    if weights == "model.safetensors":  # the torch one is a stand-in no reader opens
        done = mapper("inspect", folder)
        assert done.returncode == 0 and done.stderr == ""


def test_shards_without_their_index_are_refused_with_the_fix(tmp_path):
    folder = hub_folder(tmp_path)
    (folder / "model.safetensors.index.json").unlink()
    with pytest.raises(CheckpointError) as info:
        open_checkpoint(folder)
    assert str(info.value) == (
        f"{folder}: holds model-00001-of-00002.safetensors, model-00002-of-00002.safetensors, the shards of a "
        "safetensors checkpoint, but no index naming them (*.safetensors.index.json); copy the index from where the "
        "shards came from, or give one shard's own path to read that shard alone")


def test_two_checkpoints_of_one_kind_are_not_guessed_between(tmp_path, mapper):
    folder = tmp_path / "two"
    folder.mkdir()
    write_f32(folder / "ema.safetensors", {"w": [2]})
    write_f32(folder / "model.safetensors", {"w": [2]})
    done = mapper("convert", folder, tmp_path / "out.safetensors")
    assert done.returncode == 2
    assert done.stderr == (f"mapper: error: {folder}: holds 2 safetensors checkpoints (ema.safetensors, model.safetensors); "
                           "mapper-core does not guess which one is meant: give its own path\n")
    assert sorted(os.listdir(tmp_path)) == ["two"]  # nothing written


def test_a_folder_without_weights_says_what_was_looked_for(tmp_path, mapper):
    folder = tmp_path / "config-only"
    folder.mkdir()
    (folder / "config.json").write_text("{}")  # a spec file by suffix, never weights in a folder
    done = mapper("plan", folder, "--rules", write_rules(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"mapper: error: {folder}: a folder with no checkpoint inside that mapper-core "
                                  "recognises; looked for a DCP .metadata and for files named *.bin, *.bin.index.json")
    assert "Give the checkpoint file's own path" in done.stderr


def test_a_named_format_reads_its_own_checkpoint_or_says_there_is_none(tmp_path):
    folder = hub_folder(tmp_path)
    with pytest.raises(CheckpointError) as info:
        open_checkpoint(folder, format="torch")
    assert str(info.value) == (
        f"{folder}: a folder with no torch checkpoint inside; it holds model.safetensors.index.json; give the "
        "checkpoint file's own path, or leave --format out")
    assert read_keys(folder, format="safetensors")[1] == ["embed.weight", "head.weight"]


def test_a_hub_cache_snapshot_of_links_is_read(tmp_path):
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    write_f32(blobs / "0f3a", {"w": [3]})
    snapshot = tmp_path / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    os.symlink(os.path.relpath(blobs / "0f3a", snapshot), snapshot / "model.safetensors")
    (snapshot / "config.json").write_text("{}")
    assert read_keys(snapshot) == (snapshot / "model.safetensors", ["w"])


def test_a_stale_index_beside_a_single_file_is_not_guessed_between(tmp_path, mapper):
    # transformers reads model.safetensors here, a reader of the index its shards: two checkpoints
    folder = tmp_path / "stale"
    folder.mkdir()
    write_f32(folder / "model.safetensors", {"a": [2]})
    write_f32(folder / "model-00001-of-00001.safetensors", {"a": [2]})
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model-00001-of-00001.safetensors"}}))
    result = mapper("convert", folder, tmp_path / "out.safetensors")
    assert result.returncode == 2 and not (tmp_path / "out.safetensors").exists()
    assert result.stderr == (
        f"mapper: error: {folder}: holds 2 safetensors checkpoints: an index of shards and a file that is not one "
        "of them (model.safetensors.index.json, model.safetensors); mapper-core does not guess which one is meant: "
        "give its own path\n")
    assert read_keys(folder / "model.safetensors") == (folder / "model.safetensors", ["a"])


def test_two_indexes_of_one_format_are_refused(tmp_path):
    folder = hub_folder(tmp_path)
    (folder / "other.safetensors.index.json").write_text((folder / "model.safetensors.index.json").read_text())
    with pytest.raises(CheckpointError, match=r"holds 2 safetensors indexes of sharded checkpoints "
                                              r"\(model\.safetensors\.index\.json, other\.safetensors\.index\.json\)"):
        open_checkpoint(folder)


def hub_cache_snapshot(tmp: Path) -> Path:
    """huggingface_hub's cache: models--org--name/{blobs/HASH, snapshots/REV/NAME -> ../../blobs/HASH}."""
    repo = tmp / "hub" / "models--org--llama"
    source = hub_folder(tmp)
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for file in sorted(source.iterdir()):
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes() + file.name.encode()).hexdigest()
        blob.write_bytes(file.read_bytes())
        os.symlink(os.path.join("..", "..", "blobs", blob.name), snapshot / file.name)
    return snapshot


def test_a_sharded_hub_cache_snapshot_reads_its_shards_from_the_blob_store(tmp_path, mapper):
    snapshot = hub_cache_snapshot(tmp_path)
    assert read_keys(snapshot) == (snapshot / "model.safetensors.index.json", ["embed.weight", "head.weight"])
    result = mapper("inspect", snapshot)
    assert result.returncode == 0 and "embed.weight" in result.stdout, result.stderr


def test_a_snapshot_link_that_leaves_its_repository_is_still_refused(tmp_path):
    snapshot = hub_cache_snapshot(tmp_path)
    elsewhere = tmp_path / "elsewhere" / "blobs"  # a blob store, but not this repository's
    elsewhere.mkdir(parents=True)
    write_f32(elsewhere / "x", {"head.weight": [2, 4]})
    (snapshot / "model-00002-of-00002.safetensors").unlink()
    os.symlink(elsewhere / "x", snapshot / "model-00002-of-00002.safetensors")
    with pytest.raises(CheckpointError, match=r"shard 'model-00002-of-00002\.safetensors' is a link to .*elsewhere"
                                              r"/blobs/x, outside the index's folder"):
        open_checkpoint(snapshot)
    assert read_keys(snapshot, allow_outside_shards=True)[1] == ["embed.weight", "head.weight"]


def test_a_dcp_folder_is_still_its_own_format(tmp_path):
    folder = tmp_path / "dcp"
    folder.mkdir()
    (folder / ".metadata").write_bytes(b"not a pickle")
    write_f32(folder / "model.safetensors", {"w": [2]})  # never chosen: .metadata makes it a DCP folder
    with pytest.raises(CheckpointError, match=r"\.metadata"):
        open_checkpoint(folder)


@pytest.mark.needs_torch
def test_a_torch_folder_and_the_torch_half_of_a_mixed_one(tmp_path):
    torch = pytest.importorskip("torch")
    folder = tmp_path / "bin"
    folder.mkdir()
    torch.save({"w": torch.ones(2)}, folder / "pytorch_model-00001-of-00001.bin")
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"w": "pytorch_model-00001-of-00001.bin"}}))
    assert read_keys(folder) == (folder / "pytorch_model.bin.index.json", ["w"])

    # safetensors first, as transformers reads it, even against the other format's index; the torch
    # index is named for its shards
    write_f32(folder / "model.safetensors", {"v": [2]})
    with pytest.warns(CheckpointWarning, match=r"read model\.safetensors, its safetensors checkpoint; the folder also "
                                                r"holds pytorch_model\.bin\.index\.json \(torch: "):
        assert read_keys(folder) == (folder / "model.safetensors", ["v"])
    assert read_keys(folder, format="torch") == (folder / "pytorch_model.bin.index.json", ["w"])
    (folder / "pytorch_model.bin.index.json").unlink()
    with pytest.warns(CheckpointWarning, match="read pytorch_model-00001-of-00001.bin, its torch checkpoint"):
        assert read_keys(folder, format="torch") == (folder / "pytorch_model-00001-of-00001.bin", ["w"])


def write_rules(tmp: Path) -> Path:
    path = tmp / "rules.json"
    path.write_text(json.dumps({"version": 1, "rules": [{"match": "w", "target": "v"}]}))
    return path
