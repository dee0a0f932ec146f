"""mapper convert, in-process through the test runner (the progress bar through its own function)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mapper_core.io.atomic import Terminated
from mapper_core.cli import main
from mapper_core.cli.context import Context
from mapper_core.cli.write import progress

from cli_runner import python_process

RULES = """\
version: 1
name: cli-renamer
rules:
  - match: 'enc\\.(.+)'
    target: 'encoder.{1}'
skip: ['aux\\..*']
"""


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "src.safetensors"
    save_file({"enc.weight": torch.randn(4, 4), "enc.bias": torch.randn(4), "aux.step": torch.tensor(3)}, str(path))
    return path


@pytest.fixture
def rules(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return path


def test_plain_conversion(tmp_path, src, mapper):
    out = tmp_path / "out.safetensors"
    proc = mapper("convert", src, out)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}: 3 tensors" in proc.stdout and "byte-copy" in proc.stdout
    assert proc.stderr == ""  # not a terminal: no progress bar
    assert set(load_file(str(out))) == {"enc.weight", "enc.bias", "aux.step"}


def test_rules_json_and_verify(tmp_path, src, rules, mapper):
    out = tmp_path / "out.safetensors"
    proc = mapper("convert", src, out, "--rules", rules, "--verify", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["tensors"] == 2 and result["left_behind"] == 1 and result["checked"] == 2
    assert result["rules"] == "cli-renamer" and len(result["rules_sha256"]) == 64
    assert set(load_file(str(out))) == {"encoder.weight", "encoder.bias"}
    with safe_open(str(out), framework="pt") as f:
        assert f.metadata()["mapper.rules"] == "cli-renamer"


def test_plan_errors_exit_1_and_write_nothing(tmp_path, src, mapper):
    bad = tmp_path / "collide.yaml"
    bad.write_text("version: 1\nname: c\nrules:\n  - match: 'enc\\.(weight|bias)'\n    target: 'same'\n")
    proc = mapper("convert", src, tmp_path / "out.safetensors", "--rules", bad)
    assert proc.returncode == 1
    assert "collision" in proc.stderr and "nothing was written" in proc.stderr
    assert not (tmp_path / "out.safetensors").exists()


def test_unmatched_keys_exit_1_and_strict_without_target_is_refused(tmp_path, src, mapper):
    partial = tmp_path / "partial.yaml"
    partial.write_text("version: 1\nname: p\nrules:\n  - match: 'enc\\.(.+)'\n    target: 'e.{1}'\n")
    proc = mapper("convert", src, tmp_path / "out.safetensors", "--rules", partial)
    assert proc.returncode == 1 and "unmatched: aux.step" in proc.stderr
    # --strict checks target keys: without --target it checked nothing (a silent no-op)
    proc = mapper("convert", src, tmp_path / "out.safetensors", "--rules", partial, "--strict")
    assert proc.returncode == 2 and "--strict" in proc.stderr and "add --target T" in proc.stderr
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize("case", ["exists", "is source", "bad size", "bad rules", "bad suffix"])
def test_bad_input_exits_2(tmp_path, src, case, mapper):
    out = tmp_path / "out.safetensors"
    args = ["convert", src, out]
    if case == "exists":
        out.write_bytes(b"keep me")
    elif case == "is source":
        args = ["convert", src, src, "--force"]
    elif case == "bad size":
        args += ["--max-shard-size", "huge"]
    elif case == "bad rules":
        (tmp_path / "r.yaml").write_text("version: 1\nname: x\nrules: 3\n")
        args += ["--rules", tmp_path / "r.yaml"]
    else:
        args = ["convert", src, tmp_path / "out.pt"]
    proc = mapper(*args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("mapper: error:")
    if case == "exists":
        assert out.read_bytes() == b"keep me" and "--force" in proc.stderr
    assert not (tmp_path / "out.pt").exists()


def test_force_replaces(tmp_path, src, mapper):
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"old")
    assert mapper("convert", src, out, "--force").returncode == 0
    assert len(load_file(str(out))) == 3


def test_max_shard_size(tmp_path, src, mapper):
    proc = mapper("convert", src, tmp_path / "model.safetensors", "--max-shard-size", "64B", "--json")
    assert proc.returncode == 0, proc.stderr
    paths = json.loads(proc.stdout)["paths"]
    assert paths[-1].endswith("model.safetensors.index.json") and len(paths) == 3  # 8+16 B, then 64 B
    assert all(Path(p).exists() for p in paths)


def test_unsafe_pickle_is_refused_and_trust_pickle_warns(tmp_path, mapper):
    pt = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "config": Path("x")}, pt)  # Path needs unsafe unpickling
    proc = mapper("convert", pt, tmp_path / "o.safetensors")
    assert proc.returncode == 2 and "--trust-pickle" in proc.stderr
    assert not (tmp_path / "o.safetensors").exists()
    proc = mapper("convert", pt, tmp_path / "o.safetensors", "--trust-pickle")
    assert proc.returncode == 0, proc.stderr
    assert "mapper: warning:" in proc.stderr and "trust_pickle" in proc.stderr
    assert torch.equal(load_file(str(tmp_path / "o.safetensors"))["w"], torch.ones(2))


def test_sigterm_exits_143(tmp_path, src, monkeypatch, capsys):
    import mapper_core.io.convert as convert_mod

    def terminated(*args, **kwargs):
        raise Terminated()

    monkeypatch.setattr(convert_mod, "convert", terminated)
    assert main(["convert", str(src), str(tmp_path / "o.safetensors")]) == 143
    assert "terminated; nothing was written" in capsys.readouterr().err


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("quiet, tty, shown", [(False, True, "bar"), (True, True, ""), (False, False, "lines"),
                                               (True, False, "")])
def test_progress_names_each_phase_on_a_terminal_or_in_lines_and_not_when_quiet(quiet, tty, shown):
    err = FakeTerminal() if tty else io.StringIO()
    ctx = Context(out=io.StringIO(), err=err)
    with progress(ctx, quiet=quiet) as phases:
        for name in ("reading", "writing", "hashing", "verifying"):
            phases.phase(name, 100 << 20)
            phases.update(50 << 20, 100 << 20, "k")
    text = err.getvalue()
    if shown == "lines":  # piped: one line per phase, so a long conversion is never silent
        assert text.splitlines() == [f"mapper: {name} (100.0 MiB)..." for name in
                                     ("reading", "writing", "hashing", "verifying")]
    elif shown == "bar":
        assert "verifying" in text
    else:
        assert text == ""


def test_small_work_shows_no_phases():
    err = io.StringIO()
    with progress(Context(out=io.StringIO(), err=err), quiet=False) as phases:
        phases.phase("writing", 1000)
        phases.phase("verifying", 1000)
    assert err.getvalue() == ""


def test_the_command_converts_safetensors_without_importing_torch(tmp_path, src, rules):
    code = ("import sys; from mapper_core.cli import main; "
            f"code = main(['convert', {str(src)!r}, {str(tmp_path / 'o.safetensors')!r}, '--rules', {str(rules)!r}]); "
            "print(code, 'torch' in sys.modules)")
    out = python_process(code)  # a fresh interpreter: this process has torch already
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "0 False"


def test_summary_counts_read_as_english(tmp_path, src, rules, mapper):
    one = tmp_path / "one.safetensors"
    save_file({"enc.weight": torch.randn(2)}, str(one))
    proc = mapper("convert", one, tmp_path / "a.safetensors", "--rules", rules)
    assert proc.returncode == 0, proc.stderr
    assert ": 1 tensor, " in proc.stdout and "left behind" not in proc.stdout  # nothing left: no line
    proc = mapper("convert", src, tmp_path / "b.safetensors", "--rules", rules)
    assert "rules 'cli-renamer': 1 source key left behind" in proc.stdout and ": 2 tensors, " in proc.stdout
    proc = mapper("plan", "--rules", rules, one, "--cost")
    assert "(1 tensor)" in proc.stdout and "worker 0: 1 shard, " in proc.stdout, proc.stdout
