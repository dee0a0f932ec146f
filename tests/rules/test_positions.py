"""The position-keeping parse: same data as the standard parsers, plus the line of every value."""
from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mapper_core.errors import RulesError
from mapper_core.rules.parse import parse
from mapper_core.rules.positions import MAX_INT_DIGITS, json_path
from mapper_core.rules.safe_yaml import YAML12_FLOAT, YAML12_FLOAT_FIRST

JSON_TEXT = """{
  "version": 1,
  "rules": [
    {"match": "a",
     "target": "b"},
    {
      "match": "c",
      "target": "d"
    }
  ],
  "freeze": {"my group": ["x"]}
}"""

YAML_TEXT = """\
version: 1
rules:
  - match: a
    target: b
  -
    match: c
    target: d
freeze: {"my group": [x]}
"""


@pytest.mark.parametrize(("fmt", "text"), [("json", JSON_TEXT), ("yaml", YAML_TEXT)])
def test_same_data_as_the_standard_parsers(fmt, text):
    expected = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    assert parse(text, "f", fmt).data == expected


def test_json_lines_of_values_and_keys():
    p = parse(JSON_TEXT, "f.json", "json")
    assert p.line(("version",)) == 2
    assert p.line(("rules", 0)) == 4
    assert p.line(("rules", 0, "target")) == 5
    assert p.line(("rules", 1)) == 6 and p.line(("rules", 1, "match")) == 7
    assert p.line(("freeze", "my group", 0)) == 11
    assert p.line(("rules", 1, "nope")) == 6  # nearest located parent
    assert p.line(("rules", 1), key=True) == 6


def test_yaml_lines_of_values_and_keys():
    p = parse(YAML_TEXT, "f.yaml", "yaml")
    assert p.line(("version",)) == 1
    assert p.line(("rules", 0)) == 3 and p.line(("rules", 0, "target")) == 4
    assert p.line(("rules", 1, "match")) == 6
    assert p.line(("freeze",), key=True) == 8


def test_json_path_format():
    assert json_path(()) == "$"
    assert json_path(("rules", 2, "target")) == "$.rules[2].target"
    assert json_path(("freeze", "my group", 0)) == '$.freeze["my group"][0]'
    assert json_path(("tables", "a-b")) == "$.tables.a-b"


@pytest.mark.parametrize("text", ["{'a': 1}", '{"a": NaN}', '{"a": 1} // c', '{"a": 01}', "[1,]", '{"a" 1}', "[1 2]"])
def test_json_is_strict(text):
    with pytest.raises(RulesError) as info:
        parse(text, "f.json", "json")
    assert info.value.problems[0].line == 1 and "JSON syntax error" in info.value.problems[0].message


def test_json_error_gives_line_and_column():
    with pytest.raises(RulesError) as info:
        parse('{\n  "a": 1,\n  "b" 2\n}', "f.json", "json")
    (problem,) = info.value.problems
    assert problem.line == 3 and "column 7" in problem.message


# Integers of more than MAX_INT_DIGITS digits are refused on purpose (json.loads reads them).
_INTS = st.integers(-(10**MAX_INT_DIGITS) + 1, 10**MAX_INT_DIGITS - 1)
json_values = st.recursive(
    st.none() | st.booleans() | _INTS | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(json_values, st.sampled_from([None, 1, 2]))
def test_json_parse_agrees_with_json_loads(value, indent):
    text = json.dumps(value, indent=indent)
    assert parse(text, "f.json", "json").data == json.loads(text)


_STRING_CHARS = st.characters(max_codepoint=0x7F) | st.sampled_from(["é", "€", "\ud800", "\U0001F600"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.text(alphabet=_STRING_CHARS, max_size=6), st.sampled_from(["raw", "escaped", "ascii"])),
                max_size=4))
def test_json_strings_read_as_json_loads_reads_them(strings):
    """Raw control characters, backslashes and quotes too (a string with none of them is read by slicing)."""
    written = [f'"{t}"' if how == "raw" else json.dumps(t, ensure_ascii=how == "ascii") for t, how in strings]
    text = '{"k": [' + ", ".join(written) + "]}"
    try:
        expected = json.loads(text)
    except json.JSONDecodeError:
        with pytest.raises(RulesError):
            parse(text, "f.json", "json")
        return
    assert parse(text, "f.json", "json").data == expected


class _QuoteYaml12Floats(yaml.SafeDumper):
    """safe_dump, but quoting strings such as '1e-3' that our loader reads as YAML 1.2 floats.

    This is the one intended difference from yaml.safe_load (YAML 1.1, where `1e-3` is text),
    so the comparison below uses texts on which both readings agree.
    """


_QuoteYaml12Floats.add_implicit_resolver("tag:yaml.org,2002:float", YAML12_FLOAT, YAML12_FLOAT_FIRST)


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_yaml_parse_agrees_with_safe_load(value):
    text = yaml.dump(value, Dumper=_QuoteYaml12Floats)
    assert parse(text, "f.yaml", "yaml").data == yaml.safe_load(text)


@pytest.fixture(params=["libyaml", "pure-python"])
def yaml_backend(request, monkeypatch):
    """Run a test with PyYAML's libyaml event parser and again with its pure-Python one."""
    from mapper_core.rules import safe_yaml

    if request.param == "pure-python":
        monkeypatch.setattr(yaml, "__with_libyaml__", False)
    elif not yaml.__with_libyaml__:
        pytest.skip("PyYAML was built without libyaml")
    safe_yaml._make_loader.cache_clear()
    yield request.param
    safe_yaml._make_loader.cache_clear()


def test_both_yaml_backends_give_data_lines_and_refusals(yaml_backend):
    p = parse(YAML_TEXT, "f.yaml", "yaml")
    assert p.data == yaml.safe_load(YAML_TEXT) and p.line(("rules", 1, "target")) == 7
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [" + ", ".join([f"*{prev}"] * 10) + "]\n" for prev, n in zip("abcdefg", "bcdefgh")
    )
    with pytest.raises(RulesError, match="alias bomb"):
        parse(bomb, "bomb.yaml", "yaml")
    with pytest.raises(RulesError, match="nest"):
        parse("a: " + "[" * 300 + "]" * 300, "deep.yaml", "yaml")
    with pytest.raises(RulesError) as info:
        parse("a: [1\nb: 2\n", "bad.yaml", "yaml")
    assert info.value.problems[0].line in (2, 3) and "YAML syntax error" in info.value.problems[0].message
    tagged = parse("a: !!python/name:os.system ''\n", "tag.yaml", "yaml")
    assert tagged.data == {"a": None} and "not allowed" in tagged.problems[0].message


def test_yaml_reads_yaml_1_2_floats_without_changing_pyyaml(yaml_backend):
    text = "a: 1e-3\nb: 1E5\nc: -2.5e+4\nd: .5\ne: -.5\nf: 089\ng: '1e-3'\nh: 12\n1e3: key\n"
    data = parse(text, "f.yaml", "yaml").data
    assert data == {"a": 0.001, "b": 100000.0, "c": -25000.0, "d": 0.5, "e": -0.5,
                    "f": "089", "g": "1e-3", "h": 12, "1e3": "key"}
    assert type(data["h"]) is int
    assert yaml.safe_load("a: 1e-3") == {"a": "1e-3"}  # the resolver was added to our loader only
    assert parse("a: 1e999\n", "f.yaml", "yaml").problems  # an overflow is refused, not read as inf
