"""Top-level ``x-`` keys: allowed by the schema (patternProperties ``^x-``), ignored by the engine, the
home of YAML anchors; any other unknown key is refused as before, with its did-you-mean."""
from __future__ import annotations

import dataclasses
import re
import json

import pytest

from mapper_core.errors import RulesError
from mapper_core.rules import parse_rules
from mapper_core.rules.schema import load_schema

ANCHORED = """\
version: 1
x-lenient: &lenient
  on_shape_mismatch: skip
  on_kind_mismatch: warn
rules:
  - match: 'a\\.(.+)'
    target: 'b.{1}'
    <<: *lenient
  - match: 'c\\.(.+)'
    target: 'd.{1}'
    <<: *lenient
"""

PLAIN = """\
version: 1
rules:
  - match: 'a\\.(.+)'
    target: 'b.{1}'
    on_shape_mismatch: skip
    on_kind_mismatch: warn
  - match: 'c\\.(.+)'
    target: 'd.{1}'
    on_shape_mismatch: skip
    on_kind_mismatch: warn
"""


def without_provenance(ruleset):
    """The RuleSet without what tells two files apart (their digests, the lines of their rules)."""
    rules = tuple(dataclasses.replace(r, line=None) for r in ruleset.rules)
    return dataclasses.replace(ruleset, rules=rules, origin=None, sha256=None)


def test_an_anchor_under_an_x_key_is_shared_and_the_key_ignored():
    anchored = parse_rules(ANCHORED, "r.yaml")
    assert [r.on_shape_mismatch for r in anchored.rules] == ["skip", "skip"]
    assert without_provenance(anchored) == without_provenance(parse_rules(PLAIN, "r.yaml"))


def test_json_takes_x_keys_of_any_value():
    doc = {"version": 1, "rules": [], "x-note": "written by hand", "x-": None, "x-more": [1, {"a": 2}]}
    assert parse_rules(json.dumps(doc), "r.json").rules == ()


def test_other_unknown_keys_are_refused_with_did_you_mean_and_the_x_keys_not_named():
    text = "version: 1\nx-common: {a: 1}\nrulez: []\nrules: []\nX-upper: 1\n"
    with pytest.raises(RulesError) as info:
        parse_rules(text, "r.yaml")
    lines = str(info.value).splitlines()[1:]
    assert len(lines) == 2 and "x-common" not in str(info.value)
    assert lines[0].startswith("r.yaml:3: $.rulez: unknown key 'rulez' (did you mean 'rules'?); allowed keys here: "
                               "version, name, description, rules, skip")
    assert lines[0].endswith(", schedule, and keys matching '^x-'")
    assert lines[1].startswith("r.yaml:5: $.X-upper: unknown key 'X-upper'")


@pytest.mark.parametrize("text, where", [
    ("version: 1\nrules:\n  - {match: a, target: b, x-note: 1}\n", "$.rules[0].x-note"),
    ("version: 1\nrules: []\nparam_groups:\n  g: {default: true, x-note: 1}\n", "$.param_groups.g.x-note"),
])
def test_only_the_top_level_takes_x_keys(text, where):
    with pytest.raises(RulesError, match=rf"r.yaml:\d+: {re.escape(where)}: unknown key 'x-note'"):
        parse_rules(text, "r.yaml")


def test_the_schema_says_so():
    schema = load_schema()
    assert list(schema["patternProperties"]) == ["^x-"] and schema["additionalProperties"] is False
    assert "ignored by the engine" in schema["patternProperties"]["^x-"]["description"]
