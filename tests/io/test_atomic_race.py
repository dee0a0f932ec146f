"""The output's edge: without --force nothing is replaced, even in a race; killed runs' temporaries are found."""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap

import pytest

from mapper_core.errors import OutputExistsError
from mapper_core.io import atomic
from mapper_core.io.atomic import TEMP_SUFFIX, AtomicFiles, stale_temps
from mapper_core.io.convert import convert
from cli_runner import SCRIPT, environment, mapper  # tests/helpers


def write_safetensors(path, count: int = 4, values: int = 1024) -> None:
    """A small F32 safetensors file, built by hand (no numpy or torch needed)."""
    header, data, offset = {}, b"", 0
    for i in range(count):
        blob = struct.pack(f"<{values}f", *(float(i + j) for j in range(values)))
        header[f"layer{i}.weight"] = {"dtype": "F32", "shape": [values], "data_offsets": [offset, offset + len(blob)]}
        data, offset = data + blob, offset + len(blob)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(TEMP_SUFFIX))


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "src.safetensors"
    write_safetensors(path)
    return path


@pytest.mark.parametrize("renameat2", [True, False], ids=["renameat2", "link-then-unlink"])
def test_a_destination_that_appears_mid_write_is_not_replaced(tmp_path, src, monkeypatch, renameat2):
    if not renameat2:
        monkeypatch.setattr(atomic, "_libc", lambda: None)  # as on a system without renameat2
    dst = tmp_path / "out.safetensors"

    def intruder(done, total, key):  # after the destination was checked, before the rename
        if not dst.exists():
            dst.write_bytes(b"another process's output")

    with pytest.raises(OutputExistsError, match="appeared while the output was being written"):
        convert(src, dst, progress=intruder, hash_source=False)
    assert dst.read_bytes() == b"another process's output"
    assert leftovers(tmp_path) == []


def test_force_still_replaces(tmp_path, src):
    dst = tmp_path / "out.safetensors"
    dst.write_bytes(b"old")
    convert(src, dst, force=True, hash_source=False)
    assert dst.read_bytes()[8:9] == b"{"


def test_two_processes_racing_to_one_destination(tmp_path):
    """Both exited 0 and the later rename silently replaced the first output."""
    src = tmp_path / "big.safetensors"
    write_safetensors(src, count=16, values=256 * 1024)  # 16 MiB: both runs are writing at once
    dst = tmp_path / "out.safetensors"
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "mapper_core"]
    runs = [subprocess.Popen([*command, "convert", str(src), str(dst), "-q", "--no-source-hash"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment())
            for _ in range(2)]
    results = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "appeared while the output was being written" in loser or "already exists" in loser
    assert leftovers(tmp_path) == []


def _child_holding_a_temp(dst) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import os, sys, time
        from mapper_core.io.atomic import AtomicFiles
        out = AtomicFiles()
        os.write(out.create({str(dst)!r}), b"half a checkpoint")
        print("ready", flush=True)
        time.sleep(600)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=environment())
    assert child.stdout.readline().strip() == "ready"
    return child


def test_temporaries_of_a_killed_run_are_named_then_cleaned(tmp_path, src):
    dst = tmp_path / "out.safetensors"
    child = _child_holding_a_temp(dst)
    try:
        [temp] = leftovers(tmp_path)
        assert f".{child.pid}@" in temp
        assert stale_temps(dst) == []  # its process is alive: not stale
    finally:
        child.send_signal(signal.SIGKILL)  # no cleanup can run
        child.wait()
    assert [p.name for p in stale_temps(dst)] == [temp]

    done = mapper("convert", src, dst, "-q", "--no-source-hash")
    assert done.returncode == 0
    assert "1 temporary file left by killed runs" in done.stdout and temp in done.stdout
    assert "--clean-stale" in done.stdout and leftovers(tmp_path) == [temp]

    done = mapper("convert", src, dst, "-q", "--no-source-hash", "--force", "--clean-stale", "--json")
    assert done.returncode == 0
    result = json.loads(done.stdout)
    assert result["stale_removed"] and [os.path.basename(p) for p in result["stale_temps"]] == [temp]
    assert leftovers(tmp_path) == []


def test_temporaries_of_other_machines_and_unknown_owners_are_left_alone(tmp_path):
    dst = tmp_path / "out.safetensors"
    (tmp_path / f".out.safetensors.1@some-other-host.abcd1234{TEMP_SUFFIX}").write_bytes(b"x")
    (tmp_path / f".out.safetensors.k2j3h4{TEMP_SUFFIX}").write_bytes(b"x")  # an older mapper's name
    assert stale_temps(dst) == []


def test_atomic_files_installs_no_signal_handler_while_naming_temps(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with AtomicFiles(replace=False) as out:
        os.write(out.create(tmp_path / "a.bin"), b"a")
        out.commit()
    assert signal.getsignal(signal.SIGTERM) is before and (tmp_path / "a.bin").read_bytes() == b"a"


def _dead_temp(dst, pid: int) -> str:
    from mapper_core.io.atomic import _host

    return f".{dst.name}.{pid}@{_host()}.abcd1234{TEMP_SUFFIX}"  # no process has that pid here


def test_a_folder_named_like_a_temporary_is_no_temporary(tmp_path, src):
    # trial 6 T9: --clean-stale unlinked it and died with an IsADirectoryError traceback
    dst = tmp_path / "out.safetensors"
    (tmp_path / _dead_temp(dst, 4_000_001)).mkdir()
    (tmp_path / _dead_temp(dst, 4_000_002)).write_bytes(b"of a killed run")
    assert [p.name for p in stale_temps(dst)] == [_dead_temp(dst, 4_000_002)]
    done = mapper("convert", src, dst, "-q", "--no-source-hash", "--clean-stale")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == [_dead_temp(dst, 4_000_001)]


def test_a_temporary_that_cannot_be_removed_is_named_and_the_run_goes_on(tmp_path, src, monkeypatch):
    dst = tmp_path / "out.safetensors"
    temp = tmp_path / _dead_temp(dst, 4_000_003)
    temp.write_bytes(b"x")
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        if str(path) == str(temp):
            raise PermissionError(13, "Permission denied")
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    done = mapper("convert", src, dst, "-q", "--no-source-hash", "--clean-stale")
    assert done.returncode == 0 and dst.exists() and temp.exists()
    assert (f"mapper: warning: {temp}: cannot remove this temporary file of a killed run (Permission denied); "
            "remove it yourself") in done.stderr
