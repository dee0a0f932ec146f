"""convert --workers N: byte-identical to one worker; shards atomic, index last; resumable after a
killed worker (the manifest skips finished, verified shards)."""
from __future__ import annotations

import os
import re
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


def _killed_run(src, out, monkeypatch):
    monkeypatch.setattr(parallel, "FileWriter", _Killed)
    with pytest.raises(BadInputError, match="killed by signal 9.*rerun the same command"):
        _convert(src, out, workers=2)
    monkeypatch.undo()


def test_killed_worker_then_rerun_is_byte_identical(st_source, tmp_path, monkeypatch):
    _convert(st_source, tmp_path / "one")
    out = tmp_path / "two"
    _killed_run(st_source, out, monkeypatch)
    index = out / "model.safetensors.index.json"
    assert not index.exists()  # the index comes last: the output is not a checkpoint yet
    finished = parallel.Manifest(index).records()
    assert finished and len(finished) < len(_tree(tmp_path / "one")) - 1
    stamps = {name: (out / name).stat().st_mtime_ns for name in finished}

    log = tmp_path / "written"  # the workers are other processes: they tell through a file
    real = parallel._write_temp

    def logged(job, i, *a):
        with open(log, "a") as fh:
            fh.write(job.files[i].name + "\n")
        return real(job, i, *a)
    monkeypatch.setattr(parallel, "_write_temp", logged)
    result = convert(st_source, index, max_shard_size="4KB", workers=2)
    written = log.read_text().split()
    assert written and not set(written) & set(finished)  # finished shards were skipped, not rewritten
    assert all((out / name).stat().st_mtime_ns == t for name, t in stamps.items())
    leftovers = {n for n in _tree(out) if n.endswith(".mapper-tmp")}  # the killed worker's temporary, named
    assert leftovers and {os.path.basename(p) for p in result.stale_temps} == leftovers
    assert not result.stale_removed
    assert {n: b for n, b in _tree(out).items() if n not in leftovers} == _tree(tmp_path / "one")


def test_a_damaged_finished_shard_is_rewritten(st_source, tmp_path, monkeypatch):
    out = tmp_path / "two"
    _killed_run(st_source, out, monkeypatch)
    name = next(iter(parallel.Manifest(out / "model.safetensors.index.json").records()))
    data = bytearray((out / name).read_bytes())
    data[-1] ^= 0xFF  # same size, same header: the file's modification time tells
    (out / name).write_bytes(bytes(data))
    convert(st_source, out / "model.safetensors.index.json", max_shard_size="4KB", workers=2)
    _convert(st_source, tmp_path / "one")
    assert (out / name).read_bytes() == (tmp_path / "one" / name).read_bytes()


def test_stale_temporaries_of_killed_workers_are_cleaned(st_source, tmp_path, monkeypatch):
    out = tmp_path / "two"
    _killed_run(st_source, out, monkeypatch)
    temps = sorted(p for p in out.iterdir() if p.name.endswith(".mapper-tmp"))
    assert temps and all(re.search(r"\.safetensors\.\d+@[\w-]+\.", p.name) for p in temps)  # PID@host
    result = convert(st_source, out / "model.safetensors.index.json", max_shard_size="4KB", workers=2,
                     clean_stale=True)
    assert result.stale_removed and sorted(map(str, result.stale_temps)) == sorted(map(str, temps))
    assert not any(p.name.endswith(".mapper-tmp") for p in out.iterdir())


class _Raced(parallel.FileWriter):
    """Another process puts a file at this shard's destination while the shard is being written."""

    def write(self, progress=None):
        super().write(progress)
        if self.fd != -1 and any(x.key == "layer.0.weight" for x in self.entries):
            (self.target / "model-00001-of-00012.safetensors").write_bytes(b"theirs")


def test_a_shard_that_appears_meanwhile_is_never_replaced(st_source, tmp_path, monkeypatch):
    out = tmp_path / "two"
    _Raced.target = out
    monkeypatch.setattr(parallel, "FileWriter", _Raced)
    with pytest.raises(BadInputError, match="model-00001-of-00012.safetensors: appeared while") as caught:
        _convert(st_source, out, workers=2)
    assert caught.value.exit_code == 2
    assert (out / "model-00001-of-00012.safetensors").read_bytes() == b"theirs"
    assert not (out / "model.safetensors.index.json").exists()


def test_an_index_that_appears_meanwhile_is_never_replaced(st_source, tmp_path, monkeypatch):
    out = tmp_path / "two"
    real = parallel.run_workers

    def then_theirs(*a, **k):
        done = real(*a, **k)
        (out / "model.safetensors.index.json").write_text("theirs")
        return done
    monkeypatch.setattr(parallel, "run_workers", then_theirs)
    with pytest.raises(OutputExistsError, match="index.json: appeared while"):
        _convert(st_source, out, workers=2)
    assert (out / "model.safetensors.index.json").read_text() == "theirs"


def test_a_source_changed_since_the_finished_shards_is_refused(st_source, tmp_path, monkeypatch):
    out = tmp_path / "two"
    _killed_run(st_source, out, monkeypatch)
    data = bytearray(st_source.read_bytes())
    data[-1] ^= 0xFF  # same tensors and offsets, other bytes: another SHA-256
    st_source.write_bytes(bytes(data))
    with pytest.raises(BadInputError, match="finished by an earlier run from a different source"):
        convert(st_source, out / "model.safetensors.index.json", max_shard_size="4KB", workers=2)
    assert not (out / "model.safetensors.index.json").exists()


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


def test_workers_without_fork_are_refused_with_the_reason(st_source, tmp_path, monkeypatch):
    monkeypatch.setattr(parallel.multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    with pytest.raises(BadInputError, match="needs processes started by fork.*torchrun"):
        _convert(st_source, tmp_path / "two", workers=2)
    assert not [p for p in (tmp_path / "two").iterdir() if not p.name.endswith(".mapper-manifest")]
