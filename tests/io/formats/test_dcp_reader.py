"""The DCP reader: specs from .metadata alone, tensors by byte range, sharded chunks reassembled,
a hostile .metadata refused; checked against torch's own dcp_to_torch_save byte for byte."""
from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from bitwise import same_bits
from cli_runner import python_process
from dcp_fixtures import dcp_state, save_dcp, save_sharded_dcp
from mapper_core.errors import CheckpointError, CheckpointWarning, UnsafeCheckpointError
from mapper_core.io.convert import convert
from mapper_core.io.formats import open_checkpoint
from mapper_core.io.formats.dcp import DcpReader
from mapper_core.io.formats.dcp_metadata import read_layout


def _model_state() -> dict:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 12), nn.BatchNorm1d(12), nn.Linear(12, 4).to(torch.bfloat16))
    return net.state_dict()


@pytest.fixture
def plain(tmp_path):
    state = {**_model_state(), "extra": {"step": 5, "name": "run-1"}}
    return save_dcp(state, tmp_path / "plain")


@pytest.fixture
def sharded(tmp_path):
    torch.manual_seed(1)
    state = {"proj.weight": torch.randn(6, 10), "proj.bias": torch.randn(6), "emb": torch.randn(7, 5).half()}
    return save_sharded_dcp(state, tmp_path / "sharded", {"proj.weight": 1, "emb": 0})


def test_specs_from_metadata_alone(plain):
    for data in plain.glob("*.distcp"):
        data.unlink()  # no tensor data left: inspect and plan must not need any (and say it is missing)
    with pytest.warns(CheckpointWarning, match=r"__0_0\.distcp \(missing\)"), open_checkpoint(plain) as reader:
        specs = reader.specs()
        assert reader.non_tensors() == {"extra.step": "bytes", "extra.name": "bytes"}
    assert specs["0.weight"].dtype == "F32" and specs["0.weight"].shape == (12, 8)
    assert specs["2.weight"].dtype == "BF16" and specs["1.num_batches_tracked"].shape == ()


def test_metadata_is_read_without_torch(plain):
    code = (f"import sys; from pathlib import Path; from mapper_core.io.formats.dcp_metadata import read_layout; "
            f"layout = read_layout(Path({str(plain / '.metadata')!r})); "
            "assert 'torch' not in sys.modules, 'torch was imported'; print(len(layout.tensors))")
    done = python_process(code, check=True)
    assert done.stdout.strip() == "9"


def test_tensors_equal_torchs_own_reading(plain):
    expected = dcp_state(plain)
    with DcpReader(plain) as reader:
        for key in reader.specs():
            assert same_bits(reader.get_tensor(key), expected[key]), key
    assert expected["extra"] == {"step": 5, "name": "run-1"}  # what the reader reports, never unpickles


def test_sharded_chunks_are_reassembled(sharded):
    expected = dcp_state(sharded)
    with DcpReader(sharded) as reader:
        assert [c.offsets for c in reader.chunks("proj.weight")] == [(0, 0), (0, 5)]
        assert {c.file for c in reader.chunks("proj.weight")} == {"__0_0.distcp", "__1_0.distcp"}
        for key in expected:
            assert same_bits(reader.get_tensor(key), expected[key]), key


@pytest.mark.parametrize("fixture", ["plain", "sharded"])
def test_dcp_to_safetensors_equals_dcp_to_torch_save_then_save_file(fixture, request, tmp_path):
    folder = request.getfixturevalue(fixture)
    out = tmp_path / "ours.safetensors"
    convert(folder, out)
    with safe_open(out, "pt") as f:
        meta = f.metadata()
    reference = {k: v for k, v in dcp_state(folder).items() if isinstance(v, torch.Tensor)}
    save_file(reference, tmp_path / "reference.safetensors", metadata=meta)
    ours, theirs = _split(out), _split(tmp_path / "reference.safetensors")
    # the library writes __metadata__'s keys in hash order: the header is compared as JSON, the rest byte for byte
    assert ours[0] == theirs[0] and json.loads(ours[1]) == json.loads(theirs[1]) and ours[2] == theirs[2]
    assert json.loads(meta["mapper.source_shards_sha256"]).keys() == {p.name for p in folder.glob("*.distcp")}


def _split(path) -> tuple[int, bytes, bytes]:
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    return n, data[8:8 + n], data[8 + n:]


def test_safetensors_serialised_variant(tmp_path):
    from torch.distributed.checkpoint.filesystem import SerializationFormat

    state = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(4, dtype=torch.bfloat16)}
    folder = save_dcp(state, tmp_path / "st", serialization_format=SerializationFormat.SAFETENSORS)
    with DcpReader(folder) as reader:
        for key, value in state.items():
            assert same_bits(reader.get_tensor(key), value)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_metadata_is_refused(plain, tmp_path, mapper, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open(plain / ".metadata", "wb") as fh:
        pickle.dump(_Payload(), fh)
    with pytest.raises(UnsafeCheckpointError, match=r"global '(posix|os)\.system'"):
        read_layout(plain / ".metadata")
    done = mapper("inspect", plain)
    assert done.returncode == 2 and "refused" in done.stderr and "system" in done.stderr
    assert not (tmp_path / "pwned").exists()


def test_hostile_storage_path_is_refused(tmp_path):
    folder = save_sharded_dcp({"w": torch.ones(2)}, tmp_path / "escape", {})
    meta = pickle.loads((folder / ".metadata").read_bytes())
    for info in meta.storage_data.values():
        info.relative_path = "../../etc/passwd"
    (folder / ".metadata").write_bytes(pickle.dumps(meta))
    with pytest.raises(CheckpointError, match="plain name in the checkpoint folder"):
        read_layout(folder / ".metadata")


def test_overlapping_chunks_are_refused(sharded):
    meta = pickle.loads((sharded / ".metadata").read_bytes())
    chunks = meta.state_dict_metadata["proj.weight"].chunks
    chunks[1].offsets = torch.Size([0, 0])  # both chunks claim the left half; the right half is a hole
    index = next(i for i in meta.storage_data if i.fqn == "proj.weight" and i.offset == torch.Size([0, 5]))
    meta.storage_data[type(index)("proj.weight", [0, 0], 1)] = meta.storage_data.pop(index)
    (sharded / ".metadata").write_bytes(pickle.dumps(meta))
    with pytest.raises(CheckpointError, match="overlap or leave a hole"):
        read_layout(sharded / ".metadata")


def test_truncated_data_file_is_an_error_naming_it(plain):
    data = next(plain.glob("*.distcp"))
    data.write_bytes(data.read_bytes()[:3000])
    with DcpReader(plain) as reader, pytest.raises(CheckpointError, match=r"__0_0\.distcp.*truncated"):
        for key in reader.specs():
            reader.get_tensor(key)


def test_cli_inspect_and_convert(plain, tmp_path, mapper):
    done = mapper("inspect", plain, "--json")
    assert done.returncode == 0, done.stderr
    assert "0.weight" in done.stdout and "extra.step" in done.stdout
    done = mapper("convert", plain, tmp_path / "out.safetensors", "--verify")
    assert done.returncode == 0, done.stderr
    assert "verified 9 tensors" in done.stdout
