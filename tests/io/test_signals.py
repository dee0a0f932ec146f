"""Signals belong to the application: the library installs no handler, the ``mapper`` command does.

Inside a training job a scheduler's SIGTERM must reach the job's own handler; a library call
that swapped in its own would turn the job's preemption logic into a KeyboardInterrupt.
The subprocess tests are here because the process is the subject.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file

from mapper_core.io.atomic import TEMP_SUFFIX
from mapper_core.io.convert import convert


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "src.safetensors"
    save_file({"a": torch.arange(64, dtype=torch.float32), "b": torch.ones(8, 8)}, str(path))
    return path


@pytest.fixture
def application_handler():
    """A SIGTERM handler of the application's own, put back afterwards."""
    def handler(signum, frame):  # never called: the tests only look at who is installed
        raise AssertionError("the test did not send SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    yield handler
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("kind", ["safetensors", "torch"])
def test_convert_leaves_the_sigterm_handler_alone_during_and_after_the_write(tmp_path, src, application_handler,
                                                                           kind):
    if kind == "torch":
        src = tmp_path / "src.pt"
        torch.save({"a": torch.arange(64, dtype=torch.float32), "b": torch.ones(8, 8).t()}, src)
    during = []
    convert(src, tmp_path / "out.safetensors", verify=True,
            progress=lambda done, total, key: during.append(signal.getsignal(signal.SIGTERM)))
    assert during and all(h is application_handler for h in during)
    assert signal.getsignal(signal.SIGTERM) is application_handler


def run_child(code: str) -> subprocess.Popen:
    """Start ``code`` in a new interpreter; it prints "copying" once it is mid-write, then sleeps."""
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "copying"
        return child
    except BaseException:
        child.kill()
        raise


def terminate(child: subprocess.Popen, folder) -> str:
    try:
        assert any(p.name.endswith(TEMP_SUFFIX) for p in folder.iterdir())  # killed mid-write indeed
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    return err


def test_an_applications_own_sigterm_handler_runs_and_the_write_cleans_up(tmp_path, src):
    out = tmp_path / "out.safetensors"
    child = run_child(f"""
        import signal, sys, time
        from mapper_core.io.convert import convert

        def stop(signum, frame):
            print("application handler", file=sys.stderr, flush=True)
            raise SystemExit(7)

        signal.signal(signal.SIGTERM, stop)

        def progress(done, total, key):
            print("copying", flush=True)
            time.sleep(60)

        convert({str(src)!r}, {str(out)!r}, progress=progress)
    """)
    err = terminate(child, tmp_path)
    assert child.returncode == 7 and "application handler" in err
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(TEMP_SUFFIX)]


def test_sigterm_to_mapper_convert_mid_copy_exits_143_and_leaves_nothing(tmp_path, src):
    out = tmp_path / "out.safetensors"
    child = run_child(f"""
        import os, sys, time
        from mapper_core.io.formats.writer import RangeCopier
        from mapper_core.cli import main

        real_copy = RangeCopier.copy
        # a copy of the real stdout: while main() runs, what other code writes to stdout, even to
        # sys.__stdout__ or file descriptor 1, goes to stderr
        channel = os.fdopen(os.dup(1), "w")

        def slow_copy(self, *args, **kwargs):
            real_copy(self, *args, **kwargs)
            print("copying", file=channel, flush=True)
            time.sleep(60)

        RangeCopier.copy = slow_copy
        sys.exit(main(["convert", {str(src)!r}, {str(out)!r}, "-q"]))
    """)
    err = terminate(child, tmp_path)
    assert child.returncode == 143, err
    assert "terminated; nothing was written" in err
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(TEMP_SUFFIX)]


def test_the_cli_puts_the_previous_handler_back(tmp_path, src, application_handler):
    from mapper_core.cli import main

    assert main(["convert", str(src), str(tmp_path / "out.safetensors"), "-q"]) == 0
    assert signal.getsignal(signal.SIGTERM) is application_handler
