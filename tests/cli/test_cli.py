"""The engine's CLI (in-process, through the test runner): validate, plan, explain and their exit codes."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from cli_runner import mapper_process, python_process

FIXTURES = Path(__file__).parents[1] / "fixtures" / "rules"


RULES = """\
version: 1
name: cli-demo
unmatched: drop  # other.weight is left to no rule on purpose; the default, error, would refuse it
rules:
  - match: 'enc\\.(\\d+)\\.(weight|bias)'
    target: 'encoder.layers.{1}.{2}'
  - match: 'dup\\.(\\d+)\\.weight'
    target: 'encoder.layers.{1}.weight'
  - match: 'never\\..*'
    target: 'x'
skip:
  - 'fc\\..*'
"""


@pytest.fixture
def files(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    source = {
        "enc.0.weight": torch.ones(4, 2), "enc.0.bias": torch.zeros(4), "enc.1.weight": torch.ones(3, 4),
        "fc.weight": torch.ones(2, 3), "other.weight": torch.ones(1),
    }
    save_file(source, tmp_path / "source.safetensors")
    target = {"encoder.layers.0.weight": torch.ones(4, 2), "encoder.layers.0.bias": torch.zeros(4),
              "encoder.layers.1.weight": torch.ones(3, 4), "head.weight": torch.ones(2, 3)}
    save_file(target, tmp_path / "target.safetensors")
    save_file({**source, "dup.0.weight": torch.ones(4, 2)}, tmp_path / "collide.safetensors")
    return tmp_path


def test_validate_good_file_exits_zero(mapper):
    r = mapper("validate", FIXTURES / "good.yaml")
    assert r.returncode == 0, r.stderr
    assert "valid rules 'example'" in r.stdout and "4 rules" in r.stdout


@pytest.mark.parametrize(("name", "lines"), [("three-mistakes.yaml", [7, 8, 11]), ("three-mistakes.json", [7, 10, 15])])
def test_validate_lists_all_three_planted_mistakes_with_lines(name, lines, mapper):
    r = mapper("validate", FIXTURES / name)
    assert r.returncode == 2
    problems = [ln for ln in r.stderr.splitlines() if f"{name}:" in ln]
    assert [int(p.split(":")[1]) for p in problems] == lines, r.stderr
    assert "on_shape_mismtach" in problems[0]
    assert "rules[1].match" in problems[1]
    assert "kind" in problems[2]
    js = mapper("validate", FIXTURES / name, "--json")
    assert js.returncode == 2 and [p["line"] for p in json.loads(js.stdout)["problems"]] == lines


def test_plan_json_gives_exactly_the_expected_sets(files, mapper):
    r = mapper("plan", files / "source.safetensors", "--rules", files / "rules.yaml",
               "--target", files / "target.safetensors", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert {(m["source"], m["target"]) for m in plan["mapped"]} == {
        ("enc.0.weight", "encoder.layers.0.weight"), ("enc.0.bias", "encoder.layers.0.bias"),
        ("enc.1.weight", "encoder.layers.1.weight")}
    assert [(s["source"], s["pattern"]) for s in plan["skipped"]] == [("fc.weight", "fc\\..*")]
    assert plan["unmatched"] == ["other.weight"]
    assert plan["uninitialized"] == ["head.weight"]
    assert plan["collisions"] == [] and plan["mismatched"] == []
    assert [u["rule"] for u in plan["unused_rules"]] == [1, 2]
    assert plan["summary"]["target_filled"] == 0.75


def test_strict_fails_on_unmatched_and_uninitialized(files, mapper):
    r = mapper("plan", files / "source.safetensors", "--rules", files / "rules.yaml",
               "--target", files / "target.safetensors", "--strict")
    assert r.returncode == 1
    assert "Unmatched source keys (1)" in r.stdout and "Uninitialized target keys (1)" in r.stdout


def test_collision_exits_one_and_is_called_out_first(files, mapper):
    r = mapper("plan", files / "collide.safetensors", "--rules", files / "rules.yaml")
    assert r.returncode == 1
    assert r.stdout.index("collision: 2 sources map to 'encoder.layers.0.weight'") < r.stdout.index("Rule 0:")
    js = json.loads(mapper("plan", files / "collide.safetensors", "--rules", files / "rules.yaml", "--json").stdout)
    assert js["collisions"] == [{"target": "encoder.layers.0.weight", "sources": ["dup.0.weight", "enc.0.weight"],
                                 "rules": [1, 0], "lines": [7, 5]}]  # source (file) order


def test_bad_inputs_exit_two_naming_the_file(files, mapper):
    missing = mapper("plan", files / "nope.safetensors", "--rules", files / "rules.yaml")
    assert missing.returncode == 2 and "nope.safetensors" in missing.stderr
    (files / "broken.safetensors").write_bytes(b"\x10\x00\x00")
    broken = mapper("plan", files / "broken.safetensors", "--rules", files / "rules.yaml")
    assert broken.returncode == 2 and "broken.safetensors" in broken.stderr
    unknown = mapper("plan", files / "source.safetensors", "--rules", "no-such-plugin:rules")
    assert unknown.returncode == 2 and "mapper rules" in unknown.stderr


def test_explain_names_winner_and_losers(files, mapper):
    r = mapper("explain", files / "collide.safetensors", "fc.weight", "--rules", files / "rules.yaml", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["key"] == "fc.weight" and data["outcome"] == "skipped"
    text = mapper("explain", files / "source.safetensors", "enc.1.weight", "--rules", files / "rules.yaml").stdout
    assert "rule 0" in text and "encoder.layers.1.weight" in text


def test_header_only_commands_do_not_import_torch(files):
    code = ("import sys; from mapper_core.cli import main; "
            f"rc = main(['plan', {str(files / 'source.safetensors')!r}, "
            f"'--rules', {str(files / 'rules.yaml')!r}, '--json']); "
            "assert 'torch' not in sys.modules, 'torch was imported'; "
            # a built-in format recognised the file: no plugin started (the gguf one imports numpy)
            "assert 'numpy' not in sys.modules, 'numpy was imported'; print('rc', rc)")
    r = python_process(code)  # a fresh interpreter: this process has torch already
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("rc 0")


def test_the_plugins_variable_is_spelled_as_the_manager_spells_it():
    from mapper_core.cli.context import PLUGINS_ENV
    from mapper_core.plugins.manager import ENV_VAR

    assert PLUGINS_ENV == ENV_VAR


def test_the_installed_console_script_runs_a_command(files):
    r = mapper_process("plan", files / "source.safetensors", "--rules", files / "rules.yaml", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["unmatched"] == ["other.weight"]


@pytest.mark.parametrize("command", ["plan", "explain", "inspect"])
def test_json_is_one_line_by_default_and_indented_on_request(files, command, mapper):
    args = {"plan": ["--rules", files / "rules.yaml"], "explain": ["enc.0.bias", "--rules", files / "rules.yaml"],
            "inspect": []}[command]
    compact = mapper(command, files / "source.safetensors", *args, "--json")
    indented = mapper(command, files / "source.safetensors", *args, "--json", "--indent", "3")
    assert compact.returncode == indented.returncode == 0, compact.stderr + indented.stderr
    assert compact.stdout.count("\n") == 1 and '": ' not in compact.stdout  # no spaces after separators
    assert json.loads(compact.stdout) == json.loads(indented.stdout)
    assert indented.stdout.splitlines()[1].startswith('   "')  # three spaces, as asked


@pytest.mark.parametrize("value", ["-1", "9", "two"])
def test_indent_out_of_range_is_a_usage_error(files, value, mapper):
    r = mapper("inspect", files / "source.safetensors", "--json", "--indent", value)
    assert r.returncode == 2 and "0 to 8" in r.stderr and "Traceback" not in r.stderr


def test_strict_failure_is_said_in_the_report_json_and_stderr(files, mapper):
    args = ("plan", files / "source.safetensors", "--rules", files / "rules.yaml",
            "--target", files / "target.safetensors", "--strict")
    text = mapper(*args)
    assert text.returncode == 1 and "result: FAILED under --strict" in text.stdout
    assert "--strict: 1 uninitialized target key;" in text.stderr
    summary = json.loads(mapper(*args, "--json").stdout)["summary"]
    assert summary["strict"] is True and summary["failed"] is True and summary["errors"] == 0


def test_plan_accepts_torch_reader_options(files, tmp_path, mapper):
    nested = tmp_path / "nested.pt"
    torch.save({"ema": {"model": {"enc.0.weight": torch.ones(4, 2)}}, "step": 3}, nested)
    r = mapper("plan", nested, "--rules", files / "rules.yaml", "--unwrap", "ema.model", "--json")
    assert r.returncode == 0, r.stderr
    assert [m["target"] for m in json.loads(r.stdout)["mapped"]] == ["encoder.layers.0.weight"]


def test_options_that_would_be_ignored_are_refused(files, tmp_path, mapper):
    r = mapper("plan", files / "source.safetensors", "--rules", files / "rules.yaml",
               "--target", files / "target.safetensors", "--model-arg", "x=1")
    assert r.returncode == 2 and "--model-arg only applies" in r.stderr
    c = mapper("convert", files / "source.safetensors", tmp_path / "o.safetensors", "--strict")
    assert c.returncode == 2 and "--strict only applies with --rules" in c.stderr
    assert not (tmp_path / "o.safetensors").exists()


def test_unknown_format_says_which_option_names_one(files, mapper):
    odd = files / "weights.xyz"
    odd.write_bytes(b"\x00" * 32)
    r = mapper("plan", odd, "--rules", files / "rules.yaml")
    assert r.returncode == 2 and "weights.xyz" in r.stderr and "--format" in r.stderr


@pytest.mark.parametrize("command", ["plan", "explain", "inspect", "convert", "export"])
def test_every_command_prints_the_trust_pickle_warning_one_way(tmp_path, mapper, command, recwarn):
    from fractions import Fraction  # a global weights_only refuses

    from mapper_core.io.formats.torch_format import TrustPickleWarning

    (tmp_path / "rules.yaml").write_text(RULES)
    key = "encoder.layers.0.weight" if command == "export" else "enc.0.weight"  # export reads the target layout
    torch.save({"state_dict": {key: torch.ones(4, 2)}, "note": Fraction(1, 3)}, tmp_path / "c.pt")
    args = {
        "plan": ["plan", "c.pt", "--rules", "rules.yaml"],
        "explain": ["explain", "c.pt", "enc.0.weight", "--rules", "rules.yaml"],
        "inspect": ["inspect", "c.pt"],
        "convert": ["convert", "c.pt", "out.safetensors"],
        "export": ["export", "c.pt", "out.safetensors", "--rules", "rules.yaml"],
    }[command]
    refused = mapper(*args, cwd=tmp_path)
    assert refused.returncode == 2 and "--trust-pickle" in refused.stderr
    trusted = mapper(*args, "--trust-pickle", cwd=tmp_path)
    assert trusted.returncode == 0, trusted.stderr
    warnings = [line for line in trusted.stderr.splitlines() if "trust_pickle" in line]
    assert len(warnings) == 1 and warnings[0].startswith("mapper: warning: ") and "c.pt" in warnings[0]
    assert not [w for w in recwarn if issubclass(w.category, TrustPickleWarning)]  # not a raw Python warning too
