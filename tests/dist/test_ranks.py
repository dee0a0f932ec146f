"""TorchRanks in one process (a gloo group of one, from a file store): the source digests travel through
the asynchronous all_reduce, and an error while writing still takes part in every exchange."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import save_file

from mapper_core.dist.ranks import TorchRanks
from mapper_core.errors import BadInputError
from mapper_core.io.formats.writer import Entry
from mapper_core.io.parallel import ShardJob
from mapper_core.io.provenance import metadata
from mapper_core.io.shard_manifest import Manifest
from mapper_core.io.formats import open_checkpoint


def _job(tmp_path, out):
    src = tmp_path / "src.safetensors"
    save_file({"a": torch.arange(6.0), "b": torch.ones(3, 2)}, src)
    reader = open_checkpoint(src)
    entries = [Entry(k, s, reader.locate(k)) for k, s in reader.specs().items()]
    meta = metadata(reader, src, None, None, {}, [src])
    return src, ShardJob([out / "s-1.safetensors", out / "s-2.safetensors"], [entries[:1], entries[1:]], meta, [src],
                         Manifest(out / "m.safetensors.index.json"), force=False)


def test_digests_reach_the_final_metadata(group, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    src, job = _job(tmp_path, out)
    ranks = TorchRanks()
    ranks.prepare(job.hashed)
    checked, final = ranks.run([[0, 1]], job, None)
    assert final["mapper.source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    header = (out / "s-1.safetensors").read_bytes()
    assert json.loads(header[8:8 + int.from_bytes(header[:8], "little")])["__metadata__"] == final


def test_an_error_while_writing_is_raised_without_a_hang(group, tmp_path):
    _, job = _job(tmp_path, tmp_path / "missing")  # the shards' folder does not exist
    ranks = TorchRanks()
    ranks.prepare(job.hashed)
    with pytest.raises(BadInputError, match="rank 0: .*s-1.safetensors: writing failed: No such file.*rerun the same command"):
        ranks.run([[0, 1]], job, None)
