"""convert → a DCP folder: loads bit-exact with torch.distributed.checkpoint.load; atomic; refusals."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.distributed.checkpoint as dcp
from safetensors.torch import save_file

from bitwise import same_bits
from mapper_core.errors import OutputExistsError
from mapper_core.io import dcp_writer
from mapper_core.io.convert import convert
from mapper_core.io.formats.dcp import DcpReader


def _dcp_load(folder, like: dict) -> dict:
    state = {k: torch.zeros_like(v) for k, v in like.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "assuming the intent is to load in a single process"
        dcp.load(state, checkpoint_id=str(folder), no_dist=True)
    return state


@pytest.fixture
def source(tmp_path):
    torch.manual_seed(0)
    big = torch.randn(8, 6)
    tied = torch.randn(5, 3)
    state = {
        "enc.0.weight": big.t(),  # a non-contiguous view: its storage is written compact
        "enc.0.bias": big[0],  # a view into the same storage as the weight
        "enc.1.weight": torch.randn(4).to(torch.bfloat16),
        "enc.1.num_batches_tracked": torch.tensor(3),
        "emb.weight": tied, "head.weight": tied,  # tied: stored once
        "mask": torch.tensor([True, False, True]),
    }
    path = tmp_path / "src.pt"
    torch.save(state, path)
    return path, state


def test_dcp_output_loads_bit_exact_with_dcp_load(source, tmp_path, mapper):
    path, state = source
    out = tmp_path / "out-dcp"
    done = mapper("convert", path, out, "--output-format", "dcp", "--verify")
    assert done.returncode == 0, done.stderr
    assert "DCP folder: __0_0.distcp, .metadata" in done.stdout and "verified 6 tensors" in done.stdout
    loaded = _dcp_load(out, state)
    for key, value in state.items():
        assert same_bits(loaded[key], value), key


def test_rules_rename_into_dcp(source, tmp_path, mapper):
    path, state = source
    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\nname: r\nunmatched: drop\nrules:\n  - match: 'enc\\.(\\d+)\\.(.+)'\n"
                     "    target: 'encoder.layers.{1}.{2}'\n")
    out = tmp_path / "renamed"
    done = mapper("convert", path, out, "--rules", rules, "--output-format", "dcp")
    assert done.returncode == 0, done.stderr
    expected = {"encoder.layers." + k[len("enc."):]: v for k, v in state.items() if k.startswith("enc.")}
    with DcpReader(out) as reader:
        assert set(reader.specs()) == set(expected)
    loaded = _dcp_load(out, expected)
    for key, value in expected.items():
        assert same_bits(loaded[key], value), key


def test_safetensors_to_dcp_and_back(tmp_path):
    torch.manual_seed(2)
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(10, dtype=torch.int32), "c": torch.zeros(0, 2)}
    save_file(tensors, tmp_path / "in.safetensors")
    convert(tmp_path / "in.safetensors", tmp_path / "d", output_format="dcp")
    convert(tmp_path / "d", tmp_path / "back.safetensors")
    from safetensors.torch import load_file

    back = load_file(tmp_path / "back.safetensors")
    assert set(back) == set(tensors) and all(same_bits(back[k], v) for k, v in tensors.items())


def test_existing_dcp_folder_needs_force(source, tmp_path):
    path, _ = source
    out = tmp_path / "twice"
    convert(path, out, output_format="dcp")
    with pytest.raises(OutputExistsError, match="already holds a DCP checkpoint; pass --force"):
        convert(path, out, output_format="dcp")
    convert(path, out, output_format="dcp", force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExistsError, match="is a file"):
        convert(path, tmp_path / "file", output_format="dcp")


def test_a_failure_leaves_nothing(source, tmp_path, monkeypatch):
    path, _ = source
    calls = []

    def failing_save(tensor, fh):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        torch.save(tensor, fh)

    monkeypatch.setattr(dcp_writer, "_save", failing_save)
    with pytest.raises(Exception, match="No space left on device"):
        convert(path, tmp_path / "failed", output_format="dcp")
    assert not (tmp_path / "failed").exists()


def test_max_shard_size_does_not_apply(source, tmp_path, mapper):
    path, _ = source
    done = mapper("convert", path, tmp_path / "x", "--output-format", "dcp", "--max-shard-size", "1MB")
    assert done.returncode == 2 and "--max-shard-size only applies to safetensors" in done.stderr
