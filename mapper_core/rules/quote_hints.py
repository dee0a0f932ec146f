"""Where an unquoted YAML value is read as something else, say so and show it quoted.

A template or pattern written without quotes trips over YAML's indicators: ``target: {1}.weight``
starts a mapping (a syntax error), ``target: {1}`` *is* a mapping, ``match: *.weight`` is an
alias, and the YAML 1.1 words ``no``/``off``/``yes``/``on`` are booleans. PyYAML's message says
none of that. These functions read the offending line of the text and add "quote it", with the
line as it should be written. Only for YAML; JSON has no unquoted text.
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Sequence

from ..errors import Problem

_INDICATORS = {"{": "the start of a mapping", "[": "the start of a list", "*": "an alias (*name)",
               "&": "an anchor (&name)", "!": "a tag (!name)", "%": "a directive", "@": "a reserved character",
               "`": "a reserved character", "|": "a block of text", ">": "a block of text"}
_TEXT_KEYS = ("match", "target")  # keys whose value is a pattern or template: never a mapping or a list
# one line "  - key: value  # comment" (the key and the dash each optional)
_LINE = re.compile(r"^(?P<lead>\s*(?:-\s+)*)(?:(?P<key>[A-Za-z_][\w-]*):(?:\s+|$))?(?P<value>.*?)(?:\s+#.*)?$")
_BOOL_WORDS = {w for word in ("yes", "no", "on", "off", "true", "false", "y", "n")
               for w in (word, word.capitalize(), word.upper())}


def _split(line: str) -> tuple[str, str | None, str] | None:
    found = _LINE.match(line.rstrip("\r\n"))
    if not found or not found.group("value"):
        return None
    return found.group("lead"), found.group("key"), found.group("value")


def _quoted(lead: str, key: str | None, value: str) -> str:
    text = "'" + value.replace("'", "''") + "'"
    return f"{lead.strip()} {key}: {text}".strip() if key else f"{lead.strip()} {text}".strip()


def syntax_hint(text: str, lines: Sequence[int]) -> tuple[int, str] | None:
    """(line, hint) for the first of ``lines`` (1-based) whose unquoted value starts with a YAML
    indicator where text belongs: a pattern or template (``match:``, ``target:``, a list item)."""
    all_lines = text.splitlines()
    for n in lines:
        if not 1 <= n <= len(all_lines):
            continue
        parts = _split(all_lines[n - 1])
        if parts is None:
            continue
        lead, key, value = parts
        first = value[0]
        if first not in _INDICATORS:
            continue
        if first in "{[|>" and key not in _TEXT_KEYS:  # a flow mapping or list is right elsewhere
            continue
        if key is None and "-" not in lead:
            continue
        return n, (f"; the unquoted value {value} starts with '{first}', which YAML reads as "
                   f"{_INDICATORS[first]}: quote it, {_quoted(lead, key, value)}")
    return None


def with_quote_hints(problems: Sequence[Problem], text: str) -> list[Problem]:
    """``problems`` with a "quote it" hint where a value of the wrong type was written unquoted:
    ``target: {1}`` (a mapping), ``on_shape_mismatch: no`` (false)."""
    all_lines = text.splitlines()
    out = []
    for p in problems:
        hint = None
        if p.line is not None and 1 <= p.line <= len(all_lines):
            hint = _type_hint(p.message, _split(all_lines[p.line - 1]))
        out.append(dataclasses.replace(p, message=p.message + hint) if hint else p)
    return out


def _type_hint(message: str, parts: tuple[str, str | None, str] | None) -> str | None:
    if parts is None:
        return None
    lead, key, value = parts
    if re.search(r"got a (mapping|list)\b", message) and value[0] in "{[" and key in _TEXT_KEYS:
        what = "a mapping" if value[0] == "{" else "a list"
        return f"; YAML reads the unquoted {value} as {what}: quote it, {_quoted(lead, key, value)}"
    if re.search(r"got (true|false)\b", message) and value in _BOOL_WORDS:
        return (f"; YAML reads the unquoted word {value} as {str(value.lower() in _TRUE).lower()}, not as text: "
                f"quote words, {_quoted(lead, key, value)}")
    return None


_TRUE = {"yes", "on", "true", "y"}


def glob_hint(pattern: str, message: str) -> str:
    """For a pattern ``re`` refused with "nothing to repeat" that reads as a shell glob (``*.weight``,
    ``encoder.*.bias``), the regular expression meant, as advice; else ''."""
    if not message.startswith("nothing to repeat") or "*" not in pattern or ".*" in pattern:
        return ""
    escaped = "\\" in pattern  # already written with regex escapes ('*\.weight'): keep them as they are
    meant, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            meant.append(pattern[i:i + 2])
            i += 2
            continue
        meant.append(".*" if c == "*" else "." if c == "?" else c if escaped else re.escape(c))
        i += 1
    meant = "".join(meant)
    return (f"; rules patterns are regular expressions, not globs: '{pattern}' is written '{meant}' "
            "(a dot is any character unless escaped)")


def doubled_backslash(pattern: str, line: str | None, fmt: str) -> str | None:
    """For a pattern holding ``\\\\`` (two backslash characters: a literal backslash to ``re``), which
    no checkpoint key holds, the warning and the pattern with one backslash, written as the file's
    quoting needs; None for any other pattern. The usual cause: a pattern written for JSON (or a
    Python string) copied into single quotes, where YAML keeps every backslash as it is."""
    if "\\\\" not in pattern:
        return None
    fixed = pattern.replace("\\\\", "\\")
    single = "'" + pattern.replace("'", "''") + "'"
    if fmt == "json" or (line is not None and json.dumps(pattern) in line and single not in line):
        style = "a JSON (or double-quoted) string writes one backslash as \\\\", json.dumps(fixed)
    elif line is not None and single not in line and pattern in line:
        style = "an unquoted YAML value keeps each backslash as written, so one is enough", fixed
    else:
        style = "in single quotes YAML keeps each backslash as written, so one is enough", \
            "'" + fixed.replace("'", "''") + "'"
    return (f"pattern '{pattern}' holds '\\\\', which matches a backslash in the key; checkpoint keys hold "
            f"none, so it matches nothing. If the backslashes were doubled by habit: {style[0]}; write {style[1]}")


def doubled_backslash_warnings(paths: Sequence[tuple], data: dict, parsed, text: str, fmt: str,
                               filename: str) -> tuple[Problem, ...]:
    """A :class:`Problem` (a warning: the file is valid) for each pattern at ``paths`` of ``data`` that
    :func:`doubled_backslash` warns about, at its line."""
    from .positions import json_path

    all_lines = text.splitlines()
    out = []
    for path in paths:
        value = data
        for part in path:
            value = value[part]
        n = parsed.line(path)
        message = doubled_backslash(value, all_lines[n - 1] if n and n <= len(all_lines) else None, fmt)
        if message:
            out.append(Problem(filename, n, json_path(path), message))
    return tuple(out)
