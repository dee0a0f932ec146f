"""Loading rules files: one data model from YAML and JSON, every problem with its line, safe YAML."""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from mapper_core.rules.positions import MAX_BYTES
from mapper_core.errors import BadInputError, Problem, RulesError
from mapper_core.rules import load_rules, parse_rules
from rules_problems import problems_of  # tests/helpers

FIXTURES = Path(__file__).parents[1] / "fixtures" / "rules"


def content(rs):
    """A RuleSet without where it came from (lines, origin, digest), for comparing YAML with JSON."""
    return dataclasses.replace(
        rs,
        rules=tuple(dataclasses.replace(r, line=None) for r in rs.rules),
        skip=tuple(dataclasses.replace(s, line=None) for s in rs.skip),
        origin=None,
        sha256=None,
    )


# ---------------------------------------------------------------- good files


def test_yaml_and_json_equivalents_give_equal_rulesets():
    from_yaml = load_rules(FIXTURES / "good.yaml")
    from_json = load_rules(str(FIXTURES / "good.json"))
    assert content(from_yaml) == content(from_json)
    assert len(from_yaml.rules) == 4
    assert from_yaml.rules[0] != from_json.rules[1]  # the comparison can fail


def test_origin_and_digest_name_the_file():
    path = FIXTURES / "good.yaml"
    rs = load_rules(path)
    assert rs.origin == str(path)
    assert rs.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_good_file_fields():
    rs = load_rules(FIXTURES / "good.yaml")
    assert (rs.name, rs.version) == ("example", 1)
    assert rs.description.startswith("Trunks move over")
    assert [r.index for r in rs.rules] == [0, 1, 2, 3]
    assert [r.line for r in rs.rules] == [6, 8, 11, 13]
    assert rs.rules[1].on_shape_mismatch == "skip" and rs.rules[0].on_shape_mismatch == "error"
    assert [s.match for s in rs.skip] == [r"netfc(aud|lip)\..*"] and rs.skip[0].line == 18
    assert rs.freeze_group("pretrained_conv").matches("audio_encoder.conv_layers.0.weight")
    groups = {g.name: g for g in rs.param_groups}
    assert list(groups) == ["pretrained_conv", "new_layers"]  # file order: first match wins
    assert groups["pretrained_conv"].options == {"lr": 1.0e-5}
    assert groups["new_layers"].default and groups["new_layers"].match == ()
    assert groups["new_layers"].options == {"lr": 1.0e-3, "weight_decay": 0.01, "betas": (0.9, 0.999)}


def test_renumbering_and_tables_render():
    rs = load_rules(FIXTURES / "good.json")
    head, proj = rs.rules[2], rs.rules[3]
    assert head.apply("head.0.weight") == "head.layers.1.weight"
    assert head.apply("head.11.bias") == "head.layers.12.bias"
    assert proj.apply("proj.in.weight") == "projection.input.weight"
    assert proj.apply("proj.out.bias") == "projection.output.bias"
    assert proj.apply("proj.mid.bias") is None  # not in the table: the rule does not take it
    assert rs.rules[1].apply("netcnnlip.3.weight") == "video_encoder.conv_layers.3.weight"


def test_negative_shift_and_named_offsets():
    rs = parse_rules(
        "version: 1\nrules:\n  - match: 'b\\.(?P<n>\\d+)'\n    target: 'c.{n-1}'\n", "shift.yaml"
    )
    assert rs.rules[0].apply("b.3") == "c.2"
    assert rs.rules[0].apply("b.0") is None


def test_name_defaults_to_file_stem_and_lists_default_empty():
    rs = parse_rules('{"version": 1, "rules": []}', "some/dir/minimal.json")
    assert rs.name == "minimal"
    assert (rs.rules, rs.skip, rs.freeze, rs.param_groups) == ((), (), (), ())


@pytest.mark.parametrize(
    ("filename", "text"),
    [
        ("rules.txt", '{"version": 1, "rules": [{"match": "a", "target": "b"}]}'),
        ("rules.txt", "version: 1\nrules: [{match: a, target: b}]\n"),
        ("rules", "\n\n  {\"version\": 1, \"rules\": [{\"match\": \"a\", \"target\": \"b\"}]}"),
    ],
)
def test_format_guessed_from_text_when_suffix_unknown(filename, text):
    assert parse_rules(text, filename).rules[0].target == "b"


def test_explicit_format_overrides_suffix():
    text = "version: 1\nrules: []\n"
    assert parse_rules(text, "rules.json", fmt="yaml").version == 1
    with pytest.raises(RulesError) as info:
        parse_rules(text, "rules.yaml", fmt="json")
    assert "JSON syntax error" in info.value.problems[0].message
    with pytest.raises(ValueError):
        parse_rules(text, "rules.yaml", fmt="toml")


def test_unknown_suffix_file_is_read(tmp_path):
    path = tmp_path / "rules.conf"
    path.write_text("version: 1\nrules: [{match: 'a', target: 'b'}]\n")
    assert load_rules(path).rules[0].match == "a"


def test_yaml_aliases_and_merge_keys_work_for_ordinary_use():
    text = """\
version: 1
rules: []
freeze:
  conv: &conv ['enc\\.conv\\..*']
  also_conv: *conv
param_groups:
  slow: &opts {match: ['a\\..*'], lr: 0.1, weight_decay: 0.01}
  fast: {<<: *opts, match: ['b\\..*'], lr: 1.0}
"""
    rs = parse_rules(text, "alias.yaml")
    assert rs.freeze[0].match == rs.freeze[1].match == (r"enc\.conv\..*",)
    fast = rs.param_groups[1]
    assert fast.match == (r"b\..*",) and fast.options == {"lr": 1.0, "weight_decay": 0.01}


def test_yaml_keys_stay_the_text_written():
    text = "version: 1\nrules:\n  - match: '(\\d+)'\n    target: 'x.{1|t}'\n    tables: {t: {0: zero, yes: y}}\n"
    rule = parse_rules(text, "keys.yaml").rules[0]
    assert rule.tables == {"t": {"0": "zero", "yes": "y"}}
    assert rule.apply("0") == "x.zero"


# ---------------------------------------------------------------- problems


@pytest.mark.parametrize(("name", "lines"), [("three-mistakes.yaml", [7, 8, 11]), ("three-mistakes.json", [7, 10, 15])])
def test_three_planted_mistakes_reported_together_with_lines(name, lines):
    path = FIXTURES / name
    with pytest.raises(RulesError) as info:
        load_rules(path)
    problems = info.value.problems
    assert [p.line for p in problems] == lines
    assert [p.path for p in problems] == [
        "$.rules[0].on_shape_mismtach", "$.rules[1].match", "$.rules[2].target",
    ]
    unknown, regex, template = (p.message for p in problems)
    assert "unknown key 'on_shape_mismtach'" in unknown and "did you mean 'on_shape_mismatch'" in unknown
    assert "allowed keys here: match, target, on_shape_mismatch, tables" in unknown
    assert "invalid regular expression" in regex and "position 11" in regex
    assert "{kind}" in template and "lacks" in template
    assert all(p.file == str(path) for p in problems)
    assert isinstance(info.value, BadInputError) and info.value.exit_code == 2
    text = str(info.value)
    assert text.startswith("3 problems in rules:")
    assert f"{path}:{lines[1]}: $.rules[1].match: invalid regular expression" in text


def test_problem_string_form():
    p = Problem("r.yaml", 4, "$.rules[2].target", "bad")
    assert str(p) == "r.yaml:4: $.rules[2].target: bad"


def test_every_kind_of_semantic_problem_at_once():
    text = """\
version: 1
rules:
  - match: 'a(\\d+)'
    target: 'x.{1|missing}'
  - match: 'b'
    target: 'x.{oops'
  - match: 'c'
    target: 'x.{3}'
skip: ['ok', '[unclosed']
freeze:
  g: ['(']
param_groups:
  one: {default: true}
  two: {default: true, match: ['*']}
"""
    found = {(p.line, p.path) for p in problems_of(text)}
    assert found == {
        (4, "$.rules[0].target"),  # table not defined
        (6, "$.rules[1].target"),  # template syntax
        (8, "$.rules[2].target"),  # group 3 of 0
        (9, "$.skip[1]"),
        (11, "$.freeze.g[0]"),
        (14, "$.param_groups.two.default"),  # second default
        (14, '$.param_groups.two.match[0]'),
    }


def test_messages_say_what_to_do():
    text = (
        "version: 1\nrules:\n  - match: 'a(\\d+)'\n    target: 'x.{1|t}'\n"
        "param_groups:\n  a: {default: true}\n  b: {default: true}\n"
    )
    messages = [p.message for p in problems_of(text)]
    assert any("define it under this rule's `tables:`" in m for m in messages)
    assert any("keep it on one group" in m for m in messages)


def test_param_group_without_match_or_default_shows_best_alternative():
    (problem,) = problems_of("version: 1\nrules: []\nparam_groups:\n  g: {lr: 0.1}\n")
    assert problem.path == "$.param_groups.g" and problem.line == 4
    assert "none of the 2 allowed forms" in problem.message
    assert "closest: missing required key" in problem.message


def test_missing_required_keys():
    problems = problems_of("version: 1\nrules:\n  - target: x\n")
    assert [(p.line, p.path) for p in problems] == [(3, "$.rules[0]")]
    assert "missing required key 'match'" in problems[0].message
    (top,) = problems_of("version: 1\n")
    assert top.path == "$" and "'rules'" in top.message


def test_wrong_types_suggest_quotes():
    (problem,) = problems_of("version: 1\nrules:\n  - match: a\n    target: yes\n")
    assert problem.line == 4 and "got true" in problem.message and "quotes" in problem.message


def test_duplicate_keys_yaml():
    problems = problems_of("version: 1\nrules:\n  - match: a\n    target: b\n    match: c\n")
    assert [(p.line, p.path) for p in problems] == [(5, "$.rules[0].match")]
    assert "duplicate key 'match' (first at line 3)" in problems[0].message


def test_duplicate_keys_json():
    text = '{"version": 1,\n "rules": [],\n "rules": []}'
    (problem,) = problems_of(text, "dup.json")
    assert (problem.line, problem.path) == (3, "$.rules") and "first at line 2" in problem.message


@pytest.mark.parametrize(("filename", "text"), [
    ("v.yaml", "version: 2\nrules:\n  - {frobnicate: 1}\n"),
    ("v.json", '{\n"version": 2, "rules": [{"frobnicate": 1}]}'),
])
def test_other_versions_refused_clearly(filename, text):
    (problem,) = problems_of(text, filename)
    assert (problem.line, problem.path) == (2 if filename.endswith("json") else 1, "$.version")
    assert "reads rules version 1" in problem.message and "version 2" in problem.message


def test_version_must_be_the_integer_one():
    (problem,) = problems_of("version: '1'\nrules: []\n")
    assert problem.path == "$.version" and "integer 1" in problem.message
    (problem,) = problems_of("version: true\nrules: []\n")
    assert problem.path == "$.version"


@pytest.mark.parametrize(("filename", "text", "line"), [
    ("v.yaml", "version: 1.0\nrules: []\n", 1),
    ("v.yaml", "rules: []\nversion: 1e0\n", 2),
    ("v.json", '{"rules": [],\n "version": 1.0}', 2),
    ("v.json", '{"version": 1.5, "rules": []}', 1),
])
def test_decimal_version_refused(filename, text, line):
    (problem,) = problems_of(text, filename)
    assert (problem.line, problem.path) == (line, "$.version")
    assert "integer 1" in problem.message and "reads rules version 1" in problem.message


def test_learning_rates_in_exponent_notation_are_numbers():
    text = ("version: 1\nrules: []\nfreeze: {g: ['a']}\nparam_groups:\n  all: {default: true, lr: 1e-3, "
            "weight_decay: 5E-4}\nschedule:\n  - {epoch: 2, unfreeze: g, lr: 2.5e-5}\n")
    rs = parse_rules(text, "lr.yaml")
    assert rs.param_groups[0].options == {"lr": 0.001, "weight_decay": 0.0005}
    assert rs.schedule[0].lr == 2.5e-5


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- a\n- b\n", "just text\n"])
def test_top_level_must_be_a_mapping(text):
    (problem,) = problems_of(text)
    assert problem.path == "$" and "`version: 1`" in problem.message


def test_yaml_syntax_error_has_line():
    (problem,) = problems_of("version: 1\nrules:\n  - match: [a\n    target: b\n")
    assert problem.line is not None and problem.line >= 3 and "YAML syntax error" in problem.message


def test_double_quoted_regex_hint():
    (problem,) = problems_of('version: 1\nrules:\n  - match: "a\\d"\n    target: b\n')
    assert problem.line == 3 and "single quotes" in problem.message


def test_json_syntax_errors_have_lines():
    (problem,) = problems_of('{"version": 1,\n "rules": [\n  {"match": "a", "target": "b",}\n]}', "r.json")
    assert problem.line == 3 and "no comma" in problem.message
    (problem,) = problems_of('{"version": 1,\n "rules": [{"match": "a\\d", "target": "b"}]}', "r.json")
    assert problem.line == 2 and "doubled" in problem.message


# ---------------------------------------------------------------- files


def test_missing_file(tmp_path):
    with pytest.raises(RulesError) as info:
        load_rules(tmp_path / "nope.yaml")
    (problem,) = info.value.problems
    assert problem.file == str(tmp_path / "nope.yaml") and "cannot read" in problem.message


def test_directory_is_not_a_rules_file(tmp_path):
    with pytest.raises(RulesError, match="is a directory, not a regular file"):
        load_rules(tmp_path)


def test_bad_encoding_names_the_line(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_bytes(b"version: 1\nrules:\n  - match: '\xff'\n")
    with pytest.raises(RulesError) as info:
        load_rules(path)
    (problem,) = info.value.problems
    assert problem.line == 3 and "UTF-8" in problem.message


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "r.json"
    path.write_bytes(b'\xef\xbb\xbf{"version": 1, "rules": []}')
    assert load_rules(path).version == 1


def test_oversized_file_refused_without_reading(tmp_path):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as fh:  # sparse: no 10 MB written
        fh.truncate(MAX_BYTES + 1)
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert "limited to" in info.value.problems[0].message
