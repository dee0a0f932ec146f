"""Safe output: nothing appears at the destination unless the whole write succeeded."""
from __future__ import annotations

import os
import signal
import stat
import time

import pytest

from mapper_core.io import atomic
from mapper_core.io.atomic import TEMP_SUFFIX, AtomicFiles, Terminated, check_destinations
from mapper_core.errors import OutputExistsError


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(TEMP_SUFFIX))


def test_commit_puts_every_file_in_place_and_leaves_no_temporary(tmp_path):
    with AtomicFiles() as out:
        for name in ("a.bin", "b.bin"):
            fd = out.create(tmp_path / name)
            os.write(fd, name.encode())
        assert not (tmp_path / "a.bin").exists()  # nothing visible before commit
        assert len(leftovers(tmp_path)) == 2
        out.commit()
    assert (tmp_path / "a.bin").read_bytes() == b"a.bin"
    assert (tmp_path / "b.bin").read_bytes() == b"b.bin"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("exc", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_an_error_or_ctrl_c_mid_write_leaves_nothing(tmp_path, exc):
    with pytest.raises(type(exc)):
        with AtomicFiles() as out:
            os.write(out.create(tmp_path / "out.bin"), b"partial")
            raise exc
    assert list(tmp_path.iterdir()) == []


def test_no_signal_handler_is_installed(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with AtomicFiles() as out:
        os.write(out.create(tmp_path / "out.bin"), b"partial")
        assert signal.getsignal(signal.SIGTERM) is before  # the application's handler stays in charge
        out.commit()
    assert signal.getsignal(signal.SIGTERM) is before


def test_terminated_raised_by_the_applications_own_handler_cleans_up(tmp_path):
    def stop(signum, frame):
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with pytest.raises(Terminated):
            with AtomicFiles() as out:
                os.write(out.create(tmp_path / "out.bin"), b"partial")
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # interrupted: the handler raises as soon as the signal arrives
                pytest.fail("SIGTERM did not interrupt the write")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rename_undoes_the_files_already_renamed(tmp_path, monkeypatch):
    real = os.replace
    calls = []

    def flaky(a, b):
        calls.append(b)
        if len(calls) == 2:
            raise OSError("rename failed")
        real(a, b)

    monkeypatch.setattr(atomic.os, "replace", flaky)
    with pytest.raises(OSError):
        with AtomicFiles() as out:
            os.write(out.create(tmp_path / "shard.bin"), b"1")
            os.write(out.create(tmp_path / "index.json"), b"2")
            out.commit()
    assert list(tmp_path.iterdir()) == []


def test_the_result_gets_ordinary_permissions(tmp_path):
    with AtomicFiles() as out:
        out.create(tmp_path / "f.bin")
        out.commit()
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == 0o666 & ~mask


# --- refusing destinations ---------------------------------------------------------------------

@pytest.fixture
def src(tmp_path):
    path = tmp_path / "src.bin"
    path.write_bytes(b"source")
    return path


def test_an_existing_destination_needs_force(tmp_path, src):
    dst = tmp_path / "dst.bin"
    dst.write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="--force"):
        check_destinations([dst], [src])
    check_destinations([dst], [src], force=True)


@pytest.mark.parametrize("how", ["same path", "symlink", "hard link", "dotdot"])
def test_the_source_is_refused_even_with_force(tmp_path, src, how):
    if how == "same path":
        dst = src
    elif how == "symlink":
        dst = tmp_path / "link.bin"
        dst.symlink_to(src)
    elif how == "hard link":
        dst = tmp_path / "hard.bin"
        os.link(src, dst)
    else:
        (tmp_path / "sub").mkdir()
        dst = tmp_path / "sub" / ".." / "src.bin"
    with pytest.raises(OutputExistsError, match="is the source"):
        check_destinations([dst], [src], force=True)


def test_a_symlinked_folder_holding_the_source_is_seen_through(tmp_path, src):
    (tmp_path / "alias").symlink_to(tmp_path)
    with pytest.raises(OutputExistsError, match="is the source"):
        check_destinations([tmp_path / "alias" / "src.bin"], [src], force=True)


def test_a_directory_or_a_missing_folder_is_refused(tmp_path, src):
    with pytest.raises(OutputExistsError, match="directory"):
        check_destinations([tmp_path], [src], force=True)
    with pytest.raises(OutputExistsError, match="does not exist"):
        check_destinations([tmp_path / "nope" / "x.bin"], [src])


def test_a_dangling_symlink_destination_is_named_as_such(tmp_path):
    """It was 'already exists', which a user looking at a missing file cannot make sense of."""
    dst = tmp_path / "out.safetensors"
    dst.symlink_to(tmp_path / "gone" / "x.safetensors")
    with pytest.raises(OutputExistsError, match=r"is a symbolic link to .*gone.*which does not exist; remove the link"):
        check_destinations([dst], [])
    check_destinations([dst], [], force=True)  # --force replaces the link itself
