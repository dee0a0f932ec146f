"""The rules-file JSON Schema: found as package data, checked with jsonschema, errors made readable.

This is the only module that imports jsonschema, and only when a document fails the schema
(or a plugin step declares a ``params_schema``): a valid document is passed by
:mod:`.schema_check`, which gives jsonschema's yes or no without importing it.
"""
from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import PluginError
from .schema_check import Check, Unsupported, compile_schema

SCHEMA_PACKAGE = "mapper_core.rules"
SCHEMA_RESOURCE = ("schemas", "mapping-rules.schema.json")

_TYPE_NAMES = {
    "object": "a mapping", "array": "a list", "string": "a string", "number": "a number",
    "integer": "an integer", "boolean": "true or false", "null": "null",
}


@dataclass(frozen=True)
class SchemaIssue:
    """One schema violation: where (a path of keys and indices) and a message that says what to do."""

    path: tuple
    message: str
    at_key: bool = False  # locate it at the key's line (an unknown or badly named key)


def schema_text() -> str:
    """The schema as shipped inside the installed package."""
    beside = os.path.join(os.path.dirname(__file__), *SCHEMA_RESOURCE)
    if os.path.isfile(beside):  # an installed or checked-out package: a plain file (importlib.resources costs ~8 ms to import)
        with open(beside, encoding="utf-8") as fh:
            return fh.read()
    from importlib import resources  # a package inside a zip, say

    resource = resources.files(SCHEMA_PACKAGE)
    for part in SCHEMA_RESOURCE:
        resource = resource.joinpath(part)
    return resource.read_text(encoding="utf-8")


@functools.lru_cache(maxsize=None)
def load_schema() -> dict:
    """The rules schema as a dict (read once per process)."""
    return json.loads(schema_text())


@functools.lru_cache(maxsize=None)
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema())


@functools.lru_cache(maxsize=None)
def _fast_check() -> Check | None:
    try:
        return compile_schema(load_schema())
    except Unsupported:  # a keyword schema_check lacks: jsonschema checks every document
        return None


def conforms(data: Any) -> bool:
    """True when ``data`` certainly conforms to the rules schema (False: ask jsonschema)."""
    check = _fast_check()
    return check is not None and check(data)


def validate(data: Any) -> list[SchemaIssue]:
    """Every schema violation in ``data`` (empty when valid), with readable messages."""
    if conforms(data):
        return []
    issues: list[SchemaIssue] = []
    for error in _validator().iter_errors(data):
        issues.extend(_describe(error, tuple(error.absolute_path)))
    return _once(issues)


def validate_params(params_schema: Mapping[str, Any], params: Any, plugin: str, step: str) -> list[SchemaIssue]:
    """Every violation of a plugin step's ``params_schema`` (paths relative to the params)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(params_schema)
    except SchemaError as exc:
        raise PluginError(f"plugin '{plugin}': transform '{step}' declares an invalid params_schema: "
                          f"{exc.message}; fix the plugin") from None
    validator = Draft202012Validator(params_schema)
    issues: list[SchemaIssue] = []
    for error in validator.iter_errors(params):
        issues.extend(_describe(error, tuple(error.absolute_path)))
    return _once(issues)


def _once(issues: list[SchemaIssue]) -> list[SchemaIssue]:
    """Each issue once, in order: a schema reaching one value along two ways (a step's parameters
    are checked by its own form and again by the list of steps) reports the same thing twice."""
    return list(dict.fromkeys(issues))


def _describe(error: Any, path: tuple) -> list[SchemaIssue]:
    kind, value, instance, schema = error.validator, error.validator_value, error.instance, error.schema
    if "propertyNames" in error.relative_schema_path:
        # jsonschema reports a bad key at its object; point at the key itself instead.
        rule = schema.get("description", "")
        rule = rule[:1].lower() + rule[1:].rstrip(".")
        return [SchemaIssue((*path, instance), f"the name '{instance}' is not allowed here ({rule})", at_key=True)]
    if kind == "additionalProperties" and value is False:
        allowed = list(schema.get("properties", {}))
        patterns = list(schema.get("patternProperties", {}))
        also = "".join(f", and keys matching {p!r}" for p in patterns)
        return [
            SchemaIssue((*path, key), f"unknown key '{key}'{_suggest(key, allowed)}; "
                                      f"allowed keys here: {', '.join(allowed)}{also}", at_key=True)
            for key in instance if key not in allowed and not any(re.search(p, str(key)) for p in patterns)
        ]
    if kind == "required":
        needed = f" (required here: {', '.join(value)})" if len(value) > 1 else ""
        return [
            SchemaIssue(path, f"missing required key '{key}'; add it{needed}") for key in value if key not in instance
        ]
    if kind in ("anyOf", "oneOf"):
        return [SchemaIssue(path, _alternatives(error))]
    return [SchemaIssue(path, _message(error, path))]


def _message(error: Any, path: tuple) -> str:
    """A message for a single-keyword error (type, enum, const, bounds, ...)."""
    kind, value, instance, schema = error.validator, error.validator_value, error.instance, error.schema
    got = _show(instance)
    if path == ("version",):
        return f"version must be the integer 1, got {got}; this mapper-core reads rules version 1: write `version: 1`"
    if kind == "type":
        names = [value] if isinstance(value, str) else list(value)
        expected = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
        hint = ""
        if "string" in names and (instance is None or isinstance(instance, (bool, int, float))):
            hint = "; put it in quotes to keep it as text"
        keys = list(schema.get("properties", ())) if names == ["object"] else []
        if keys and not isinstance(instance, dict):
            expected += f" with the key{'s' if len(keys) > 1 else ''} {', '.join(keys)}"
        return f"expected {expected}, got {got}{hint}"
    if kind == "enum":
        named = _DTYPE_NAMES.get(str(instance).lower().removeprefix("torch.")) if isinstance(instance, str) else None
        hint = f" (did you mean {json.dumps(named)}? dtypes use the safetensors names)" if named in value else ""
        return f"expected one of {', '.join(json.dumps(v) for v in value)}; got {got}{hint}"
    if kind == "const":
        return f"expected {json.dumps(value)}, got {got}"
    if kind in ("minItems", "maxItems"):
        low, high = schema.get("minItems"), schema.get("maxItems")
        count = len(instance)
        if low is not None and low == high:
            return f"expected exactly {low} item{'s' if low != 1 else ''}, got {count}"
        if kind == "minItems":
            return f"expected at least {value} item{'s' if value != 1 else ''}, got {count}; add some or drop the key"
        return f"expected at most {value} items, got {count}"
    if kind in ("minProperties", "maxProperties") and schema.get("minProperties") == schema.get("maxProperties"):
        count = schema["maxProperties"]
        return (f"expected a mapping with exactly {count} key{'s' if count != 1 else ''}, got {len(instance)} "
                f"({', '.join(map(str, instance)) or 'none'}); write one step per list item")
    if kind == "minLength":
        return "must not be empty"
    bounds = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}
    if kind in bounds:
        return f"expected a number {bounds[kind]} {value}, got {got}"
    return str(error.message)


# torch's and NumPy's dtype names → the safetensors names the rules use
_DTYPE_NAMES = {
    "float64": "F64", "double": "F64", "float32": "F32", "float": "F32", "f32": "F32", "fp32": "F32",
    "float16": "F16", "half": "F16", "f16": "F16", "fp16": "F16", "bfloat16": "BF16", "bf16": "BF16",
    "int64": "I64", "long": "I64", "int32": "I32", "int": "I32", "int16": "I16", "short": "I16", "int8": "I8",
    "uint64": "U64", "uint32": "U32", "uint16": "U16", "uint8": "U8", "bool": "BOOL",
    "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
}


def _alternatives(error: Any) -> str:
    """For anyOf/oneOf: name the allowed forms, and show the closest one's complaint."""
    from jsonschema.exceptions import best_match

    forms = [alt.get("description", f"form {i + 1}") for i, alt in enumerate(error.validator_value)]
    best = best_match(error.context)
    closest = ""
    if best is not None:
        inner = _describe(best, tuple(best.absolute_path))
        closest = f"; closest: {inner[0].message}" if inner else ""
    return f"fits none of the {len(forms)} allowed forms ({' / '.join(forms)}){closest}"


def _suggest(key: str, allowed: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, allowed, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _show(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {json.dumps(text)}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
