"""Target-key templates: ``audio_encoder.conv_layers.{1}.{p}``.

A field is ``{ref}``, ``{ref+K}`` / ``{ref-K}`` (shift a captured integer, e.g. renumber
``blocks.{1+1}``) or ``{ref|table}`` (look the captured text up in one of the rule's
``tables``). ``ref`` is a group number or name. ``{{`` and ``}}`` stand for literal braces.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

_FIELD = re.compile(r"(?P<ref>\d+|[A-Za-z_]\w*)(?:(?P<op>[+-])(?P<k>\d+)|\|(?P<table>[A-Za-z_][\w-]*))?")


class TemplateError(ValueError):
    """The template is malformed or names something its rule lacks."""


@dataclass(frozen=True)
class Field:
    ref: int | str
    offset: int = 0
    table: str | None = None

    def render(self, match: re.Match, tables: Mapping[str, Mapping[str, str]]) -> str | None:
        value = match.group(self.ref)
        if value is None:  # optional group that did not take part
            return None
        if self.table is not None:
            return tables[self.table].get(value)
        if self.offset:
            if not value.isdecimal():  # isdigit() also admits "²", which int() rejects
                return None
            shifted = int(value) + self.offset
            return str(shifted) if shifted >= 0 else None
        return value


@dataclass(frozen=True)
class Template:
    """A parsed target template: literal text and fields, in order."""

    text: str
    parts: tuple[str | Field, ...]

    @classmethod
    def parse(cls, text: str) -> "Template":
        parts: list[str | Field] = []
        literal: list[str] = []
        i = 0
        while i < len(text):
            ch = text[i]
            if ch in "{}" and text[i + 1 : i + 2] == ch:
                literal.append(ch)
                i += 2
                continue
            if ch == "}":
                raise TemplateError(f"unmatched '}}' at column {i + 1}; write '}}}}' for a literal brace")
            if ch == "{":
                end = text.find("}", i)
                if end < 0:
                    raise TemplateError(f"unclosed '{{' at column {i + 1}")
                body = text[i + 1 : end]
                m = _FIELD.fullmatch(body)
                if not m:
                    raise TemplateError(
                        f"bad field '{{{body}}}': expected {{N}}, {{name}}, {{N+K}}, {{N-K}} or {{N|table}}"
                    )
                if literal:
                    parts.append("".join(literal))
                    literal = []
                ref: int | str = int(m["ref"]) if m["ref"].isdigit() else m["ref"]
                offset = int(m["k"]) * (1 if m["op"] == "+" else -1) if m["op"] else 0
                parts.append(Field(ref, offset, m["table"]))
                i = end + 1
                continue
            literal.append(ch)
            i += 1
        if literal:
            parts.append("".join(literal))
        return cls(text, tuple(parts))

    @property
    def fields(self) -> tuple[Field, ...]:
        return tuple(p for p in self.parts if isinstance(p, Field))

    def check(self, pattern: re.Pattern, tables: Mapping[str, Mapping[str, str]]) -> list[str]:
        """Problems with this template against its rule's pattern and tables (empty when fine)."""
        problems = []
        for f in self.fields:
            if isinstance(f.ref, int):
                if f.ref < 0 or f.ref > pattern.groups:
                    problems.append(
                        f"template field {{{f.ref}}} names group {f.ref}, but the pattern has "
                        f"{pattern.groups} group{'s' if pattern.groups != 1 else ''}"
                    )
            elif f.ref not in pattern.groupindex:
                known = ", ".join(sorted(pattern.groupindex)) or "none"
                problems.append(f"template field {{{f.ref}}} names a group the pattern lacks (named groups: {known})")
            if f.table is not None and f.table not in tables:
                known = ", ".join(sorted(tables)) or "none"
                problems.append(f"template field names table '{f.table}', which the rule does not define (tables: {known})")
        return problems

    def render(self, match: re.Match, tables: Mapping[str, Mapping[str, str]] = {}) -> str | None:
        """The target key for ``match``, or None when a table has no entry / a shift goes negative."""
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = part.render(match, tables)
            if value is None:
                return None
            out.append(value)
        return "".join(out)
