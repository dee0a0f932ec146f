"""Does a document conform to a JSON Schema? A yes/no answer without jsonschema, for the common case.

Loading a rules file checks it against the published schema (:mod:`.schema`). jsonschema costs
about 75 ms to import and 0.14 s to walk 1,000 rules, while nearly every file is valid: so
:func:`compile_schema` turns the schema, once, into plain Python checks that answer yes or no,
and jsonschema runs only on a document they say no to, to find and phrase its errors.

Two rules keep the answer exactly jsonschema's (Draft 2020-12):

- Only keywords implemented here compile (the rules schema's: type, const, enum, properties,
  required, additionalProperties, patternProperties, propertyNames, items, min/max bounds, pattern,
  dependentSchemas, anyOf, allOf, local ``$ref``); annotations are ignored as jsonschema
  ignores them. Any other keyword raises :class:`Unsupported`, and then every document goes
  to jsonschema: a schema that grows a new keyword is slower, never wrong.
- A yes is given only where jsonschema finds no error. Where jsonschema's answer hangs on
  something that is not a plain JSON value (a Decimal, a tuple), the check says no and
  jsonschema decides. No keyword that negates a result (``not``, ``oneOf``, ``if``) is
  implemented, so a no inside a check can only turn the whole answer into a no.

tests/rules/test_schema_check.py compares the answers with jsonschema's: on every rules file
and example, on documents mutated by hypothesis, and on every document the test suite loads.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping

Check = Callable[[Any], bool]

# Keywords that only describe (jsonschema validates nothing with them).
_ANNOTATIONS = frozenset({"$schema", "$defs", "$comment", "title", "description", "default", "examples",
                          "deprecated", "readOnly", "writeOnly"})
_NOT_NUMBERS = (str, list, dict, bool, type(None))  # the JSON values bounds do not apply to
_NUMBERS = (int, float)
# Each implemented keyword → the _Compiler method that builds its check.
_KEYWORDS = {k: "kw_" + k for k in (
    "type", "const", "enum", "anyOf", "allOf", "minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum",
    "minLength", "maxLength", "pattern", "items", "minItems", "maxItems", "properties", "additionalProperties",
    "required", "propertyNames", "minProperties", "maxProperties", "dependentSchemas", "patternProperties")}
_KEYWORDS["$ref"] = "kw_ref"


class Unsupported(ValueError):
    """The schema uses a keyword or a reference that :func:`compile_schema` does not implement."""


def compile_schema(schema: Mapping[str, Any]) -> Check:
    """A function: document → True when it certainly conforms to ``schema`` (Draft 2020-12).

    Raises :class:`Unsupported` for a schema outside the implemented keywords.
    """
    return _Compiler(schema).compile(schema, "#")


def _always(value: Any) -> bool:
    return True


def _never(value: Any) -> bool:
    return False


def _equal(a: Any, b: Any) -> bool:
    """jsonschema's equality on JSON values: true is not 1, lists and mappings compare item by item."""
    if a is b:
        return True
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_equal, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return len(a) == len(b) and all(k in b and _equal(v, b[k]) for k, v in a.items())
    if isinstance(a, bool) or isinstance(b, bool):
        return False  # `a is b` above covers two equal booleans
    if isinstance(a, (*_NUMBERS, type(None))) and isinstance(b, (*_NUMBERS, type(None))):
        return a == b
    return False  # not plain JSON (or a list beside a mapping): no, and jsonschema decides


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": _is_integer,
    # jsonschema takes any numbers.Number; other kinds than int and float get a no here
    "number": lambda v: isinstance(v, _NUMBERS) and not isinstance(v, bool),
}


def _all(checks: list[Check]) -> Check:
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    every = tuple(checks)

    def check(value: Any) -> bool:
        for one in every:
            if not one(value):
                return False
        return True
    return check


class _Compiler:
    def __init__(self, root: Mapping[str, Any]):
        self.root = root
        self.refs: dict[str, list[Check]] = {}  # "#/$defs/x" → [its check] (empty while it compiles)

    def compile(self, node: Any, where: str) -> Check:
        if node is True:
            return _always
        if node is False:
            return _never
        if not isinstance(node, dict):
            raise Unsupported(f"{where}: a schema must be a mapping or a boolean")
        if "$id" in node and node is not self.root:
            raise Unsupported(f"{where}: $id below the root changes how references resolve")
        checks = []
        for keyword, value in node.items():
            if keyword in _ANNOTATIONS or (keyword == "$id" and node is self.root):
                continue
            make = getattr(self, _KEYWORDS.get(keyword, ""), None)
            if make is None:
                raise Unsupported(f"{where}: the keyword {keyword!r}")
            checks.append(make(value, node, f"{where}/{keyword}"))
        return _all(checks)

    def subschemas(self, values: Any, where: str) -> tuple[Check, ...]:
        if not isinstance(values, list) or not values:
            raise Unsupported(f"{where}: expected a non-empty list of schemas")
        return tuple(self.compile(v, f"{where}/{i}") for i, v in enumerate(values))

    # ------------------------------------------------------------------ references

    def kw_ref(self, ref: Any, node: dict, where: str) -> Check:
        if not isinstance(ref, str) or not ref.startswith("#") or "%" in ref:
            raise Unsupported(f"{where}: only references inside the document (#/...) are implemented")
        cell = self.refs.get(ref)
        if cell is None:
            cell = self.refs[ref] = []
            cell.append(self.compile(self.resolve(ref, where), ref))
        if cell:
            return cell[0]
        return lambda value: cell[0](value)  # a reference to a schema still compiling (recursion)

    def resolve(self, ref: str, where: str) -> Any:
        target: Any = self.root
        for part in ref[1:].split("/")[1:] if ref != "#" else ():
            part = part.replace("~1", "/").replace("~0", "~")
            try:
                target = target[int(part)] if isinstance(target, list) else target[part]
            except (KeyError, IndexError, ValueError, TypeError):
                raise Unsupported(f"{where}: the reference {ref!r} leads nowhere") from None
        return target

    # ------------------------------------------------------------------ any value

    def kw_type(self, names: Any, node: dict, where: str) -> Check:
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or any(n not in _TYPES for n in names):
            raise Unsupported(f"{where}: the type {names!r}")
        tests = tuple(_TYPES[n] for n in names)
        if len(tests) == 1:
            return tests[0]
        return lambda value: any(test(value) for test in tests)

    def kw_const(self, const: Any, node: dict, where: str) -> Check:
        return lambda value: _equal(value, const)

    def kw_enum(self, values: Any, node: dict, where: str) -> Check:
        if not isinstance(values, list):
            raise Unsupported(f"{where}: enum must be a list")
        return lambda value: any(_equal(value, v) for v in values)

    def kw_anyOf(self, values: Any, node: dict, where: str) -> Check:
        alternatives = self.subschemas(values, where)
        return lambda value: any(alt(value) for alt in alternatives)

    def kw_allOf(self, values: Any, node: dict, where: str) -> Check:
        return _all(list(self.subschemas(values, where)))

    # ------------------------------------------------------------------ numbers

    def bound(self, limit: Any, where: str, outside: Callable[[Any, Any], bool]) -> Check:
        if isinstance(limit, bool) or not isinstance(limit, _NUMBERS):
            raise Unsupported(f"{where}: a bound must be a number")

        def check(value: Any) -> bool:
            if isinstance(value, _NOT_NUMBERS):
                return True  # jsonschema applies bounds to numbers only
            if isinstance(value, _NUMBERS):
                return not outside(value, limit)
            return False  # another kind of number: jsonschema decides
        return check

    def kw_minimum(self, limit: Any, node: dict, where: str) -> Check:
        return self.bound(limit, where, lambda v, m: v < m)

    def kw_exclusiveMinimum(self, limit: Any, node: dict, where: str) -> Check:
        return self.bound(limit, where, lambda v, m: v <= m)

    def kw_maximum(self, limit: Any, node: dict, where: str) -> Check:
        return self.bound(limit, where, lambda v, m: v > m)

    def kw_exclusiveMaximum(self, limit: Any, node: dict, where: str) -> Check:
        return self.bound(limit, where, lambda v, m: v >= m)

    # ------------------------------------------------------------------ strings

    def kw_minLength(self, n: Any, node: dict, where: str) -> Check:
        return lambda value: not isinstance(value, str) or len(value) >= n

    def kw_maxLength(self, n: Any, node: dict, where: str) -> Check:
        return lambda value: not isinstance(value, str) or len(value) <= n

    def kw_pattern(self, pattern: Any, node: dict, where: str) -> Check:
        search = re.compile(pattern).search  # jsonschema: re.search, so `$` also matches before a final newline
        return lambda value: not isinstance(value, str) or search(value) is not None

    # ------------------------------------------------------------------ lists

    def kw_items(self, items: Any, node: dict, where: str) -> Check:
        each = self.compile(items, where)
        return lambda value: not isinstance(value, list) or all(map(each, value))

    def kw_minItems(self, n: Any, node: dict, where: str) -> Check:
        return lambda value: not isinstance(value, list) or len(value) >= n

    def kw_maxItems(self, n: Any, node: dict, where: str) -> Check:
        return lambda value: not isinstance(value, list) or len(value) <= n

    # ------------------------------------------------------------------ mappings

    def kw_properties(self, properties: Any, node: dict, where: str) -> Check:
        checks = {name: self.compile(sub, f"{where}/{name}") for name, sub in properties.items()}

        def check(value: Any) -> bool:
            if not isinstance(value, dict):
                return True
            for name, item in value.items():
                one = checks.get(name)
                if one is not None and not one(item):
                    return False
            return True
        return check

    def kw_patternProperties(self, patterns: Any, node: dict, where: str) -> Check:
        if not isinstance(patterns, dict):
            raise Unsupported(f"{where}: patternProperties must be a mapping")
        checks = tuple((re.compile(p).search, self.compile(sub, f"{where}/{p}")) for p, sub in patterns.items())

        def check(value: Any) -> bool:
            if not isinstance(value, dict):
                return True
            for name, item in value.items():
                if not isinstance(name, str):
                    return False  # jsonschema decides what a pattern makes of a key that is not text
                for search, one in checks:
                    if search(name) is not None and not one(item):
                        return False
            return True
        return check

    def kw_additionalProperties(self, extra: Any, node: dict, where: str) -> Check:
        known = frozenset(node.get("properties", ()))
        searches = tuple(re.compile(p).search for p in node.get("patternProperties", ()))

        if extra is False and not searches:
            return lambda value: not isinstance(value, dict) or known.issuperset(value)
        each = self.compile(extra, where)
        if each is _always:
            return _always

        def check(value: Any) -> bool:
            if not isinstance(value, dict):
                return True
            if searches and not all(isinstance(name, str) for name in value):
                return False  # jsonschema decides what a pattern makes of a key that is not text
            # the keys neither `properties` nor a pattern of `patternProperties` (re.search, as jsonschema) takes
            return all(each(item) for name, item in value.items()
                       if name not in known and not any(search(name) for search in searches))
        return check

    def kw_required(self, names: Any, node: dict, where: str) -> Check:
        needed = tuple(names)
        return lambda value: not isinstance(value, dict) or all(n in value for n in needed)

    def kw_propertyNames(self, names: Any, node: dict, where: str) -> Check:
        each = self.compile(names, where)
        return lambda value: not isinstance(value, dict) or all(map(each, value))

    def kw_minProperties(self, n: Any, node: dict, where: str) -> Check:
        return lambda value: not isinstance(value, dict) or len(value) >= n

    def kw_maxProperties(self, n: Any, node: dict, where: str) -> Check:
        return lambda value: not isinstance(value, dict) or len(value) <= n

    def kw_dependentSchemas(self, dependent: Any, node: dict, where: str) -> Check:
        checks = tuple((name, self.compile(sub, f"{where}/{name}")) for name, sub in dependent.items())

        def check(value: Any) -> bool:
            if not isinstance(value, dict):
                return True
            return all(one(value) for name, one in checks if name in value)
        return check
