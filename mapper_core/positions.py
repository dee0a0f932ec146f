"""Parse YAML or JSON into plain data while remembering the line of every value.

Both parsers return the same :class:`Parsed` value: plain dicts, lists, strings, numbers,
booleans and None, plus the line where each value (and each mapping key) starts, so that
later checks can say ``file:line: $.rules[2].target: ...`` for either format.

JSON is read by the small strict parser below; YAML by :mod:`.safe_yaml`, which never
constructs objects and meters alias expansion. The limits here apply to both.
"""
from __future__ import annotations

import bisect
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import Problem, RulesError

MAX_BYTES = 10 * 1024 * 1024  # a rules file is text written by people; anything bigger is a mistake
MAX_DEPTH = 100  # nesting; version-1 rules need five levels
MAX_ALIASES = 1_000  # alias uses (*name) in one YAML file
MAX_EXPANDED_NODES = 100_000  # nodes reached through aliases; stops "billion laughs" early

Path = tuple  # of str (mapping keys) and int (list indices)

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def json_path(path: Path) -> str:
    """``("rules", 2, "target")`` → ``$.rules[2].target`` (odd keys as ``["a b"]``)."""
    out = ["$"]
    for elem in path:
        if isinstance(elem, int):
            out.append(f"[{elem}]")
        elif _PLAIN_KEY.fullmatch(elem):
            out.append(f".{elem}")
        else:
            out.append(f"[{json.dumps(elem)}]")
    return "".join(out)


@dataclass(frozen=True)
class Parsed:
    """Plain data from a rules file, with lines, and the non-fatal problems met on the way."""

    data: Any
    lines: Mapping[Path, int]  # where each value starts (1-based)
    key_lines: Mapping[Path, int]  # for mapping members: where the key starts
    problems: tuple[Problem, ...] = ()  # duplicate keys, refused tags, ...
    bad_paths: frozenset = frozenset()  # values replaced by None because of a problem above

    def line(self, path: Path, *, key: bool = False) -> int | None:
        """The line of ``path`` (of its key when ``key``), else of its nearest located parent."""
        if key and path in self.key_lines:
            return self.key_lines[path]
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def is_bad(self, path: Path) -> bool:
        """True when ``path`` or one of its parents was replaced because of a parse problem."""
        return any(path[:n] in self.bad_paths for n in range(len(path) + 1))


class Fatal(Exception):
    """Parsing cannot go on (used by both parsers); carries the line and message of the last Problem."""

    def __init__(self, line: int | None, message: str, path: Path = ()):
        super().__init__(message)
        self.line, self.message, self.path = line, message, path


def parse(text: str, filename: str, fmt: str) -> Parsed:
    """Parse ``text`` as ``fmt`` ("yaml" or "json"); raise RulesError when it cannot be read at all."""
    if len(text) > MAX_BYTES:
        raise RulesError([Problem(filename, None, "$", f"the rules text is {len(text):,} characters; "
                                  f"the limit is {MAX_BYTES:,}. Check that this is really a rules file")])
    text = text.lstrip("\ufeff")
    if fmt == "yaml":
        from .safe_yaml import YamlParser  # PyYAML is imported only for YAML files

        parser: Collector = YamlParser(text, filename)
    else:
        parser = _JsonParser(text, filename)
    try:
        data = parser.run()
    except Fatal as exc:
        fatal = Problem(filename, exc.line, json_path(exc.path), exc.message)
        raise RulesError([*parser.problems, fatal]) from None
    return Parsed(data, parser.lines, parser.key_lines, tuple(parser.problems), frozenset(parser.bad))


class Collector:
    """Base of both parsers: what they fill (lines, key lines, problems, paths of replaced values)."""

    def __init__(self, filename: str):
        self.filename = filename
        self.lines: dict[Path, int] = {}
        self.key_lines: dict[Path, int] = {}
        self.problems: list[Problem] = []
        self.bad: set[Path] = set()

    def problem(self, line: int | None, path: Path, message: str, *, bad: bool = False) -> None:
        self.problems.append(Problem(self.filename, line, json_path(path), message))
        if bad:
            self.bad.add(path)


# ---------------------------------------------------------------- JSON

_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_LITERALS = (("true", True), ("false", False), ("null", None))


def _string_error(msg: str) -> str:
    if "escape" in msg:
        return f"{msg}; inside JSON strings a backslash must be doubled, e.g. \"conv\\\\.(\\\\d+)\""
    return msg


class _JsonParser(Collector):
    """Strict JSON (RFC 8259), recursive descent, recording the line of every value and key."""

    def __init__(self, text: str, filename: str):
        super().__init__(filename)
        self.text = text
        self.newlines = [m.start() for m in re.finditer("\n", text)]

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
            raise self.fail(pos, f"values nest more than {MAX_DEPTH} levels deep; refused", path)
        if pos >= len(text):
            raise self.fail(pos, "the file ends where a value was expected", path)
        self.lines.setdefault(path, self.line(pos))
        ch = text[pos]
        if ch == "{":
            return self.object(pos + 1, path, depth)
        if ch == "[":
            return self.array(pos + 1, path, depth)
        if ch == '"':
            try:
                return json.decoder.scanstring(text, pos + 1, True)
            except json.JSONDecodeError as exc:
                raise self.fail(exc.pos, _string_error(exc.msg), path) from None
        for word, constant in _LITERALS:
            if text.startswith(word, pos):
                return constant, pos + len(word)
        m = _NUMBER.match(text, pos)
        if m:
            number = float(m.group()) if m.group(1) or m.group(2) else int(m.group())
            if isinstance(number, float) and not math.isfinite(number):
                raise self.fail(pos, "number out of range", path)
            return number, m.end()
        hint = "; strings need double quotes" if ch == "'" else ""
        raise self.fail(pos, f"unexpected {ch!r} where a value was expected{hint}", path)

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
            key_pos = pos
            try:
                key, pos = json.decoder.scanstring(text, pos + 1, True)
            except json.JSONDecodeError as exc:
                raise self.fail(exc.pos, _string_error(exc.msg), path) from None
            pos = _WS.match(text, pos).end()
            if not text.startswith(":", pos):
                raise self.fail(pos, f"expected ':' after the key \"{key}\"", path)
            member = (*path, key)
            if key in result:
                first = self.key_lines.get(member)
                self.problem(self.line(key_pos), member,
                             f"duplicate key '{key}' (first at line {first}); keep only one of them")
                _, pos = self.value(pos + 1, (*path, "\0duplicate"), depth + 1)
            else:
                self.key_lines[member] = self.line(key_pos)
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
