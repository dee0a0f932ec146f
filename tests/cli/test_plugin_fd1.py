"""What plugin code writes to file descriptor 1 in the CLI's own process (``os.write(1, ...)``, a C
library's printf, ``sys.__stdout__``) goes to stderr: stdout holds only the report, one JSON document
with ``--json``. A caller of ``main`` in the same process finds fd 1 and its streams put back.

The file descriptors are the subject: a real process, or ``main`` called under ``capfd``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from cli_runner import environment, mapper_process

# A torch-free format for ".loud" files (JSON: key → shape); its reader writes to fd 1 three ways,
# and at import too. A file's "then" entry says how the reader ends: ok, raise, interrupt.
PLUGIN = '''
import ctypes
import json
import os
import sys

from mapper_core.plugins import Format, hookimpl
from mapper_core.specs import TensorSpec

os.write(1, b"fd 1 at import\\n")


def _printf(text):
    try:
        ctypes.CDLL(None).printf(text)  # C stdio: held in the C library's buffer when fd 1 is a pipe
    except (OSError, AttributeError, TypeError):  # no C library by that name (Windows)
        os.write(1, text)


class LoudReader:
    def __init__(self, path):
        self.doc = json.loads(open(path).read())
        os.write(1, b"fd 1 in reader\\n")
        _printf(b"printf in reader\\n")
        sys.__stdout__.write("sys.__stdout__ in reader\\n")  # not flushed: still in Python's buffer
        then = self.doc.pop("then", "ok")
        if then == "raise":
            raise RuntimeError("disk on fire")
        if then == "interrupt":
            raise KeyboardInterrupt

    def specs(self):
        return {k: TensorSpec("F32", tuple(s)) for k, s in self.doc.items()}

    def metadata(self):
        return {}

    def get_tensor(self, key):
        raise RuntimeError("header only")

    def close(self):
        pass


@hookimpl
def mapper_formats():
    return [Format("loud", (".loud",), open=lambda path, **options: LoudReader(path))]
'''
# C stdio and Python's own streams buffered as they are by default (PYTHONUNBUFFERED unbuffers both)
BUFFERED = {"PYTHONUNBUFFERED": ""}
WRITTEN = ("fd 1 at import", "fd 1 in reader", "printf in reader", "sys.__stdout__ in reader")


def _loud_file(folder, then: str = "ok"):
    path = folder / "m.loud"
    path.write_text(json.dumps({"a.w": [2, 2], "b": [3], "then": then}))
    return path


def test_fd1_writes_in_a_process_leave_json_stdout_one_document(tmp_path):
    (tmp_path / "loud_fd1_plugin.py").write_text(PLUGIN)
    done = mapper_process("--plugin", "loud_fd1_plugin", "inspect", _loud_file(tmp_path), "--json",
                          env={"PYTHONPATH": str(tmp_path), **BUFFERED}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # one document, nothing before or after it
    assert [t["key"] for t in report["tensors"]] == ["a.w", "b"]
    for what in WRITTEN:
        assert done.stderr.count(what) == 1, (what, done.stderr)


def test_fd1_writes_with_a_text_report_go_to_stderr(tmp_path):
    (tmp_path / "loud_fd1_plugin.py").write_text(PLUGIN)
    done = mapper_process("--plugin", "loud_fd1_plugin", "inspect", _loud_file(tmp_path),
                          env={"PYTHONPATH": str(tmp_path), **BUFFERED}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{tmp_path / 'm.loud'} (loud)")
    assert not any(what in done.stdout for what in WRITTEN), done.stdout


@pytest.fixture
def loud(plugin_modules, monkeypatch):
    monkeypatch.setenv("MAPPER_PLUGINS", "")
    return plugin_modules("loud_fd1_inprocess", textwrap.dedent(PLUGIN))


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else set()


@pytest.mark.parametrize("then, code", [("ok", 0), ("raise", 2), ("interrupt", 130)])
def test_main_in_process_puts_fd1_back_on_every_exit_path(loud, tmp_path, capfd, then, code):
    from mapper_core.cli import main

    src = _loud_file(tmp_path, then)
    capfd.readouterr()
    stdout_before, fd1_before, fds_before = sys.stdout, os.fstat(1), _open_fds()
    assert main(["--plugin", loud, "inspect", str(src), "--json"]) == code
    assert sys.stdout is stdout_before
    fd1_after = os.fstat(1)
    assert (fd1_after.st_dev, fd1_after.st_ino) == (fd1_before.st_dev, fd1_before.st_ino)
    assert _open_fds() == fds_before  # the copies of fd 1 were closed
    os.write(1, b"fd 1 after main\n")
    out, err = capfd.readouterr()
    report, after = out.split("\n", 1) if then == "ok" else ("", out)
    if then == "ok":
        assert json.loads(report)["format"] == "loud"
    assert after == "fd 1 after main\n"  # fd 1 writes to stdout again, and nothing of the plugin's is there
    for what in WRITTEN:
        assert err.count(what) == 1, (what, err)


def test_a_reader_that_left_the_pipe_ends_quietly(tmp_path):
    """`mapper inspect ... | head -1`: the rest of a long report is dropped without a traceback."""
    (tmp_path / "loud_fd1_plugin.py").write_text(PLUGIN)
    path = tmp_path / "m.loud"
    path.write_text(json.dumps({f"layer.{i}.weight": [4, 4] for i in range(20000)}))
    command = [sys.executable, "-m", "mapper_core", "--plugin", "loud_fd1_plugin", "inspect", str(path)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
                            env=environment({"PYTHONPATH": str(tmp_path), **BUFFERED}))
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, err
    assert first.decode().startswith(f"{path} (loud)")
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_a_pipe_closed_before_any_output_ends_quietly(tmp_path):
    (tmp_path / "loud_fd1_plugin.py").write_text(PLUGIN)
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "mapper_core", "--plugin", "loud_fd1_plugin", "inspect",
                               str(_loud_file(tmp_path)), "--json"], stdout=write, stderr=subprocess.PIPE, text=True,
                              cwd=tmp_path, env=environment({"PYTHONPATH": str(tmp_path), **BUFFERED}), timeout=300)
    finally:
        os.close(write)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Broken" not in done.stderr, done.stderr
    assert "fd 1 in reader" in done.stderr  # the plugin's writes did not meet the closed pipe
