"""Target-key templates: ``audio_encoder.conv_layers.{1}.{p}``.

A field is ``{ref}``, ``{ref+K}`` / ``{ref-K}`` (shift a captured integer, e.g. renumber
``blocks.{1+1}``) or ``{ref|table}`` (look the captured text up in one of the rule's
``tables``). ``ref`` is a group number or name. A number field may end in ``:0W``
(``{1:03}``, ``{1+1:03}``): the integer written with zeros in front to at least W digits;
without it a number is written as ``str(int)`` gives it (``007`` shifted by 1 is ``8``).
``{{`` and ``}}`` stand for literal braces.

A :class:`Template` is parsed and compiled once (a :class:`~mapper_core.rules.Rule` holds
one, bound to the rule's tables), and that one value serves every stage:

- :meth:`Template.render` / :attr:`Template.renderer`: the target key for a match, through
  one ``str.format`` call (the planner renders every mapped key);
- :meth:`Template.trace`: the same answer worked out field by field, with the reason when
  there is no key (explain prints it);
- ``str(field)``: a field as written (``{1}``, ``{1+2}``, ``{i|table}``);
- :meth:`Template.invert`: a regex over target keys that gives the source key back (export).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping

from .regex_syntax import plain_sequence

_FIELD = re.compile(r"(?P<ref>\d+|[A-Za-z_]\w*)(?:(?P<op>[+-])(?P<k>\d+)|\|(?P<table>[A-Za-z_][\w-]*))?"
                    r"(?::(?P<spec>.*))?", re.S)

Tables = Mapping[str, Mapping[str, str]]
MAX_NUMBER_DIGITS = 18  # a group number or a shift; int() of thousands of digits is slow or refused
MAX_WIDTH = 32  # zero padding: far beyond any layer count, yet no key of megabytes of zeros


class TemplateError(ValueError):
    """The template is malformed or names something its rule lacks."""


class TemplateNotInvertible(ValueError):
    """The template (with its rule's pattern) cannot be read backwards; the message says why."""


@dataclass(frozen=True)
class Field:
    """One ``{...}`` of a template: a group reference, shifted by ``offset`` or looked up in ``table``;
    a number written with zeros in front to ``width`` digits when ``width`` is set."""

    ref: int | str
    offset: int = 0
    table: str | None = None
    width: int = 0

    @property
    def numeric(self) -> bool:
        """The field reads the captured text as an integer (a shift or a width)."""
        return bool(self.offset or self.width)

    def __str__(self) -> str:
        if self.table is not None:
            return f"{{{self.ref}|{self.table}}}"
        shift = f"{self.offset:+d}" if self.offset else ""
        width = f":0{self.width}" if self.width else ""
        return f"{{{self.ref}{shift}{width}}}"


@dataclass(frozen=True)
class Rendering:
    """What a template makes of one match: the key, or None and the reason there is none."""

    key: str | None
    reason: str | None = None


@dataclass(frozen=True)
class Inversion:
    """A template read backwards: ``regex`` over target keys, and how its groups rebuild the source key."""

    regex: re.Pattern
    source: tuple[str | int, ...]  # the match pattern as literal text and group numbers
    # (source group, regex group name, reversed table or None, offset to undo or None for text as it is)
    decoders: tuple[tuple[int, str, Mapping[str, str] | None, int | None], ...]

    def source_of(self, target: str) -> str | None:
        """The source key that would render to ``target``, or None when the shape does not fit.

        A guess only: a non-greedy split may be wrong, so callers render it forwards to check.
        """
        m = self.regex.fullmatch(target)
        if m is None:
            return None
        values: dict[int, str] = {}
        for group, name, reverse, offset in self.decoders:
            text = m.group(name)
            if reverse is not None:
                text = reverse[text]
            elif offset is not None:  # the source's own zero padding is not known: its number plainly
                number = int(text) - offset
                if number < 0:
                    return None
                text = str(number)
            values[group] = text
        if 0 in values:
            return values[0]
        return "".join(p if isinstance(p, str) else values[p] for p in self.source)


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> tuple[str | Field, ...]:
    """The parts of ``text``, parsed once: checking a rule and building it share the work."""
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
                    f"bad field '{{{body}}}': expected {{N}}, {{name}}, {{N+K}}, {{N-K}} or {{N|table}}, "
                    "optionally with a zero-padding width ({N:03}, {N+K:03})"
                )
            for number in (m["k"], m["ref"]):
                if number is not None and number.isdigit() and len(number) > MAX_NUMBER_DIGITS:
                    raise TemplateError(f"field '{{{body[:20]}...}}' at column {i + 1} has a number of "
                                        f"{len(number):,} digits; at most {MAX_NUMBER_DIGITS} are allowed")
            width = 0 if m["spec"] is None else _width(m, body, i)
            if literal:
                parts.append("".join(literal))
                literal = []
            ref: int | str = int(m["ref"]) if m["ref"].isdigit() else m["ref"]
            offset = int(m["k"]) * (1 if m["op"] == "+" else -1) if m["op"] else 0
            parts.append(Field(ref, offset, m["table"], width))
            i = end + 1
            continue
        literal.append(ch)
        i += 1
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


def _width(m: re.Match, body: str, i: int) -> int:
    """The W of a field's ``:0W``; raises TemplateError saying what a width looks like."""
    spec, plain = m["spec"], body[: m.start("spec") - 1]
    field, example = f"'{{{body[:40]}}}' at column {i + 1}", f"{{{plain}:03}}"
    if m["table"] is not None:
        raise TemplateError(f"field {field} pads a table's entry; entries are written as they are, so write "
                            f"the padded text in the table (e.g. '7': '007') and the field as {{{plain}}}")
    if not (spec.isascii() and spec.isdecimal()):
        raise TemplateError(f"field {field} has ':{spec[:20]}', not a width; write ':0W' to pad the number with "
                            f"zeros to W digits, e.g. {example} (:03 writes 7 as 007)")
    if not spec.startswith("0"):
        raise TemplateError(f"field {field} has width ':{spec[:20]}', which would pad with spaces; keys are "
                            f"padded with zeros, written ':0W' ({{{plain}:0{spec[:20]}}})")
    digits = spec[1:].lstrip("0")
    width = int(digits) if digits and len(digits) <= MAX_NUMBER_DIGITS else 0 if not digits else MAX_WIDTH + 1
    if not 1 <= width <= MAX_WIDTH:
        raise TemplateError(f"field {field} has width {(digits or '0')[:20]}; a width is 1 to {MAX_WIDTH} "
                            f"digits, e.g. {example} (:03 writes 7 as 007)")
    return width


@dataclass(frozen=True)
class Template:
    """A parsed target template (literal text and fields, in order) bound to its rule's ``tables``."""

    text: str
    parts: tuple[str | Field, ...]
    tables: Tables = field(default_factory=dict, hash=False)

    @functools.cached_property
    def renderer(self) -> Callable[[re.Match], str | None]:
        """match → key or None; the hot path, compiled once from parts and tables, on first use
        (a template parsed only to be checked never pays for it)."""
        return _compile(self.parts, self.tables)

    @classmethod
    def parse(cls, text: str, tables: Tables | None = None) -> "Template":
        """Parse ``text``; raises TemplateError naming the column of a stray brace or the bad field."""
        return cls(text, _parse(text), {} if tables is None else tables)

    @property
    def fields(self) -> tuple[Field, ...]:
        return tuple(p for p in self.parts if isinstance(p, Field))

    def check(self, pattern: re.Pattern, tables: Tables | None = None) -> list[str]:
        """Problems with this template against its rule's pattern and tables (empty when fine)."""
        tables = self.tables if tables is None else tables
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

    def render(self, match: re.Match, tables: Tables | None = None) -> str | None:
        """The target key for ``match``, or None when a table has no entry / a shift goes negative /
        a group took no part. ``tables`` replaces the bound tables (the slower path)."""
        if tables is None or tables is self.tables:
            return self.renderer(match)
        return _walk(self.parts, tables, match).key

    def trace(self, match: re.Match) -> Rendering:
        """Render field by field: the same key as :meth:`render`, or the reason there is none."""
        return _walk(self.parts, self.tables, match)

    def invert(self, pattern: re.Pattern) -> Inversion:
        """Read the rule ``pattern`` → this template backwards; raises TemplateNotInvertible saying why not.

        ``pattern`` must be plain literal text and capture groups, every group must appear in
        the template, and a table must be one-to-one.
        """
        source = plain_sequence(pattern)
        if source is None:
            raise TemplateNotInvertible(f"its match '{pattern.pattern}' is not plain literal text and capture groups")
        decoders: dict[int, tuple[str, Field]] = {}  # source group → (regex group name, field)
        out = []
        for k, part in enumerate(self.parts):
            if isinstance(part, str):
                out.append(re.escape(part))
                continue
            name = f"f{k}"
            group = part.ref if isinstance(part.ref, int) else pattern.groupindex[part.ref]
            if group == 0:
                out.append(f"(?P<{name}>.+?)")
                decoders[0] = (name, part)
                continue
            if group in decoders and decoders[group][1] == part:  # the same field again repeats the first
                out.append(f"(?P={decoders[group][0]})")
                continue
            if part.table is not None:
                values = list(self.tables[part.table].values())
                if len(set(values)) != len(values):
                    raise TemplateNotInvertible(f"table '{part.table}' sends several captured values to one value")
                # longest first, so an alternation never stops at a value that prefixes another
                body = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
            elif part.numeric:
                body = r"\d+"
            else:
                body = ".+?"
            out.append(f"(?P<{name}>{body})")
            decoders.setdefault(group, (name, part))
        if 0 not in decoders:
            missing = [g for g in source if isinstance(g, int) and g not in decoders]
            if missing:
                names = {v: k for k, v in pattern.groupindex.items()}
                shown = ", ".join(f"{{{names.get(g, g)}}}" for g in missing)
                raise TemplateNotInvertible(
                    f"group(s) {shown} of match '{pattern.pattern}' do not appear in target '{self.text}'")
        return Inversion(re.compile("".join(out)), source, tuple(
            (group, name, None if f.table is None else {v: k for k, v in self.tables[f.table].items()},
             f.offset if f.numeric else None)
            for group, (name, f) in decoders.items()))


def _walk(parts: tuple[str | Field, ...], tables: Tables, match: re.Match) -> Rendering:
    """The definition of rendering, one field at a time; the compiled renderer must agree with it."""
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        value = match.group(part.ref)
        if value is None:  # an optional group that did not take part
            return Rendering(None, f"group {part.ref} took no part, so {part} has no value")
        if part.table is not None:
            entry = tables[part.table].get(value)
            if entry is None:
                return Rendering(None, f"table '{part.table}' has no entry '{value}'")
            value = entry
        elif part.numeric:
            if not value.isdecimal():  # isdigit() also admits "²", which int() rejects
                return Rendering(None, f"{part} needs a number and group {part.ref} captured '{value}'")
            shifted = int(value) + part.offset
            if shifted < 0:
                return Rendering(None, f"{part} would give {shifted}, below 0")
            value = f"{shifted:0{part.width}d}"  # width 0: no padding, str(shifted)
        out.append(value)
    return Rendering("".join(out))


def _compile(parts: tuple[str | Field, ...], tables: Tables) -> Callable[[re.Match], str | None]:
    """``match → key or None`` as one ``%`` formatting (half the cost of ``str.format``): the answers of
    :func:`_walk`, without the reasons."""
    fields = [p for p in parts if isinstance(p, Field)]
    if any(f.table is not None and f.table not in tables for f in fields):
        # Only a rule that failed its checks gets here; rendering raises KeyError, as before.
        return lambda m: _walk(parts, tables, m).key
    # every value is a str (a group's text, a table's entry) or a number's int (%s gives str(int);
    # %0Wd the zero-padded digits), so the format gives exactly what _walk gives
    fmt = "".join(p.replace("%", "%%") if isinstance(p, str) else f"%0{p.width}d" if p.width else "%s"
                  for p in parts)
    refs = tuple(f.ref for f in fields)
    # fields that change the captured text: (position, table or None, offset)
    special = tuple((pos, tables[f.table] if f.table is not None else None, f.offset)
                    for pos, f in enumerate(fields) if f.numeric or f.table is not None)
    if not refs:
        text = fmt % ()  # undo the escaping
        return lambda m: text
    if not special and len(refs) == 1:
        ref = refs[0]
        return lambda m: None if (v := m.group(ref)) is None else fmt % (v,)
    return _written_renderer(fmt, refs, special)


def _written_renderer(fmt: str, refs: tuple, special: tuple) -> Callable[[re.Match], str | None]:
    """The renderer of a template with several fields, or shifted or looked-up ones, as a function
    written for its fields (a loop over them cost twice as much; ``m.group(1, 2)`` is cheaper than
    ``m.group(*refs)``): the steps of :func:`_walk` in the same order (every group took part, then
    each special field left to right), with ``None`` where it gives a reason. A shifted value stays
    an int: ``%s`` of it is its ``str``.

    The function is made by a factory written once per layout of fields (refs, shifts, which fields
    are looked up), shared by every template of that layout; the format and tables are its arguments."""
    layout = (refs, tuple((pos, table is not None, offset) for pos, table, offset in special))
    return _factory(layout)(fmt, *(table for _, table, _ in special if table is not None))


@functools.lru_cache(maxsize=1024)
def _factory(layout: tuple) -> Callable[..., Callable[[re.Match], str | None]]:
    """``make(fmt, *tables) → render`` for a layout of :func:`_written_renderer`. The source text holds
    only names it makes, integer literals and the group references' reprs (an int, or a name that
    :data:`_FIELD` admitted); compiling it costs about 0.1 ms, hence the cache."""
    refs, special = layout
    got = ", ".join(map(repr, refs))
    tables = [f"t{pos}" for pos, looked_up, _ in special if looked_up]
    lines = [f"def make(fmt, {''.join(t + ', ' for t in tables)}):", "    def render(m):"]
    if not special:  # the values as they are, in the tuple the match gives
        lines += [f"        vs = m.group({got})", "        return None if None in vs else fmt % vs"]
    else:
        names = [f"v{pos}" for pos in range(len(refs))]
        lines += [f"        {', '.join(names)}{',' if len(refs) > 1 else ''} = m.group({got})",
                  f"        if {' or '.join(f'{v} is None' for v in names)}:", "            return None"]
        for pos, looked_up, offset in special:
            v = names[pos]
            if looked_up:
                lines += [f"        {v} = t{pos}.get({v})", f"        if {v} is None:", "            return None"]
                continue
            lines += [f"        if not {v}.isdecimal():", "            return None",
                      f"        {v} = int({v}) + {int(offset)}"]
            if offset < 0:  # a decimal's int is at least 0, so only a negative shift can go below 0
                lines += [f"        if {v} < 0:", "            return None"]
        lines.append(f"        return fmt % ({', '.join(names)},)")
    lines.append("    return render")
    space: dict = {}
    exec("\n".join(lines), space)  # noqa: S102 - source text built above from fixed pieces
    return space["make"]
