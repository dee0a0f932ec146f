"""convert --force --workers N over an earlier sharded output with the same shard names: all or
nothing, as with one process. A new shard that would replace a file of the earlier output waits,
finished, as a temporary, and goes in with the index; a run that fails or is stopped leaves the
earlier output as it was (index and shards), with no temporary of its own behind."""
from __future__ import annotations

import os
import signal

import pytest
import torch
from safetensors.torch import load_file, save_file

from mapper_core.errors import BadInputError
from mapper_core.io import parallel
from mapper_core.io.convert import convert


def _tree(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _source(path, seed):
    torch.manual_seed(seed)
    save_file({f"layer.{i}.weight": torch.randn(32, 16 + i) for i in range(12)}, path)
    return path


@pytest.fixture
def earlier(tmp_path):
    """An earlier output of one source, and a second source whose output has the same shard names."""
    old, new = _source(tmp_path / "old.safetensors", 0), _source(tmp_path / "new.safetensors", 1)
    out = tmp_path / "out"
    out.mkdir()
    convert(old, out / "model.safetensors.index.json", max_shard_size="4KB")
    return old, new, out


class _Failing(parallel.FileWriter):
    """Fails (as a full disk does) in the shard holding 'layer.9.weight', after others are finished."""

    def _write_entry(self, i, progress):
        if self.fd != -1 and self.entries[i].key == "layer.9.weight":
            raise OSError(28, "No space left on device")
        super()._write_entry(i, progress)


class _Killed(parallel.FileWriter):
    def _write_entry(self, i, progress):
        if self.fd != -1 and self.entries[i].key == "layer.9.weight":
            os.kill(os.getpid(), signal.SIGKILL)
        super()._write_entry(i, progress)


@pytest.mark.parametrize("writer, message", [
    (_Failing, r"worker \d: .*model-\d+-of-\d+\.safetensors: writing failed: No space left on device; the shards "
               r"finished so far are kept"),
    (_Killed, "killed by signal 9"),
])
def test_a_failed_forced_run_leaves_the_earlier_output_as_it_was(earlier, monkeypatch, writer, message):
    old, new, out = earlier
    before = _tree(out)
    monkeypatch.setattr(parallel, "FileWriter", writer)
    with pytest.raises(BadInputError, match=message):
        convert(new, out / "model.safetensors.index.json", max_shard_size="4KB", workers=2, force=True)
    monkeypatch.undo()
    after = {n: b for n, b in _tree(out).items() if not n.endswith((".mapper-tmp", ".mapper-manifest"))}
    assert after == before  # every shard and the index: the earlier output still loads as it was
    if writer is _Failing:  # a worker that failed cleans up; so does the parent for the others' parked shards
        assert not [n for n in _tree(out) if n.endswith(".mapper-tmp")]
    # a rerun finishes the new output, and it is the one a single process writes
    convert(new, out / "model.safetensors.index.json", max_shard_size="4KB", workers=2, force=True, clean_stale=True)
    one = out.parent / "one"
    one.mkdir()
    convert(new, one / "model.safetensors.index.json", max_shard_size="4KB")
    assert _tree(out) == _tree(one)


def test_a_forced_run_replaces_the_earlier_output_whole(earlier):
    old, new, out = earlier
    result = convert(new, out / "model.safetensors.index.json", max_shard_size="4KB", workers=2, force=True,
                     verify=True)
    assert result.checked == 12
    got = {}
    for p in sorted(out.glob("model-*.safetensors")):
        got.update(load_file(p))
    assert got.keys() == load_file(new).keys()
    assert all(torch.equal(got[k], v) for k, v in load_file(new).items())
    assert not [n for n in _tree(out) if n.endswith((".mapper-tmp", ".mapper-manifest"))]


def test_parked_shards_are_renamed_with_the_index_not_before(earlier, monkeypatch):
    """While the workers run, no file of the earlier output is replaced: each shard over one is parked."""
    old, new, out = earlier
    before = _tree(out)
    seen = []
    real = parallel.write_parallel.__globals__["AtomicFiles"]

    class Watching(real):  # the index's commit: the earlier shards must still be there just before it
        def commit(self):
            seen.append({n: (out / n).read_bytes() for n in before if n != "model.safetensors.index.json"})
            super().commit()
    monkeypatch.setattr(parallel, "AtomicFiles", Watching)
    convert(new, out / "model.safetensors.index.json", max_shard_size="4KB", workers=2, force=True)
    last = seen[-1]  # the index's commit (the workers' own commits happen in forked children)
    assert last == {n: b for n, b in before.items() if n != "model.safetensors.index.json"}


def _failed_workers_run(tmp_path, monkeypatch):
    """What a --workers run that failed leaves: the shards it finished, and its manifest (no index)."""
    new = _source(tmp_path / "new.safetensors", 1)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(parallel, "FileWriter", _Failing)
    with pytest.raises(BadInputError, match="No space left on device"):
        convert(new, out / "model.safetensors.index.json", max_shard_size="4KB", workers=2)
    monkeypatch.undo()
    manifest = out / "model.safetensors.index.json.mapper-manifest"
    assert manifest.is_file() and list(out.glob("model-*.safetensors"))
    return new, out, manifest


def test_one_process_replacing_the_output_removes_a_failed_workers_runs_manifest(tmp_path, monkeypatch):
    new, out, manifest = _failed_workers_run(tmp_path, monkeypatch)
    convert(new, out / "model.safetensors.index.json", max_shard_size="4KB", force=True)
    assert not manifest.exists()  # it recorded shards of an output that is no longer there
    one = out.parent / "one"
    one.mkdir()
    convert(new, one / "model.safetensors.index.json", max_shard_size="4KB")
    assert {n: b for n, b in _tree(out).items() if not n.endswith(".mapper-tmp")} == _tree(one)


def test_the_manifest_goes_only_once_the_new_output_is_committed(tmp_path, monkeypatch):
    from mapper_core.io import shard_resume

    new, out, manifest = _failed_workers_run(tmp_path, monkeypatch)
    recorded = manifest.read_bytes()
    before = _tree(out)
    seen = []

    def failing(self):  # the commit fails (a rename refused): everything is put back, the manifest stays
        seen.append(manifest.read_bytes())
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(shard_resume.AtomicFiles, "commit", failing)
    with pytest.raises(BadInputError, match="writing failed: Input/output error; nothing was written"):
        convert(new, out / "model.safetensors.index.json", max_shard_size="4KB", force=True)
    monkeypatch.undo()
    assert seen == [recorded]  # there at the commit, and kept when it failed, with the shards it names
    assert _tree(out) == before
