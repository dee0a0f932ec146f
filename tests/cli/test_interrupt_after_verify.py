"""Ctrl-C after the last rename of a --verify run: the output in place was verified before the rename
(the check is not part of the report that did not run), and the message says so. Torch-free."""
from __future__ import annotations

import os

import pytest
from tiny_safetensors import write_f32

from mapper_core.io.atomic import AtomicFiles
from mapper_core.io.verify import StreamVerifier

SHARDED = ("out.safetensors.index.json", "--max-shard-size", "20KB")
VERIFIED = "It was verified bit for bit against the source before it was put in place"


@pytest.fixture
def events(tmp_path, monkeypatch) -> list[str]:
    """What happened, in order: the stream verifier finishing, AtomicFiles committing (in this process,
    then Ctrl-C as if it arrived right after the last rename)."""
    write_f32(tmp_path / "src.safetensors", {f"t{i}": [48, 48] for i in range(4)})
    seen: list[str] = []
    finish, commit, parent = StreamVerifier.finish, AtomicFiles.commit, os.getpid()

    def finished(self, *args, **kwargs):
        checked = finish(self, *args, **kwargs)
        seen.append(f"verified {checked}")
        return checked

    def committed(self):
        commit(self)
        if os.getpid() == parent:  # forked workers commit their shards undisturbed
            seen.append("committed")
            raise KeyboardInterrupt

    monkeypatch.setattr(StreamVerifier, "finish", finished)
    monkeypatch.setattr(AtomicFiles, "commit", committed)
    return seen


@pytest.mark.parametrize("dest", [("out.safetensors",), SHARDED])
def test_the_output_in_place_was_verified_and_the_message_says_so(tmp_path, mapper, events, monkeypatch, dest):
    proc = mapper("convert", "src.safetensors", *dest, "--verify", cwd=tmp_path)
    assert proc.returncode == 130
    assert events == ["verified 4", "committed"]  # every tensor compared before the one commit
    assert "the output was already complete" in proc.stderr and VERIFIED in proc.stderr
    monkeypatch.undo()
    check = mapper("convert", "src.safetensors", "again" + dest[0][3:], *dest[1:], cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    names = [p.name for p in tmp_path.iterdir() if p.name.startswith("out")]
    for name in names:  # the interrupted output is byte for byte what an uninterrupted run writes
        if name.endswith(".safetensors"):
            assert (tmp_path / name).read_bytes() == (tmp_path / ("again" + name[3:])).read_bytes()


def test_without_verify_the_message_claims_no_check(tmp_path, mapper, events):
    proc = mapper("convert", "src.safetensors", "out.safetensors", cwd=tmp_path)
    assert proc.returncode == 130 and "already complete" in proc.stderr
    assert "verified" not in proc.stderr and events == ["committed"]


def test_workers_say_which_shards_were_checked(tmp_path, mapper, events):
    proc = mapper("convert", "src.safetensors", *SHARDED, "--verify", "--workers", "2", cwd=tmp_path)
    assert proc.returncode == 130 and "already complete" in proc.stderr
    assert "Each shard this run wrote was verified bit for bit before its rename" in proc.stderr
