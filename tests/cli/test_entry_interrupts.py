"""The mapper executable's edges: Ctrl-C before main has set up, and after it has reported."""
from __future__ import annotations

import signal
import subprocess
import sys
import types

import pytest

import mapper_core.cli
from mapper_core import entry


@pytest.fixture
def sigint_restored():
    before = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_while_the_commands_are_imported_is_130_and_says_so(monkeypatch, capsys, sigint_restored):
    class Importing(types.ModuleType):
        def __getattr__(self, name):
            raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "mapper_core.cli", Importing("mapper_core.cli"))
    monkeypatch.delattr(sys.modules["mapper_core"], "cli", raising=False)
    assert entry.run() == 130
    assert capsys.readouterr().err == "mapper: error: interrupted; nothing was written\n"


def test_ctrl_c_that_escapes_main_is_130_not_a_traceback(monkeypatch, capsys, sigint_restored):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mapper_core.cli, "main", interrupted)
    assert entry.run() == 130 and "interrupted" in capsys.readouterr().err


def test_after_the_report_a_late_ctrl_c_changes_nothing(tmp_path):
    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\nrules:\n  - match: a\n    target: b\n")
    code = ("import os, signal, sys\n"
            "from mapper_core.entry import run\n"
            f"sys.argv = ['mapper', 'validate', {str(rules)!r}]\n"
            "code = run()\n"
            "os.kill(os.getpid(), signal.SIGINT)  # as if Ctrl-C came while the interpreter shuts down\n"
            "print('exit', code)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "valid rules" in done.stdout and "exit 0" in done.stdout and done.stderr == ""


def test_main_called_from_python_leaves_sigint_alone(tmp_path, sigint_restored):
    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\nrules:\n  - match: a\n    target: b\n")
    assert mapper_core.cli.main(["validate", str(rules)]) == 0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
