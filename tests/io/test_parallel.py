"""convert --workers N: byte-identical to one worker; shards atomic, index last; resumable after a
killed worker (the manifest skips finished, verified shards)."""
from __future__ import annotations

import os
import signal

import pytest
import torch
from safetensors.torch import save_file

from dcp_fixtures import save_sharded_dcp
from mapper_core.errors import BadInputError, OutputExistsError
from mapper_core.io import parallel
from mapper_core.io.convert import convert
from mapper_core.io.cost import assign_shards


def _tree(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def st_source(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "src.safetensors"
    save_file({f"layer.{i}.weight": torch.randn(32, 16 + i) for i in range(12)}, path)
    return path


@pytest.fixture
def pt_source(tmp_path):
    torch.manual_seed(1)
    big = torch.randn(40, 30)
    state = {"a": big.t(), "b": big[1], "c": torch.randn(50, 20).to(torch.bfloat16), "d": torch.arange(300)}
    path = tmp_path / "src.pt"
    torch.save(state, path)
    return path


def _convert(src, folder, **kw):
    folder.mkdir()
    return convert(src, folder / "model.safetensors.index.json", max_shard_size="4KB", **kw)


@pytest.mark.parametrize("fixture", ["st_source", "pt_source"])
def test_workers_output_is_byte_identical(fixture, request, tmp_path):
    src = request.getfixturevalue(fixture)
    one = _convert(src, tmp_path / "one")
    two = _convert(src, tmp_path / "two", workers=2, verify=True)
    assert len(one.paths) > 3 and two.checked == one.tensors
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")  # no manifest left, same bytes


def test_dcp_source_with_workers(tmp_path):
    torch.manual_seed(3)
    state = {f"w{i}": torch.randn(16, 24) for i in range(6)}
    folder = save_sharded_dcp(state, tmp_path / "dcp", {f"w{i}": 1 for i in range(0, 6, 2)})
    _convert(folder, tmp_path / "one")
    _convert(folder, tmp_path / "two", workers=3)
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")


def test_assignment_balances_bytes():
    sizes = [90, 10, 50, 50, 40, 60]
    shares = assign_shards(sizes, 2)
    assert sorted(i for s in shares for i in s) == list(range(6))
    loads = [sum(sizes[i] for i in s) for s in shares]
    assert max(loads) - min(loads) <= 10 and shares == assign_shards(sizes, 2)


class _Killed(parallel.FileWriter):
    """Writes the header and the first tensor of the shard holding 'layer.7.weight', then SIGKILLs its process."""

    def _write_entry(self, e, progress):
        super()._write_entry(e, progress)
        if self.fd != -1 and any(x.key == "layer.7.weight" for x in self.entries):
            os.kill(os.getpid(), signal.SIGKILL)


def test_killed_worker_then_rerun_is_byte_identical(st_source, tmp_path, monkeypatch):
    _convert(st_source, tmp_path / "one")
    out = tmp_path / "two"
    monkeypatch.setattr(parallel, "FileWriter", _Killed)
    with pytest.raises(BadInputError, match="killed by signal 9.*rerun the same command"):
        _convert(st_source, out, workers=2)
    monkeypatch.undo()
    index = out / "model.safetensors.index.json"
    assert not index.exists()  # the index comes last: the output is not a checkpoint yet
    finished = parallel.Manifest(index).records()
    assert finished and len(finished) < len(_tree(tmp_path / "one")) - 1
    stamps = {name: (out / name).stat().st_mtime_ns for name in finished}

    written = []
    real = parallel.write_shard
    monkeypatch.setattr(parallel, "write_shard", lambda path, *a, **k: (written.append(path.name), real(path, *a, **k))[1])
    convert(st_source, index, max_shard_size="4KB", workers=2)
    assert not set(written) & set(finished)  # finished shards were skipped, not rewritten
    assert all((out / name).stat().st_mtime_ns == t for name, t in stamps.items())
    leftovers = {n for n in _tree(out) if n.endswith(".mapper-tmp")}  # the killed worker's temporary
    assert {n: b for n, b in _tree(out).items() if n not in leftovers} == _tree(tmp_path / "one")


def test_a_damaged_finished_shard_is_rewritten(st_source, tmp_path, monkeypatch):
    out = tmp_path / "two"
    monkeypatch.setattr(parallel, "FileWriter", _Killed)
    with pytest.raises(BadInputError):
        _convert(st_source, out, workers=2)
    monkeypatch.undo()
    name = next(iter(parallel.Manifest(out / "model.safetensors.index.json").records()))
    data = bytearray((out / name).read_bytes())
    data[-1] ^= 0xFF  # same size, same header: only the SHA-256 can tell
    (out / name).write_bytes(bytes(data))
    convert(st_source, out / "model.safetensors.index.json", max_shard_size="4KB", workers=2)
    _convert(st_source, tmp_path / "one")
    assert (out / name).read_bytes() == (tmp_path / "one" / name).read_bytes()


def test_finished_output_needs_force(st_source, tmp_path):
    _convert(st_source, tmp_path / "two", workers=2)
    with pytest.raises(OutputExistsError, match="pass --force"):
        convert(st_source, tmp_path / "two" / "model.safetensors.index.json", max_shard_size="4KB", workers=2)


def test_cli_workers(st_source, tmp_path, mapper):
    (tmp_path / "out").mkdir()
    done = mapper("convert", st_source, tmp_path / "out" / "m.safetensors.index.json", "--max-shard-size", "4KB",
                  "--workers", "2", "--verify")
    assert done.returncode == 0, done.stderr
    assert "verified 12 tensors" in done.stdout
    done = mapper("convert", st_source, tmp_path / "x.safetensors", "--workers", "0")
    assert done.returncode == 2 and "at least 1" in done.stderr
