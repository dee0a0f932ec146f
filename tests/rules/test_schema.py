"""The rules JSON Schema: shipped as package data, self-describing, strict, and readable when it complains."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from mapper_core.rules import schema
from mapper_core.rules.parse import parse

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parents[1] / "fixtures" / "rules"


def walk(node, where="#"):
    """Every sub-schema with its location."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from walk(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{where}/{i}")


def test_schema_is_found_through_importlib_resources():
    resource = resources.files("mapper_core.rules").joinpath("schemas").joinpath("mapping-rules.schema.json")
    assert resource.is_file()
    assert json.loads(resource.read_text(encoding="utf-8")) == schema.load_schema()


def test_top_level_schema_path_is_the_package_data():
    top = ROOT / "schemas" / "mapping-rules.schema.json"
    assert top.is_file()
    assert json.loads(top.read_text(encoding="utf-8")) == schema.load_schema()


def test_schema_is_valid_draft_2020_12_with_id():
    s = schema.load_schema()
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert s["$id"].startswith("https://") and s["$id"].endswith("mapping-rules.schema.json")
    Draft202012Validator.check_schema(s)
    assert s["required"] == ["version", "rules"]


def test_every_property_has_a_description():
    missing = [
        f"{where}/properties/{name}"
        for where, node in walk(schema.load_schema())
        for name, prop in node.get("properties", {}).items()
        if isinstance(node.get("properties"), dict) and not (isinstance(prop, dict) and prop.get("description"))
    ]
    assert missing == []


def test_every_object_is_closed():
    """Records forbid unknown keys; maps (names chosen by the user) type every value instead."""
    problems = []
    for where, node in walk(schema.load_schema()):
        if node.get("type") != "object":
            continue
        extra = node.get("additionalProperties")
        if "properties" in node and extra is not False:
            problems.append(f"{where}: record without additionalProperties: false")
        if "properties" not in node and not isinstance(extra, dict):
            problems.append(f"{where}: map without a schema for its values")
    assert problems == []


def test_template_syntax_is_documented_in_the_schema():
    rule = schema.load_schema()["$defs"]["rule"]["properties"]
    for form in ("{N}", "{name}", "{N+K}", "{N-K}", "{N|table}", "{{", "}}"):
        assert form in rule["target"]["description"], form
    assert "{N|table}" in rule["tables"]["description"]


@pytest.mark.parametrize("name", ["good.yaml", "good.json"])
def test_good_fixtures_pass_plain_jsonschema(name):
    parsed = parse((FIXTURES / name).read_text(), name, "json" if name.endswith("json") else "yaml")
    Draft202012Validator(schema.load_schema()).validate(parsed.data)
    assert schema.validate(parsed.data) == []


def test_unknown_key_issue_points_at_the_key_and_lists_allowed_keys():
    issues = schema.validate({"version": 1, "rules": [{"match": "a", "target": "b", "taget": "c"}]})
    assert issues == [schema.SchemaIssue(
        ("rules", 0, "taget"),
        "unknown key 'taget' (did you mean 'target'?); allowed keys here: match, target, on_shape_mismatch, tables, transform, on_kind_mismatch",
        at_key=True,
    )]


def test_every_unknown_key_is_its_own_issue():
    issues = schema.validate({"version": 1, "rules": [], "extra": 1, "more": 2})
    assert [i.path for i in issues] == [("extra",), ("more",)]


def test_any_of_reports_best_match_and_count():
    (issue,) = schema.validate({"version": 1, "rules": [], "param_groups": {"g": {"default": False}}})
    assert issue.path == ("param_groups", "g")
    assert "none of the 2 allowed forms" in issue.message and "closest:" in issue.message


def test_bad_group_name_points_at_the_key():
    (issue,) = schema.validate({"version": 1, "rules": [], "freeze": {"bad name": ["x"]}})
    assert issue.path == ("freeze", "bad name") and issue.at_key


@pytest.mark.parametrize(("data", "path", "words"), [
    ({"version": 1, "rules": {}}, ("rules",), "expected a list"),
    ({"version": 1, "rules": [{"match": "a", "target": "b", "on_shape_mismatch": "ignore"}]},
     ("rules", 0, "on_shape_mismatch"), 'expected one of "error", "skip"'),
    ({"version": 1, "rules": [], "param_groups": {"g": {"default": True, "betas": [0.9]}}},
     ("param_groups", "g", "betas"), "exactly 2 items"),
    ({"version": 1, "rules": [], "param_groups": {"g": {"default": True, "lr": 0}}},
     ("param_groups", "g", "lr"), "> 0"),
    ({"version": 1, "rules": [{"match": "", "target": "b"}]}, ("rules", 0, "match"), "must not be empty"),
])
def test_readable_messages(data, path, words):
    issues = schema.validate(data)
    assert [i.path for i in issues] == [path]
    assert words in issues[0].message
