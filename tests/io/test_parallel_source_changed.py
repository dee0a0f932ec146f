"""A sharded run stopped part-way, the source changed, the run resumed: the output is never a mix of two
sources. With the source hash the finished shards' headers tell; without it (--no-source-hash), the
manifest's record of the source files (size, inode, modification time) does."""
from __future__ import annotations

import errno
import os

import pytest

torch = pytest.importorskip("torch")
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from mapper_core.errors import BadInputError  # noqa: E402
from mapper_core.io import parallel  # noqa: E402
from mapper_core.io.convert import convert  # noqa: E402

KEYS = [f"layer.{i}.weight" for i in range(12)]


def _save(path, offset: float) -> None:
    torch.manual_seed(0)
    save_file({k: torch.randn(32, 16) + offset for k in KEYS}, path)


class _DiskFull(parallel.FileWriter):
    """The shard holding 'layer.7.weight' fails as on a full disk (its worker exits 2); the others finish."""

    def write(self, progress=None):
        if any(e.key == "layer.7.weight" for e in self.entries):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        super().write(progress)


def _stopped_run(src, index, monkeypatch, **kw):
    monkeypatch.setattr(parallel, "FileWriter", _DiskFull)
    with pytest.raises(BadInputError, match="No space left on device"):
        convert(src, index, max_shard_size="4KB", workers=2, **kw)
    monkeypatch.undo()
    finished = parallel.Manifest(index).records()
    assert finished and not index.exists()
    return finished


def _values(index) -> dict[str, torch.Tensor]:
    out = {}
    for shard in sorted(index.parent.glob("*-of-*.safetensors")):
        with safe_open(shard, "pt") as fh:
            out.update({k: fh.get_tensor(k) for k in fh.keys()})
    return out


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "src.safetensors"
    _save(path, 0.0)
    return path


def _retrained(src) -> None:
    """The same keys, shapes and dtypes, other values (training went on), written over the source."""
    _save(src, 1.0)


def test_without_the_hash_a_changed_source_is_refused_before_anything_is_written(src, tmp_path, monkeypatch):
    index = tmp_path / "out" / "model.safetensors.index.json"
    index.parent.mkdir()
    finished = _stopped_run(src, index, monkeypatch, hash_source=False)
    before = {p.name: p.read_bytes() for p in index.parent.iterdir()}
    _retrained(src)
    with pytest.raises(BadInputError) as caught:
        convert(src, index, max_shard_size="4KB", workers=2, hash_source=False)
    message = str(caught.value)
    assert "src.safetensors" in message and "changed since" in message and "mapper-manifest" in message
    assert any(name in message for name in finished)
    assert caught.value.exit_code == 2
    assert not index.exists()
    assert {p.name: p.read_bytes() for p in index.parent.iterdir()} == before  # nothing written or removed

    # what the message says to do: delete the manifest, then the whole output comes from the new source
    parallel.Manifest(index).remove()
    convert(src, index, max_shard_size="4KB", workers=2, hash_source=False, force=True)
    with safe_open(src, "pt") as fh:
        new = {k: fh.get_tensor(k) for k in fh.keys()}
    got = _values(index)
    assert got.keys() == new.keys() and all(torch.equal(got[k], new[k]) for k in new)


def test_without_the_hash_an_unchanged_source_still_resumes(src, tmp_path, monkeypatch):
    index = tmp_path / "out" / "model.safetensors.index.json"
    index.parent.mkdir()
    finished = _stopped_run(src, index, monkeypatch, hash_source=False)
    stamps = {n: (index.parent / n).stat().st_mtime_ns for n in finished}
    convert(src, index, max_shard_size="4KB", workers=2, hash_source=False)
    assert all((index.parent / n).stat().st_mtime_ns == t for n, t in stamps.items())  # skipped, not rewritten
    with safe_open(src, "pt") as fh:
        assert all(torch.equal(_values(index)[k], fh.get_tensor(k)) for k in fh.keys())


def test_a_changed_dcp_data_file_is_named(tmp_path, monkeypatch):
    dcp = pytest.importorskip("torch.distributed.checkpoint")
    import warnings

    folder = tmp_path / "ckpt"
    torch.manual_seed(0)
    state = {k: torch.randn(32, 16) for k in KEYS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save(state, checkpoint_id=str(folder), no_dist=True)
    index = tmp_path / "out" / "model.safetensors.index.json"
    index.parent.mkdir()
    _stopped_run(folder, index, monkeypatch, hash_source=False)
    data = next(folder.glob("*.distcp"))
    copy = folder / "copy"
    copy.write_bytes(data.read_bytes())
    os.replace(copy, data)  # the same bytes in another file: nothing cheap can tell, so it is not trusted
    with pytest.raises(BadInputError, match=f"{data.name}: replaced by another file since that run read it"):
        convert(folder, index, max_shard_size="4KB", workers=2, hash_source=False)


def test_one_process_after_a_stopped_run_writes_every_shard_from_the_source_it_reads(src, tmp_path, monkeypatch):
    """One process never resumes: it refuses the finished shards as existing files, and with --force
    writes them all again, so a changed source cannot mix into its output either."""
    index = tmp_path / "out" / "model.safetensors.index.json"
    index.parent.mkdir()
    _stopped_run(src, index, monkeypatch, hash_source=False)
    _retrained(src)
    with pytest.raises(BadInputError, match="already exists; pass --force"):
        convert(src, index, max_shard_size="4KB", hash_source=False)
    convert(src, index, max_shard_size="4KB", hash_source=False, force=True)
    with safe_open(src, "pt") as fh:
        assert all(torch.equal(_values(index)[k], fh.get_tensor(k)) for k in fh.keys())
