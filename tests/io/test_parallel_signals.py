"""`convert --workers N` stopped by a signal: the CLI's exit code, no traceback, nothing orphaned,
and a rerun that resumes (issue 14's resumability, found by a fresh-eyes trial)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")  # the fixture builds its source with torch and safetensors
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork, signals and PDEATHSIG: Linux")


@pytest.fixture
def source(tmp_path):
    import torch
    from safetensors.torch import save_file

    src = tmp_path / "big.safetensors"
    save_file({f"w{i:02d}": torch.full((512, 1024), float(i)) for i in range(48)}, src)  # 96 MiB
    return src


def _start(src: Path, out: Path) -> subprocess.Popen:
    out.mkdir()
    return subprocess.Popen([sys.executable, "-m", "mapper_core", "convert", str(src), str(out / "m.safetensors.index.json"),
                             "--max-shard-size", "4MB", "--workers", "2", "--no-source-hash", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _when_writing(out: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while not any(".mapper-tmp" in p.name for p in out.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be stopped"
        time.sleep(0.001)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_the_parent_alone_stops_the_run_and_a_rerun_resumes(tmp_path, source, signum, code):
    out = tmp_path / "out"
    proc = _start(source, out)
    _when_writing(out, proc)
    os.kill(proc.pid, signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert "rerun the same command" in err
    # a signal that lands while a worker creates its temporary file can leave that file: at most one
    # per worker, and the rerun must name it (the worker's PID is in the name)
    left = [p.name for p in out.iterdir() if ".mapper-tmp" in p.name]
    assert len(left) <= 2
    again = subprocess.run([sys.executable, "-m", "mapper_core", "convert", str(source),
                            str(out / "m.safetensors.index.json"), "--max-shard-size", "4MB", "--workers", "2",
                            "--no-source-hash", "-q"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert all(name in again.stdout + again.stderr for name in left)
    one = tmp_path / "one"
    one.mkdir()
    subprocess.run([sys.executable, "-m", "mapper_core", "convert", str(source), str(one / "m.safetensors.index.json"),
                    "--max-shard-size", "4MB", "--no-source-hash", "-q"], check=True, timeout=120)
    names = sorted(p.name for p in one.iterdir())
    assert names == sorted(p.name for p in out.iterdir() if not p.name.endswith(("mapper-manifest", ".mapper-tmp")))
    assert all((one / n).read_bytes() == (out / n).read_bytes() for n in names)


def test_workers_do_not_outlive_a_killed_parent(tmp_path, source):
    out = tmp_path / "out"
    proc = _start(source, out)
    _when_writing(out, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 20
    while True:
        alive = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout.split()
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert alive == []  # the workers got SIGTERM when their parent died
    assert not (out / "m.safetensors.index.json").exists()
