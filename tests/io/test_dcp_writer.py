"""convert → a DCP folder: loads bit-exact with torch.distributed.checkpoint.load; atomic; refusals."""
from __future__ import annotations

import os
import signal
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


@pytest.mark.parametrize("appears", [dcp_writer.DATA_NAME, ".metadata"])
def test_a_file_another_run_puts_there_meanwhile_is_never_replaced(source, tmp_path, monkeypatch, appears):
    path, _ = source
    out = tmp_path / "raced"
    real = dcp_writer._metadata

    def meanwhile(*a):  # the other run finishes while this one is writing
        (out / appears).write_bytes(b"theirs")
        return real(*a)
    monkeypatch.setattr(dcp_writer, "_metadata", meanwhile)
    with pytest.raises(OutputExistsError, match=f"{appears}: appeared while the output was being written") as caught:
        convert(path, out, output_format="dcp")
    assert caught.value.exit_code == 2
    assert sorted(p.name for p in out.iterdir()) == [appears]  # theirs, untouched; nothing of ours
    assert (out / appears).read_bytes() == b"theirs"


def test_temporaries_of_a_killed_run_are_named_then_cleaned(source, tmp_path):
    path, _ = source
    out = tmp_path / "killed"
    child = os.fork()
    if child == 0:  # the killed run: SIGKILLed while writing its data file
        def save_then_die(tensor, fh):
            torch.save(tensor, fh)
            fh.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        dcp_writer._save = save_then_die
        convert(path, out, output_format="dcp")
        os._exit(0)
    _, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status)
    temps = [p for p in out.iterdir() if p.name.endswith(".mapper-tmp")]
    assert len(temps) == 1 and f".{child}@" in temps[0].name
    named = convert(path, out, output_format="dcp")
    assert [str(p) for p in temps] == list(named.stale_temps) and not named.stale_removed and temps[0].exists()
    cleaned = convert(path, out, output_format="dcp", force=True, clean_stale=True)
    assert cleaned.stale_removed and not temps[0].exists()
    assert sorted(p.name for p in out.iterdir()) == [".metadata", dcp_writer.DATA_NAME]


def test_a_data_file_without_metadata_needs_force(source, tmp_path):
    path, _ = source
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / dcp_writer.DATA_NAME).write_bytes(b"x")
    with pytest.raises(OutputExistsError, match="without .metadata.*pass --force"):
        convert(path, tmp_path / "half", output_format="dcp")
