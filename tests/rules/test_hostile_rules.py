"""Hostile rules files end in a located problem (exit 2), never a traceback, a hang or a runaway."""
from __future__ import annotations

import json
import os

import pytest

import yaml

from mapper_core.errors import RulesError
from mapper_core.rules import parse_rules
from mapper_core.rules.positions import MAX_EXPANDED_CHARS, MAX_PATTERN_CHARS, MAX_PATTERNS, MAX_VALUES
from rules_problems import problems_of  # tests/helpers
from cli_runner import mapper  # tests/helpers


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "rules.yaml"
    os.mkfifo(fifo)  # opening it for reading would block until a writer came
    done = mapper("validate", fifo)
    assert done.returncode == 2 and "is a FIFO (named pipe), not a regular file" in done.stderr


@pytest.mark.parametrize("text, name, line", [
    ('{"version": 1, "rules": [{"match": "a", "target": "b", "transform": [{"pad": {"dim": 0, "after": '
     + "9" * 5000 + "}}]}]}", "r.json", 1),
    ("version: 1\nrules:\n  - match: a\n    target: b\n    transform: [{pad: {dim: 0, after: " + "9" * 5000 + "}}]\n",
     "r.yaml", 5),
])
def test_integers_past_the_digit_limit_are_located(text, name, line):
    [problem] = problems_of(text, name)
    assert problem.line == line and "5,000 digits" in problem.message


def test_template_shift_of_thousands_of_digits():
    [problem] = problems_of("version: 1\nrules:\n  - match: '(\\d+)'\n    target: '{1+" + "9" * 5000 + "}'\n")
    assert problem.line == 4 and problem.path == "$.rules[0].target" and "5,000 digits" in problem.message


def test_alias_expansion_is_bounded_by_text_size():
    long = "x" * (MAX_EXPANDED_CHARS // 100 + 1)
    text = f'version: 1\ndescription: &a "{long}"\nskip:\n' + "  - *a\n" * 101 + "rules:\n  - {match: a, target: b}\n"
    [problem] = problems_of(text)
    assert "aliases expand to more than" in problem.message and "characters" in problem.message


def test_pattern_length_limit():
    text = json.dumps({"version": 1, "rules": [{"match": "ab" * MAX_PATTERN_CHARS, "target": "b"}]})
    [problem] = problems_of(text, "r.json")
    assert problem.path == "$.rules[0].match" and f"{2 * MAX_PATTERN_CHARS:,} characters" in problem.message


def test_pattern_count_limit_is_checked_before_each_pattern():
    rules = [{"match": f"k{i}", "target": f"t{i}"} for i in range(MAX_PATTERNS)]
    # freeze patterns sit below the top-level lists, so the parser's entry count lets them through
    text = json.dumps({"version": 1, "rules": rules, "freeze": {"g": ["x"]}})
    [problem] = problems_of(text, "r.json")
    assert f"{MAX_PATTERNS + 1:,} patterns" in problem.message


@pytest.mark.parametrize("pattern", ["(" * 3000 + "a" + ")" * 3000, "(?:" * 900 + "a" + ")" * 900])
def test_deeply_nested_pattern_is_a_problem_not_a_recursion_error(pattern):
    [problem] = problems_of(json.dumps({"version": 1, "rules": [{"match": pattern, "target": "b"}]}), "r.json")
    assert problem.path == "$.rules[0].match"


def _line_of(text: str, needle: str) -> int:
    return text[:text.index(needle)].count("\n") + 1


@pytest.mark.parametrize("name", ["r.yaml", "r.json"])
def test_too_many_list_entries_stop_the_parser_at_the_first_one_past_the_limit(name):
    rules = [{"match": f"k{i}", "target": f"t{i}"} for i in range(MAX_PATTERNS + 500)]
    if name.endswith(".json"):
        text = '{"version": 1, "rules": [\n' + ",\n".join(json.dumps(r) for r in rules) + "\n]}"
    else:
        text = "version: 1\nrules:\n" + "".join(f"  - {{match: {r['match']}, target: {r['target']}}}\n" for r in rules)
    [problem] = problems_of(text, name)
    # the line of entry 20,001: nothing after it was parsed
    assert problem.line == _line_of(text, f"k{MAX_PATTERNS}")
    assert problem.path == "$.rules" and f"more than {MAX_PATTERNS:,} entries" in problem.message


@pytest.mark.parametrize("name", ["r.yaml", "r.json"])
def test_too_many_values_stop_the_parser(name):
    table = {str(i): str(i + 1) for i in range(MAX_VALUES // 2 + 10)}
    doc = {"version": 1, "rules": [{"match": r"a\.(\d+)", "target": "b.{1}", "tables": {"t": table}}]}
    text = json.dumps(doc, indent=1) if name.endswith(".json") else yaml.safe_dump(doc, sort_keys=False)
    [problem] = problems_of(text, name)
    assert f"more than {MAX_VALUES:,} values" in problem.message
    assert problem.line < text.count("\n")  # refused before the end of the file


def test_a_repeated_mistake_is_shown_once_per_screen_not_forty_thousand_times(tmp_path):
    text = "version: 1\nrules:\n" + "".join(f"  - {{source: k{i}, target: t{i}}}\n" for i in range(300))
    with pytest.raises(RulesError) as info:
        parse_rules(text, "r.yaml")
    assert len(info.value.problems) == 600  # unknown key 'source' and missing 'match', per rule
    shown = str(info.value).splitlines()
    assert shown[0] == "600 problems in rules:" and len(shown) == 1 + RulesError.SHOWN + 1
    assert shown[-1].startswith("... and 500 more problems")
    (tmp_path / "r.yaml").write_text(text)
    done = mapper("validate", "--json", tmp_path / "r.yaml")
    assert done.returncode == 2 and len(json.loads(done.stdout)["problems"]) == 600
