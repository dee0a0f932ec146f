"""A small strict JSON parser (RFC 8259) that records the line of every value and key."""
from __future__ import annotations

import bisect
import json
import math
import re
from typing import Any

from .positions import MAX_DEPTH, Budget, Collector, Fatal, Path, int_digits_problem, too_deep

_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_LITERALS = (("true", True), ("false", False), ("null", None))
# a whole JSON string token; json.loads then decodes it and checks its escapes
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
# a string without escapes or control characters: its value is the text between the quotes
_PLAIN_STRING = re.compile(r'"[^"\\\x00-\x1f]*"')


def _string_error(msg: str) -> str:
    if "escape" in msg:
        return f"{msg}; inside JSON strings a backslash must be doubled, e.g. \"conv\\\\.(\\\\d+)\""
    return msg


class JsonParser(Collector):
    """Strict JSON (RFC 8259), recursive descent, recording the line of every value and key."""

    def __init__(self, text: str, filename: str):
        super().__init__(filename)
        self.text = text
        self.newlines = [m.start() for m in re.finditer("\n", text)]
        self.budget = Budget()

    def line(self, pos: int) -> int:
        return bisect.bisect_left(self.newlines, pos) + 1

    def fail(self, pos: int, message: str, path: Path) -> Fatal:
        n = bisect.bisect_left(self.newlines, pos)
        column = pos - (self.newlines[n - 1] + 1 if n else 0) + 1
        return Fatal(n + 1, f"JSON syntax error at column {column}: {message}", path)

    def run(self) -> Any:
        pos = _WS.match(self.text, 0).end()
        if pos == len(self.text):
            return None
        value, pos = self.value(pos, (), 0)
        pos = _WS.match(self.text, pos).end()
        if pos != len(self.text):
            raise self.fail(pos, "extra text after the JSON value; a file holds exactly one object", ())
        return value

    def value(self, pos: int, path: Path, depth: int) -> tuple[Any, int]:
        text = self.text
        pos = _WS.match(text, pos).end()
        if depth > MAX_DEPTH:
            raise too_deep(self.line(pos), path)
        if pos >= len(text):
            raise self.fail(pos, "the file ends where a value was expected", path)
        line = self.line(pos)
        self.lines.setdefault(path, line)
        self.budget.value(line, path[0] if len(path) == 2 and isinstance(path[1], int) else None)
        ch = text[pos]
        if ch == "{":
            return self.object(pos + 1, path, depth)
        if ch == "[":
            return self.array(pos + 1, path, depth)
        if ch == '"':
            return self.string(pos, path)
        for word, constant in _LITERALS:
            if text.startswith(word, pos):
                return constant, pos + len(word)
        m = _NUMBER.match(text, pos)
        if m:
            if not (m.group(1) or m.group(2)) and int_digits_problem(m.group()):
                raise self.fail(pos, int_digits_problem(m.group()), path)
            number = float(m.group()) if m.group(1) or m.group(2) else int(m.group())
            if isinstance(number, float) and not math.isfinite(number):
                raise self.fail(pos, "number out of range", path)
            return number, m.end()
        hint = "; strings need double quotes" if ch == "'" else ""
        raise self.fail(pos, f"unexpected {ch!r} where a value was expected{hint}", path)

    def string(self, pos: int, path: Path) -> tuple[str, int]:
        """The string whose opening quote is at ``pos``, and the position after it."""
        plain = _PLAIN_STRING.match(self.text, pos)
        if plain is not None:  # most keys and values: no json.loads call
            return self.text[pos + 1:plain.end() - 1], plain.end()
        m = _STRING.match(self.text, pos)
        if m is None:
            raise self.fail(pos, "Unterminated string starting at", path)
        try:
            return json.loads(m.group()), m.end()
        except json.JSONDecodeError as exc:
            raise self.fail(pos + exc.pos, _string_error(exc.msg), path) from None

    def object(self, pos: int, path: Path, depth: int) -> tuple[dict, int]:
        text = self.text
        result: dict[str, Any] = {}
        pos = _WS.match(text, pos).end()
        if text.startswith("}", pos):
            return result, pos + 1
        while True:
            if not text.startswith('"', pos):
                hint = " (JSON allows no comma before '}')" if text.startswith("}", pos) else ""
                raise self.fail(pos, f"expected a key in double quotes{hint}", path)
            key_line = self.line(pos)
            key, pos = self.string(pos, path)
            self.budget.value(key_line, None)  # keys count as values, as in YAML
            pos = _WS.match(text, pos).end()
            if not text.startswith(":", pos):
                raise self.fail(pos, f"expected ':' after the key \"{key}\"", path)
            member = (*path, key)
            if key in result:
                first = self.key_lines.get(member)
                self.problem(key_line, member,
                             f"duplicate key '{key}' (first at line {first}); keep only one of them")
                _, pos = self.value(pos + 1, (*path, "\0duplicate"), depth + 1)
            else:
                self.key_lines[member] = key_line
                result[key], pos = self.value(pos + 1, member, depth + 1)
            pos = _WS.match(text, pos).end()
            if text.startswith(",", pos):
                pos = _WS.match(text, pos + 1).end()
                continue
            if text.startswith("}", pos):
                return result, pos + 1
            raise self.fail(pos, "expected ',' or '}' after an object member", path)

    def array(self, pos: int, path: Path, depth: int) -> tuple[list, int]:
        text = self.text
        items: list[Any] = []
        pos = _WS.match(text, pos).end()
        if text.startswith("]", pos):
            return items, pos + 1
        while True:
            if text.startswith("]", pos):
                raise self.fail(pos, "JSON allows no comma before ']'", path)
            item, pos = self.value(pos, (*path, len(items)), depth + 1)
            items.append(item)
            pos = _WS.match(text, pos).end()
            if text.startswith(",", pos):
                pos = _WS.match(text, pos + 1).end()
                continue
            if text.startswith("]", pos):
                return items, pos + 1
            raise self.fail(pos, "expected ',' or ']' after a list item", path)
