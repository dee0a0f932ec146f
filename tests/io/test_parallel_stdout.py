"""convert --workers N --json: what plugin code writes to stdout inside the forked workers (a print, a C
library's write to fd 1, sys.__stdout__) goes to stderr, so stdout stays one JSON document.

A real process: its file descriptors are the subject."""
from __future__ import annotations

import json
import textwrap

import pytest

pytest.importorskip("torch")

from cli_runner import mapper_process  # noqa: E402
from tiny_safetensors import write_f32  # noqa: E402

PLUGIN = '''
import os
import sys

from mapper_core.plugins import TransformSpec, hookimpl


def _loud(t):
    print("print in worker", os.getpid())
    os.write(1, f"fd 1 in worker {os.getpid()}\\n".encode())  # as a C library's printf writes
    print("sys.__stdout__ in worker", os.getpid(), file=sys.__stdout__, flush=True)
    return t.clone()


@hookimpl
def mapper_transforms():
    return [TransformSpec("loud", apply=_loud, description="prints three ways")]
'''


def test_worker_prints_leave_json_stdout_one_document(tmp_path):
    (tmp_path / "loud_worker_plugin.py").write_text(PLUGIN)
    src = write_f32(tmp_path / "src.safetensors", {f"l{i}.w": [32, 32] for i in range(6)})
    rules = tmp_path / "r.yaml"
    rules.write_text(textwrap.dedent("""\
        version: 1
        rules:
          - match: '(.+)'
            target: '{1}'
            transform: [{loud: {}}]
        """))
    (tmp_path / "out").mkdir()
    done = mapper_process("--plugin", "loud_worker_plugin", "convert", src, tmp_path / "out" / "model.safetensors.index.json",
                          "--rules", rules, "--max-shard-size", "8KB", "--workers", "2", "--json",
                          env={"PYTHONPATH": str(tmp_path)}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # one document, nothing else
    assert report["tensors"] == 6 and len(report["paths"]) == 7
    for what in ("print in worker", "fd 1 in worker", "sys.__stdout__ in worker"):
        assert done.stderr.count(what) == 6, (what, done.stderr)
    workers = {line.rsplit(" ", 1)[1] for line in done.stderr.splitlines() if line.startswith("print in worker")}
    assert len(workers) == 2  # the transforms ran in the two workers
