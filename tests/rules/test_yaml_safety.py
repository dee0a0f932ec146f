"""Rules files are data: safe YAML (no tags, no alias bombs, bounded nesting), light imports."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mapper_core.errors import RulesError
from mapper_core.rules import load_rules
from mapper_core.rules.key_pattern import KeyPattern
from rules_problems import problems_of  # tests/helpers
from cli_runner import python_process  # tests/helpers

FIXTURES = Path(__file__).parents[1] / "fixtures" / "rules"


def test_python_tag_refused_and_nothing_runs(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    calls = []
    monkeypatch.setattr(os, "system", lambda cmd: calls.append(cmd) or 0)
    path = tmp_path / "evil.yaml"
    path.write_text(
        "version: 1\nrules:\n"
        f"  - match: !!python/object/apply:os.system ['touch {marker}']\n"
        "    target: x\n"
    )
    with pytest.raises(RulesError) as info:
        load_rules(path)
    (problem,) = info.value.problems  # the tag, and no second complaint about the replaced value
    assert (problem.line, problem.path) == (3, "$.rules[0].match")
    assert "!!python/object/apply:os.system" in problem.message and "not allowed" in problem.message
    assert calls == [] and not marker.exists()


@pytest.mark.parametrize("value", [
    "!custom x", "!!binary aGk=", "!!set {a, b}", "!!python/name:os.system ''",
    "!!python/object:collections.OrderedDict {}", "!!omap [a: 1]",
])
def test_non_standard_tags_refused_with_line(value):
    (problem,) = problems_of(f"version: 1\nrules: []\nskip:\n  - {value}\n")
    assert (problem.line, problem.path) == (4, "$.skip[0]") and "tag" in problem.message


def test_billion_laughs_refused():
    lines = ["version: 1", "rules: []", 'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]")
    problems = problems_of("\n".join(lines) + "\n")
    assert len(problems) == 1 and "alias bomb" in problems[0].message


def test_too_many_alias_uses_refused():
    text = "version: 1\nrules: []\nskip: [&a 'x', " + ", ".join(["*a"] * 1001) + "]\n"
    (problem,) = problems_of(text)
    assert "alias uses" in problem.message and problem.line == 3


def test_recursive_alias_refused():
    (problem,) = problems_of("version: 1\nrules: &r\n  - *r\n")
    assert "cycle" in problem.message


@pytest.mark.parametrize(("filename", "text"), [
    ("deep.yaml", "version: 1\nrules: " + "[" * 500 + "]" * 500 + "\n"),
    ("deep.json", '{"version": 1, "rules": ' + "[" * 500 + "]" * 500 + "}"),
])
def test_deep_nesting_refused(filename, text):
    (problem,) = problems_of(text, filename)
    assert "nest" in problem.message


def test_rules_module_keeps_heavy_imports_out():

    code = "import sys, mapper_core.rules; print('torch' in sys.modules, 'jsonschema' in sys.modules)"
    out = python_process(code, check=True).stdout
    assert out.split() == ["False", "False"]


def test_compiled_patterns_are_the_ones_checked():
    rs = load_rules(FIXTURES / "good.yaml")
    assert all(isinstance(r.pattern, KeyPattern) and isinstance(r.pattern.regex, re.Pattern) for r in rs.rules)
    assert rs.rules[0].pattern.fullmatch("netcnnaud.0.weight")
