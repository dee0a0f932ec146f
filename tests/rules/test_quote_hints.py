"""An unquoted YAML value read as a mapping, an alias or a boolean is named with its quoted form (torch-free)."""
from __future__ import annotations

import pytest

from mapper_core.rules import parse_rules
from rules_problems import problems_of  # tests/helpers

HEAD = "version: 1\nrules:\n"


@pytest.mark.parametrize("body, line, said", [
    ("  - match: conv(\\d+)\\.weight\n    target: {1}.weight\n", 4,
     "starts with '{', which YAML reads as the start of a mapping: quote it, target: '{1}.weight'"),
    ("  - match: *.weight\n    target: x\n", 3,
     "starts with '*', which YAML reads as an alias (*name): quote it, - match: '*.weight'"),
    ("  - match: 'a'\n    target: b\nskip:\n  - *.bias\n", 6, "quote it, - '*.bias'"),
    ("  - match: 'a'\n    target: @x\n", 4, "a reserved character: quote it, target: '@x'"),
])
def test_syntax_errors_from_unquoted_values_show_the_quoted_line(body, line, said):
    [problem] = problems_of(HEAD + body)
    assert problem.line == line and "YAML syntax error" in problem.message and said in problem.message


@pytest.mark.parametrize("body, said", [
    ("  - match: 'conv(\\d+)'\n    target: {1}\n", "expected a string, got a mapping; YAML reads the unquoted {1} as "
                                                   "a mapping: quote it, target: '{1}'"),
    ("  - match: 'a'\n    target: 'b'\n    on_shape_mismatch: no\n", "got false; YAML reads the unquoted word no as "
                                                                      "false, not as text: quote words, "
                                                                      "on_shape_mismatch: 'no'"),
    ("  - match: 'a'\n    target: 'b'\n    on_kind_mismatch: Off\n", "unquoted word Off as false"),
    ("  - match: [a]\n    target: 'b'\n", "got a list of 1; YAML reads the unquoted [a] as a list: quote it, - match: '[a]'"),
])
def test_type_errors_from_unquoted_values_show_the_quoted_line(body, said):
    problems = problems_of(HEAD + body)
    assert any(said in p.message for p in problems), [p.message for p in problems]


def test_no_hint_where_a_mapping_or_list_is_right():
    [problem] = problems_of(HEAD + "  - match: 'a'\n    target: 'b'\n    tables: {ab: {'1': a}\n")
    assert "quote it" not in problem.message  # a broken flow mapping under tables: is not a quoting mistake
    ok = parse_rules(HEAD + "  - match: 'a(1)'\n    target: 'b{1|ab}'\n    tables: {ab: {'1': a}}\n"
                     "param_groups:\n  g: {match: [b.*], default: true}\n", "ok.yaml")
    assert ok.rules[0].target == "b{1|ab}"


def test_json_rules_get_no_yaml_hint():
    problems = problems_of('{"version": 1, "rules": [{"match": "a", "target": {"1": null}}]}', "r.json")
    assert not any("YAML" in p.message for p in problems)


def test_a_quoted_glob_is_shown_as_the_regular_expression_it_meant():
    [problem] = problems_of(HEAD + "  - match: '*.weight'\n    target: 'b'\n")
    assert "nothing to repeat" in problem.message and problem.line == 3
    assert "not globs: '*.weight' is written '.*\\.weight'" in problem.message
    [other] = problems_of(HEAD + "  - match: 'a(b'\n    target: 'b'\n")
    assert "glob" not in other.message  # another regex mistake gets no glob advice


def test_a_glob_written_with_regex_escapes_keeps_them():
    [problem] = problems_of(HEAD + "  - match: '*\\.weight'\n    target: 'b'\n")
    assert "is written '.*\\.weight'" in problem.message and "\\\\" not in problem.message
