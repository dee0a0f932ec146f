"""torch.distributed ranks (a gloo group of one, in this process) resume like --workers: a source changed
since the stopped run is refused without the source hash, named with the file that changed."""
from __future__ import annotations

import errno
import os

import pytest
import torch
from safetensors.torch import save_file

from mapper_core.dist.ranks import TorchRanks
from mapper_core.errors import BadInputError
from mapper_core.io import parallel
from mapper_core.io.convert import convert


class _DiskFull(parallel.FileWriter):
    def write(self, progress=None):
        if any(e.key == "w5" for e in self.entries):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        super().write(progress)


def _save(path, offset):
    torch.manual_seed(0)
    save_file({f"w{i}": torch.randn(32, 16) + offset for i in range(8)}, path)


def test_a_changed_source_is_refused_on_resume_without_the_hash(group, tmp_path, monkeypatch):
    src, index = tmp_path / "src.safetensors", tmp_path / "out" / "m.safetensors.index.json"
    index.parent.mkdir()
    _save(src, 0.0)
    monkeypatch.setattr(parallel, "FileWriter", _DiskFull)
    with pytest.raises(BadInputError, match=r"rank 0: \S+m-\d+-of-\d+\.safetensors: writing failed: No space left on device; the shards finished"):
        convert(src, index, max_shard_size="4KB", hash_source=False, executor=TorchRanks())
    monkeypatch.undo()
    assert parallel.Manifest(index).records()
    _save(src, 1.0)
    with pytest.raises(BadInputError, match=r"src.safetensors: (replaced by another file|modified) since that run read it.*--no-source-hash"):
        convert(src, index, max_shard_size="4KB", hash_source=False, executor=TorchRanks())
    assert not index.exists()
