"""schema_check's yes/no equals jsonschema's verdict on the rules schema: on every rules file and
example, on documents built from the schema and mutated by hypothesis, and on hand-picked edges.

(tests/conftest.py also compares the two on every rules document the rest of the suite loads.)
If the schema changes, the generator below follows it: it reads types, names, enums and bounds
from the schema itself.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from mapper_core.rules import schema
from mapper_core.rules.parse import parse
from mapper_core.rules.schema_check import Unsupported, compile_schema

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = schema.load_schema()
JSONSCHEMA = Draft202012Validator(SCHEMA)
FAST = compile_schema(SCHEMA)


def agree(data) -> bool:
    """The shared verdict; fails the test when the two disagree."""
    verdict = JSONSCHEMA.is_valid(data)
    assert FAST(data) is verdict, f"schema_check says {not verdict}, jsonschema {verdict}"
    return verdict


# ---------------------------------------------------------------------------- every rules file and example

def _rules_documents() -> list[tuple[str, object]]:
    found = []
    for path in sorted([*ROOT.glob("tests/**/*.y*ml"), *ROOT.glob("tests/**/*.json"), *ROOT.glob("plugins/**/*.y*ml"),
                        *ROOT.glob("plugins/**/rules/*.json")]):
        if ".venv" in path.parts or "schemas" in path.parts:
            continue
        fmt = "json" if path.suffix == ".json" else "yaml"
        found.append((str(path.relative_to(ROOT)), path.read_text(encoding="utf-8"), fmt))
    fence = re.compile(r"^```(yaml|json)[^\n]*\n(.*?)^```", re.M | re.S)
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for m in fence.finditer(page.read_text(encoding="utf-8")):
            body = re.sub(r"^(#|//) file: \S+\n", "", m.group(2))
            found.append((f"{page.relative_to(ROOT)}:{m.start()}", body, m.group(1)))
    documents = []
    for name, text, fmt in found:
        try:
            data = parse(text, name, fmt).data
        except Exception:  # noqa: BLE001 - examples of unreadable files are not documents
            continue
        if isinstance(data, dict) and ("rules" in data or "version" in data):
            documents.append((name, data))
    return documents


DOCUMENTS = _rules_documents()


def test_the_corpus_holds_the_repository_rules_files():
    names = {name for name, _ in DOCUMENTS}
    assert len(DOCUMENTS) >= 15
    assert {"tests/fixtures/rules/good.yaml", "tests/fixtures/rules/three-mistakes.json"} <= names
    assert any(name.startswith("docs/rules.md") for name in names)


@pytest.mark.parametrize(("name", "data"), DOCUMENTS, ids=[name for name, _ in DOCUMENTS])
def test_every_rules_file_and_example(name, data):
    agree(data)


def test_the_rules_schema_compiles():
    """A keyword schema_check lacks would send every document to jsonschema: implement it instead."""
    compile_schema(SCHEMA)
    assert schema._fast_check() is not None


# ---------------------------------------------------------------------------- hand-picked edges

RULE = {"match": "a", "target": "b"}


@pytest.mark.parametrize("data", [
    {"version": 1, "rules": []},
    {"version": 1.0, "rules": []},  # JSON Schema: 1.0 is the integer 1 (load.py refuses it itself)
    {"version": True, "rules": []},
    {"version": 2, "rules": []},
    {"version": "1", "rules": []},
    {"version": 1},
    {"rules": []},
    [],
    None,
    {"version": 1, "rules": [RULE], "freeze": {"g\n": ["x"]}},  # `$` of re.search matches before a final newline
    {"version": 1, "rules": [RULE], "freeze": {"g.h-1": ["x"], "_": ["y"]}},
    {"version": 1, "rules": [RULE], "freeze": {"1g": ["x"]}},
    {"version": 1, "rules": [RULE], "freeze": {"g": []}},
    {"version": 1, "rules": [{**RULE, "tables": {"t": {"0": "1"}}}]},
    {"version": 1, "rules": [{**RULE, "tables": {"t.x": {"0": "1"}}}]},
    {"version": 1, "rules": [{**RULE, "tables": {"t": {"0": 1}}}]},
    {"version": 1, "rules": [{**RULE, "on_shape_mismatch": "skip", "on_kind_mismatch": "warn"}]},
    {"version": 1, "rules": [{**RULE, "on_kind_mismatch": "skip"}]},
    {"version": 1, "rules": [{"match": "", "target": "b"}]},
    {"version": 1, "rules": [{**RULE, "transform": [{"unsqueeze": {"dim": 2}}]}]},
    {"version": 1, "rules": [{**RULE, "transform": [{"unsqueeze": {"dim": 2.0}}]}]},
    {"version": 1, "rules": [{**RULE, "transform": [{"unsqueeze": {"dim": True}}]}]},
    {"version": 1, "rules": [{**RULE, "transform": [{"unsqueeze": {}}]}]},
    {"version": 1, "rules": [{**RULE, "transform": [{"unsqueeze": None}]}]},
    {"version": 1, "rules": [{**RULE, "transform": [{"plug:step": None}]}]},
    {"version": 1, "rules": [{**RULE, "transform": [{"plug:step:x": None}]}]},
    {"version": 1, "rules": [{**RULE, "transform": [{"a": 1, "b": 2}]}]},
    {"version": 1, "rules": [{**RULE, "transform": [{}]}]},
    {"version": 1, "rules": [{**RULE, "transform": [{"reshape": {"shape": [-1, 2]}}]}]},
    {"version": 1, "rules": [{**RULE, "transform": [{"reshape": {"shape": [-2]}}]}]},
    {"version": 1, "rules": [{**RULE, "transform": [{"permute": {"dims": []}}]}]},
    {"version": 1, "rules": [{**RULE, "transform": [{"cast": {"dtype": "F16"}}]}]},
    {"version": 1, "rules": [{**RULE, "transform": [{"cast": {"dtype": "f16"}}]}]},
    {"version": 1, "rules": [{**RULE, "transform": [{"scale": {"factor": True}}]}]},
    {"version": 1, "rules": [{**RULE, "transform": [{"inflate": {"dim": 2, "size": 0}}]}]},
    {"version": 1, "rules": [], "param_groups": {"g": {"default": True, "betas": [0.9, 0.999]}}},
    {"version": 1, "rules": [], "param_groups": {"g": {"default": True, "betas": [0.9, 1]}}},
    {"version": 1, "rules": [], "param_groups": {"g": {"default": True, "betas": [0.9, 1.0]}}},
    {"version": 1, "rules": [], "param_groups": {"g": {"default": True, "betas": [0.9, True]}}},
    {"version": 1, "rules": [], "param_groups": {"g": {"default": True, "betas": [0.9, 0.99, 0.999]}}},
    {"version": 1, "rules": [], "param_groups": {"g": {"default": True, "lr": 0}}},
    {"version": 1, "rules": [], "param_groups": {"g": {"default": True, "lr": 1e-300}}},
    {"version": 1, "rules": [], "param_groups": {"g": {"default": True, "weight_decay": 0}}},
    {"version": 1, "rules": [], "param_groups": {"g": {"default": True, "weight_decay": -0.0}}},
    {"version": 1, "rules": [], "param_groups": {"g": {"default": False}}},
    {"version": 1, "rules": [], "param_groups": {"g": {"default": 1}}},
    {"version": 1, "rules": [], "param_groups": {"g": {"match": ["x"], "default": False}}},
    {"version": 1, "rules": [], "param_groups": {"g": {}}},
    {"version": 1, "rules": [], "schedule": [{"epoch": 0, "unfreeze": "g", "lr_scale": 0.1}]},
    {"version": 1, "rules": [], "schedule": [{"epoch": -1, "unfreeze": "g"}]},
    {"version": 1, "rules": [], "schedule": [{"epoch": 1e300, "unfreeze": "g"}]},
    {"version": 1, "rules": [], "schedule": [{"epoch": math.inf, "unfreeze": "g"}]},
    {"version": 1, "rules": [], "schedule": [{"epoch": 0, "unfreeze": "g", "lr": math.nan}]},
    {"version": 1, "rules": [], "unmatched": "keep"},
    {"version": 1, "rules": [], "unmatched": "Keep"},
    {"version": 1, "rules": [], "unmatched": None},
    {"version": 1, "rules": [], "name": ""},
    {"version": 1, "rules": [], "description": ""},
    {"version": 1, "rules": [], "x-common": {"on_shape_mismatch": "skip"}, "x-": None, "x-note": [1, "a"]},
    {"version": 1, "rules": [], "X-common": 1},  # patterns are case-sensitive
    {"version": 1, "rules": [], "xcommon": 1},
    {"version": 1, "rules": [], " x-common": 1},
    {"version": 1, "rules": [], "a\nx-b": 1},  # re.search without MULTILINE: '^' is the start of the text only
    {"version": 1, "rules": [{**RULE, "x-note": 1}]},  # only the top level takes x- keys
    {"version": 1, "rules": [], "freeze": {"x-a": ["y"]}},
])
def test_edges(data):
    agree(data)


@pytest.fixture
def unchecked(monkeypatch):
    """schema.conforms itself, without tests/conftest.py's comparison with jsonschema."""
    monkeypatch.setattr(schema, "conforms", getattr(schema.conforms, "__wrapped__", schema.conforms))


def test_values_outside_json_get_a_no_and_go_to_jsonschema(unchecked):
    """A Decimal is a number to jsonschema; schema_check does not decide, it says no."""
    from decimal import Decimal

    data = {"version": 1, "rules": [], "param_groups": {"g": {"default": True, "lr": Decimal("0.1")}}}
    assert JSONSCHEMA.is_valid(data) and not FAST(data)
    assert schema.validate(data) == []


def test_keywords_it_does_not_implement_do_not_compile():
    for bad in ({"not": {}}, {"oneOf": [{}]}, {"patternProperties": ["a"]}, {"$ref": "other.json"},
                {"properties": {"a": {"$id": "x"}}}, {"format": "uri"}, {"type": "tuple"}, {"$ref": "#/nowhere"}):
        with pytest.raises(Unsupported):
            compile_schema(bad)


def test_without_the_fast_check_validate_still_answers(unchecked, monkeypatch):
    data = {"version": 1, "rules": [{"match": "a", "target": "b", "taget": "c"}]}
    expected = schema.validate(data)
    monkeypatch.setattr(schema, "_fast_check", lambda: None)
    assert not schema.conforms(data) and not schema.conforms({"version": 1, "rules": []})
    assert schema.validate(data) == expected and schema.validate({"version": 1, "rules": []}) == []


@pytest.mark.parametrize("data", [{}, {"a": 1}, {"ab": 1}, {"ab": "t"}, {"b": 2}, {"b": "t"}, {"ba": 1}, {"ba": []},
                                  {1: 1}, {"a": 1, "c": 1}, "not a mapping"])
def test_pattern_properties_agree_with_jsonschema(data):
    """patternProperties checks each key a pattern finds (re.search), and additionalProperties the keys
    neither `properties` nor a pattern takes."""
    for schema_ in ({"patternProperties": {"^a": {"type": "integer"}, "b$": {"type": "string"}}},
                    {"properties": {"c": {}}, "patternProperties": {"^a": {}}, "additionalProperties": False},
                    {"patternProperties": {"a": {"type": "integer"}}, "additionalProperties": {"type": "string"}}):
        try:
            verdict = Draft202012Validator(schema_).is_valid(data)
        except TypeError:  # jsonschema cannot search a key that is not text
            assert compile_schema(schema_)(data) is False
            continue
        assert compile_schema(schema_)(data) is verdict, (schema_, data)


def test_recursive_references():
    tree = {"$defs": {"node": {"type": "object", "additionalProperties": False,
                               "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}},
            "$ref": "#/$defs/node"}
    check, reference = compile_schema(tree), Draft202012Validator(tree)
    for doc in ({}, {"kids": [{}, {"kids": [{}]}]}, {"kids": [{"kids": [{"x": 1}]}]}, {"kids": [1]}):
        assert check(doc) is reference.is_valid(doc)


# ---------------------------------------------------------------------------- documents from the schema, near misses

def _resolve(node):
    """``node`` with its $ref's target merged in (the node's own keywords win)."""
    while isinstance(node, dict) and "$ref" in node:
        target = SCHEMA
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _strings(node, out: set) -> set:
    """Every name and text the schema mentions (property names, enum values, consts)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("properties", "dependentSchemas"):
                out.update(value)
            elif key in ("enum", "required"):
                out.update(v for v in value if isinstance(v, str))
            _strings(value, out)
    elif isinstance(node, list):
        for value in node:
            _strings(value, out)
    return out


NAMES = sorted(_strings(SCHEMA, set()) | {"", "x", "1", "g\n", "1g", "a b", "a.b", "plug:step", "plug:step:x", "_",
                                          "x-", "x-common", "X-a", "xa", " x-a", "rules\nx-"})
json_scalars = st.one_of(st.sampled_from([None, True, False, 0, 1, -1, 0.5, 2.0, -0.0, 1e300, math.inf, "", "x", "1"]),
                         st.sampled_from(NAMES), st.integers(), st.floats(allow_nan=False), st.text(max_size=4))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.sampled_from(NAMES), st.text(max_size=3)), inner,
                                                 max_size=3)), max_leaves=5)
_REGEX: dict[str, st.SearchStrategy] = {}


def _matching(pattern: str) -> st.SearchStrategy:
    if pattern not in _REGEX:  # building a regex strategy costs more than drawing from it
        _REGEX[pattern] = st.from_regex(pattern, fullmatch=True).filter(lambda s: len(s) < 20)
    return _REGEX[pattern]


def _name(draw, node: dict) -> str:
    """A key for a map (a name the schema's propertyNames mostly allows)."""
    names = _resolve(node.get("propertyNames", {}))
    if "pattern" in names and draw(st.integers(0, 7)):
        return draw(_matching(names["pattern"]))
    return draw(st.one_of(st.sampled_from(NAMES), st.text(max_size=3)))


def _fit(draw, node, path: tuple = (), places: list | None = None):
    """A value that fits ``node``; ``places`` collects (path, schema) of every value made."""
    node = _resolve(node)
    if places is not None:
        places.append((path, node))
    if not isinstance(node, dict) or len(path) > 7:
        return draw(json_values)
    if "const" in node:
        return node["const"]
    if "enum" in node:
        return draw(st.sampled_from(node["enum"]))
    if "anyOf" in node:
        alt = draw(st.sampled_from(node["anyOf"]))
        merged = {k: v for k, v in node.items() if k != "anyOf"}
        return _fit(draw, {**merged, **alt, "properties": {**merged.get("properties", {}),
                                                            **alt.get("properties", {})}}, path, places)
    kind = node.get("type")
    if "dependentSchemas" in node:  # a one-key step mapping: name → its parameters
        name = draw(st.sampled_from([*node["dependentSchemas"], None]))
        if name is None:
            return {_name(draw, node): draw(st.one_of(st.none(), json_values))}
        return {name: _fit(draw, node["dependentSchemas"][name]["properties"][name], (*path, name), places)}
    if kind == "object" or "properties" in node:
        properties, out = node.get("properties", {}), {}
        for name, sub in properties.items():
            if name in node.get("required", ()) or draw(st.integers(0, 2)) == 0:
                out[name] = _fit(draw, sub, (*path, name), places)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for _ in range(draw(st.integers(0, 2))):
                name = _name(draw, node)
                out[name] = _fit(draw, extra, (*path, name), places)
        return out
    if kind == "array":
        low = node.get("minItems", 0)
        count = draw(st.integers(low, max(low, min(node.get("maxItems", 3), 3))))
        return [_fit(draw, node.get("items", {}), (*path, i), places) for i in range(count)]
    if kind == "string":
        if "pattern" in node:
            return draw(_matching(node["pattern"]))
        return draw(st.text(min_size=node.get("minLength", 0), max_size=6))
    if kind in ("integer", "number"):
        low = node.get("minimum", node.get("exclusiveMinimum", -5))
        high = node.get("maximum", node.get("exclusiveMaximum", 100))
        if kind == "number" and draw(st.booleans()):
            return draw(st.floats(low, high, exclude_min="exclusiveMinimum" in node,
                                  exclude_max="exclusiveMaximum" in node))
        return draw(st.integers(math.floor(low) + 1 if "exclusiveMinimum" in node else math.ceil(low),
                                math.ceil(high) - 1 if "exclusiveMaximum" in node else math.floor(high)))
    if kind == "boolean":
        return draw(st.booleans())
    return draw(json_values)


def _miss(draw, node: dict):
    """A value just outside (or just inside) what ``node`` allows: another type, a bound ±, a bad
    name or enum value, a list one item too short or long, a mapping with a key missing or added."""
    kind = node.get("type")
    how = draw(st.sampled_from(["type", "bound", "text"] + ["size"] * 3 * (kind == "array")
                               + ["keys"] * 3 * (kind == "object")))
    if how == "bound":
        bounds = [node[k] for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "const")
                  if isinstance(node.get(k), (int, float))] or [0, 1]
        b = draw(st.sampled_from(bounds))
        return draw(st.sampled_from([b, b - 1, b + 1, b - 0.5, b + 0.5, float(b), b + 1e-9, b - 1e-9, True, False]))
    if how == "text":
        known = [*node.get("enum", ()), node.get("const", "x")]
        text = draw(st.sampled_from([v for v in known if isinstance(v, str)] or ["x"]))
        return draw(st.sampled_from([text + "\n", text.upper(), " " + text, "", draw(st.sampled_from(NAMES))]))
    if how == "size":
        low, high = node.get("minItems", 0), node.get("maxItems", 4)
        count = draw(st.sampled_from([max(low - 1, 0), high + 1, 0]))
        return [_fit(draw, node.get("items", {})) for _ in range(count)]
    if how == "keys":
        base = {k: v for k, v in node.items() if k not in ("const", "enum")}
        value = _fit(draw, {**base, "type": "object"})
        if not isinstance(value, dict):
            return value
        if value and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(value)))
            item = value.pop(key)
            if draw(st.booleans()):
                value[key + "\n" if draw(st.booleans()) else key.upper()] = item  # a near-miss name
        else:
            value[draw(st.sampled_from(NAMES))] = draw(json_values)
        return value
    return draw(json_scalars)


def _set(doc, path: tuple, value):
    """``doc`` with the value at ``path`` replaced (unchanged when an earlier change removed it)."""
    if not path:
        return value
    parent = doc
    for part in path[:-1]:
        try:
            parent = parent[part]
        except (KeyError, IndexError, TypeError):
            return doc
    if isinstance(parent, (dict, list)) and (isinstance(parent, dict) or path[-1] < len(parent)):
        parent[path[-1]] = value
    return doc


@st.composite
def documents(draw):
    """A document built from the schema, then zero to two of its values turned into near misses."""
    places: list = []
    doc = _fit(draw, SCHEMA, (), places)
    by_schema: dict[str, list] = {}  # rare parts of the schema (betas, eps) as likely as common ones
    for path, node in places:
        by_schema.setdefault(repr(node)[:300], []).append((path, node))
    for _ in range(draw(st.integers(0, 2))):
        path, node = draw(st.sampled_from(by_schema[draw(st.sampled_from(sorted(by_schema)))]))
        doc = _set(doc, path, _miss(draw, node))
    return doc


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(documents())
@example({"version": 1, "rules": [{"match": "a", "target": "b", "transform": [{"pad": {"dim": 0, "value": True}}]}]})
def test_documents_with_near_misses(doc):
    agree(doc)
