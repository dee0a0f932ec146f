"""What both rules-file parsers share: the :class:`Parsed` value, JSON paths, limits.

Both parsers (:mod:`.json_text`, :mod:`.safe_yaml`) return plain dicts, lists, strings,
numbers, booleans and None, plus the line where each value (and each mapping key) starts,
so that later checks can say ``file:line: $.rules[2].target: ...`` for either format.
:func:`mapper_core.rules.parse.parse` picks the parser. The limits here apply to both.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import Problem

MAX_BYTES = 10 * 1024 * 1024  # a rules file is text written by people; anything bigger is a mistake
MAX_DEPTH = 100  # nesting; version-1 rules need five levels
MAX_ALIASES = 1_000  # alias uses (*name) in one YAML file
MAX_EXPANDED_NODES = 100_000  # nodes reached through aliases; stops "billion laughs" early
MAX_EXPANDED_CHARS = MAX_BYTES  # text reached through aliases: no larger than the largest file
MAX_PATTERN_CHARS = 10_000  # one regular expression (a key pattern is rarely longer than 200)
MAX_PATTERNS = 20_000  # rules, skip, new, freeze and param-group patterns in one file
MAX_INT_DIGITS = 30  # an integer in a rules file (sizes, epochs, dims) never needs more
MAX_VALUES = 200_000  # values (mappings, lists, keys, scalars) in one file: ~10 per pattern at the limit

Path = tuple  # of str (mapping keys) and int (list indices)

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def int_digits_problem(text: str) -> str | None:
    """Why the integer written as ``text`` is refused (too many digits), or None."""
    digits = sum(c.isdigit() for c in text)
    if digits <= MAX_INT_DIGITS:
        return None
    return (f"the integer has {digits:,} digits; rules files hold integers of at most {MAX_INT_DIGITS} digits. "
            "Write a smaller number")


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


def too_deep(line: int | None, path: Path) -> Fatal:
    """The error for values nested past :data:`MAX_DEPTH`, located at the top-level key it is under
    (the full path would be a hundred ``[0]``)."""
    return Fatal(line, f"values nest more than {MAX_DEPTH} levels deep; refused (version-1 rules need at most five: "
                       "look for brackets opened and never closed)", path[:1])


class Budget:
    """Counts what a parser has read so far and stops an oversized file early.

    Both parsers call :meth:`value` once per value they read (keys included) and say
    whether it is an entry of a top-level list (``rules``, ``skip``, ``new``, ...). A file
    is refused as soon as it passes :data:`MAX_PATTERNS` such entries or
    :data:`MAX_VALUES` values, so refusing a 150,000-rule file costs what reading a
    20,000-rule one does, not what reading the whole file would.
    """

    def __init__(self) -> None:
        self.values = 0
        self.entries = 0

    def value(self, line: int | None, list_name: str | None) -> None:
        """Count one value; ``list_name`` names its top-level list when it is an entry of one."""
        self.values += 1
        if list_name is not None:
            self.entries += 1
            if self.entries > MAX_PATTERNS:
                raise Fatal(line, f"the file's top-level lists hold more than {MAX_PATTERNS:,} entries by this line; "
                                  f"the limit is {MAX_PATTERNS:,} patterns (rules, skip, new, freeze and "
                                  "param_groups together). Use capture groups so that one rule covers many keys",
                            (list_name,))
        if self.values > MAX_VALUES:
            raise Fatal(line, f"the file holds more than {MAX_VALUES:,} values (keys, texts, numbers, lists and "
                              "mappings) by this line; rules files are refused past that size. Use capture groups "
                              "and shorter tables so that fewer rules say the same")


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
