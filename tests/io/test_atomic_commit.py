"""A commit over existing files is all or nothing: a rename that fails (or Ctrl-C) part-way puts every
replaced file back, so "nothing was written" stays true with --force over a sharded output."""
from __future__ import annotations

import errno
import os

import pytest

from mapper_core.io import atomic
from mapper_core.io.atomic import TEMP_SUFFIX, AtomicFiles, CommitError
from safetensors_corpus import blob, entry

NAMES = ("a.bin", "b.bin", "c.bin")


def existing(folder) -> dict[str, bytes]:
    """Files of an earlier output, and what they hold."""
    old = {name: f"old {name}".encode() for name in NAMES}
    for name, data in old.items():
        (folder / name).write_bytes(data)
    return old


def contents(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def failing_on(monkeypatch, call: int, exc: BaseException, *, after: bool = False) -> list:
    """os.replace fails on its ``call``-th use (and, with ``after``, on every later one)."""
    real, calls = os.replace, []

    def replace(a, b):
        calls.append(b)
        if len(calls) == call or (after and len(calls) > call):
            raise exc
        real(a, b)

    monkeypatch.setattr(atomic.os, "replace", replace)
    return calls


def commit_new(folder, extra: str = "d.bin") -> None:
    with AtomicFiles(replace=True) as out:
        for name in (*NAMES, extra):
            os.write(out.create(folder / name), f"new {name}".encode())
        out.commit()


@pytest.mark.parametrize("exc", [OSError(errno.EIO, "Input/output error"), KeyboardInterrupt()])
@pytest.mark.parametrize("call", [1, 2, 3, 4])
def test_a_failure_mid_commit_puts_every_replaced_file_back(tmp_path, monkeypatch, exc, call):
    old = existing(tmp_path)
    failing_on(monkeypatch, call, exc)
    with pytest.raises(type(exc)):
        commit_new(tmp_path)
    assert contents(tmp_path) == old  # the earlier files, the new d.bin gone, no temporary or kept file left


def test_without_hard_links_the_replaced_files_are_moved_aside_and_back(tmp_path, monkeypatch):
    old = existing(tmp_path)

    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(atomic.os, "link", no_links)
    monkeypatch.setattr("mapper_core.io.rollback.os.link", no_links)
    failing_on(monkeypatch, 3, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OSError):
        commit_new(tmp_path)
    assert contents(tmp_path) == old


def test_a_commit_that_succeeds_keeps_nothing_aside(tmp_path):
    existing(tmp_path)
    inode = (tmp_path / "a.bin").stat().st_ino
    commit_new(tmp_path)
    assert contents(tmp_path) == {name: f"new {name}".encode() for name in (*NAMES, "d.bin")}
    assert (tmp_path / "a.bin").stat().st_ino != inode and (tmp_path / "a.bin").stat().st_nlink == 1


def test_a_symlink_that_is_replaced_comes_back_as_the_symlink(tmp_path, monkeypatch):
    (tmp_path / "real.bin").write_bytes(b"behind the link")
    (tmp_path / "a.bin").symlink_to("real.bin")
    failing_on(monkeypatch, 2, OSError(errno.EIO, "Input/output error"))
    with pytest.raises(OSError):
        with AtomicFiles(replace=True) as out:
            os.write(out.create(tmp_path / "a.bin"), b"new")
            os.write(out.create(tmp_path / "b.bin"), b"new")
            out.commit()
    assert os.readlink(tmp_path / "a.bin") == "real.bin" and (tmp_path / "real.bin").read_bytes() == b"behind the link"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "real.bin"]


def test_when_putting_back_fails_too_the_error_says_where_each_file_is(tmp_path, monkeypatch):
    existing(tmp_path)
    failing_on(monkeypatch, 2, OSError(errno.EIO, "Input/output error"), after=True)
    with pytest.raises(CommitError) as info:
        commit_new(tmp_path)
    message = str(info.value)
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(".a.bin.") and p.name.endswith(TEMP_SUFFIX)]
    assert len(kept) == 1 and kept[0].read_bytes() == b"old a.bin"  # the earlier a.bin, kept aside
    assert (tmp_path / "a.bin").read_bytes() == b"new a.bin"
    assert f"{tmp_path / 'a.bin'} holds the new file; the file it had before is at {kept[0]}" in message
    assert "move it back by hand" in message and "Input/output error" in message
    assert (tmp_path / "b.bin").read_bytes() == b"old b.bin"  # never reached: as it was


def test_cli_force_over_a_sharded_output_that_fails_mid_commit_leaves_the_old_output(tmp_path, monkeypatch, mapper):
    def source(name: str, fill: int) -> None:
        header = {f"t{i}": entry("F32", [16], 64 * i, 64 * (i + 1)) for i in range(4)}
        (tmp_path / name).write_bytes(blob(header, bytes([fill]) * 256))

    source("one.safetensors", 1)
    source("two.safetensors", 2)
    first = mapper("convert", "one.safetensors", "out.safetensors.index.json", "--max-shard-size", "128B",
                   "--no-source-hash", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = contents(tmp_path)
    assert len([n for n in before if n.startswith("out-")]) == 2
    failing_on(monkeypatch, 2, OSError(errno.EIO, "Input/output error"))  # the second shard's rename
    second = mapper("convert", "two.safetensors", "out.safetensors.index.json", "--max-shard-size", "128B",
                    "--no-source-hash", "--force", cwd=tmp_path)
    assert second.returncode == 2
    assert "writing failed: Input/output error" in second.stderr and "nothing was written" in second.stderr
    assert contents(tmp_path) == before  # every shard and the index byte for byte the first run's


def test_recording_lists_only_outputs_past_their_commit_point(tmp_path, monkeypatch):
    from mapper_core.io.commits import recording

    with recording() as commits:
        commit_new(tmp_path)
        failing_on(monkeypatch, 1, OSError(errno.EIO, "Input/output error"))
        with pytest.raises(OSError):
            with AtomicFiles() as out:
                os.write(out.create(tmp_path / "e.bin"), b"never")
                out.commit()
    assert commits.done() == [tmp_path / name for name in (*NAMES, "d.bin")]


def test_a_kept_file_that_cannot_be_removed_after_the_commit_point_does_not_fail_it(tmp_path, monkeypatch):
    existing(tmp_path)
    real = os.unlink

    def unlink(path, *args, **kwargs):
        if str(path).endswith(TEMP_SUFFIX) and not str(path).startswith(str(tmp_path / ".d.bin")):
            raise OSError(errno.EIO, "Input/output error")
        real(path, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "unlink", unlink)
    commit_new(tmp_path)  # in place: no exception
    assert (tmp_path / "a.bin").read_bytes() == b"new a.bin"
    assert len([p for p in tmp_path.iterdir() if p.name.endswith(TEMP_SUFFIX)]) == 3  # left, as temporaries
