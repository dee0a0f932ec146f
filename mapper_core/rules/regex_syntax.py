"""What a ``match`` pattern says about its keys, read from the pattern's syntax tree.

The only module that touches the standard library's regex parser: ``re._parser`` on
Python 3.11+, ``sre_parse`` on 3.10 (the same parser under its old name). Both are private,
so every walk over their opcodes lives here and callers get plain values back:

- :func:`prefix_tokens`, :func:`literal_prefix`, :func:`literal_suffix` for the matcher's
  index (text every full match starts or ends with);
- :func:`plain_sequence` for reading a rule backwards (a pattern that is only literal text
  and capture groups).

Parsing with the parser ``re.compile`` itself uses keeps these answers in step with matching.
"""
from __future__ import annotations

import re

try:  # Python 3.11+
    import re._parser as _sre  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - Python 3.10
    import sre_parse as _sre  # type: ignore[no-redef]

DIGITS = object()  # marker in prefix tokens: a maximal run of one or more decimal characters
# POSSESSIVE_REPEAT exists from 3.11 on; getattr keeps 3.10 working
_REPEATS = tuple(
    getattr(_sre, name) for name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT") if hasattr(_sre, name)
)


def _parse(pattern: re.Pattern) -> list | None:
    """The syntax tree's top-level items, or None for patterns whose literals are not literal text."""
    if pattern.flags & re.IGNORECASE or not isinstance(pattern.pattern, str):
        return None
    return list(_sre.parse(pattern.pattern, pattern.flags))


def _digit_set(av: list) -> bool:
    """An ``[...]`` class that only holds decimal characters (and is not negated)."""
    if not av:
        return False
    for op, value in av:
        if op is _sre.CATEGORY:
            if value is not _sre.CATEGORY_DIGIT:
                return False
        elif op is _sre.RANGE:
            if not all(chr(c).isdecimal() for c in range(value[0], value[1] + 1)):
                return False
        elif op is _sre.LITERAL:
            if not chr(value).isdecimal():
                return False
        else:  # NEGATE, other categories, ...
            return False
    return True


def _digits_only(items) -> bool:
    """Every string the items match is a non-empty run of decimal characters."""
    if not len(items):
        return False
    for op, av in items:
        if op is _sre.LITERAL:
            if not chr(av).isdecimal():
                return False
        elif op is _sre.IN:
            if not _digit_set(av):
                return False
        elif op in _REPEATS:
            low, _high, sub = av
            if low < 1 or not _digits_only(sub):
                return False
        elif op is _sre.SUBPATTERN:
            _group, add_flags, del_flags, sub = av
            if add_flags or del_flags or not _digits_only(sub):
                return False
        else:
            return False
    return True


def _flatten(items, out: list) -> bool:
    """Append the leading literal chars / digit markers of ``items``; False where we had to stop."""
    for op, av in items:
        if op is _sre.LITERAL:
            out.append(chr(av))
        elif op is _sre.AT:
            continue  # zero-width: dropping an assertion only makes the prefix weaker, never wrong
        elif op is _sre.SUBPATTERN:
            _group, add_flags, del_flags, sub = av
            if add_flags or del_flags or not _flatten(sub, out):
                return False
        elif _digits_only([(op, av)]):
            out.append(DIGITS)
        else:  # alternation, optional or open-ended repeats, classes, backrefs, lookarounds
            return False
    return True


def prefix_tokens(pattern: re.Pattern) -> tuple:
    """The necessary prefix of ``pattern`` for a full match: literal strings and :data:`DIGITS` markers.

    Empty when nothing can be said (case-insensitive patterns, a leading group or class, ...).
    """
    items = _parse(pattern)
    if items is None:
        return ()
    flat: list = []
    _flatten(items, flat)
    # Split into segments of "digit things" and non-digit literals; a segment holding a
    # digit marker becomes one marker, a segment of literal digits stays literal.
    tokens: list = []
    i = 0
    while i < len(flat):
        item = flat[i]
        if item is DIGITS or item.isdecimal():
            j = i
            while j < len(flat) and (flat[j] is DIGITS or flat[j].isdecimal()):
                j += 1
            segment = flat[i:j]
            if any(s is DIGITS for s in segment):
                if j == len(flat):  # no non-digit literal after the run: its end is unknown
                    break
                tokens.append(DIGITS)
            else:
                tokens.extend(segment)
            i = j
        else:
            tokens.append(item)
            i += 1
    merged: list = []  # adjacent characters become one string
    for t in tokens:
        if t is not DIGITS and merged and merged[-1] is not DIGITS:
            merged[-1] += t
        else:
            merged.append(t)
    return tuple(merged)


def literal_prefix(pattern: re.Pattern) -> str:
    """The plain literal text every full match starts with (up to the first digit run)."""
    tokens = prefix_tokens(pattern)
    return tokens[0] if tokens and tokens[0] is not DIGITS else ""


def _trailing_literals(items, out: list) -> bool:
    """Prepend to ``out`` the literal chars ``items`` end with; False where we had to stop."""
    for op, av in reversed(list(items)):
        if op is _sre.LITERAL:
            out.insert(0, chr(av))
        elif op is _sre.AT:
            continue
        elif op is _sre.SUBPATTERN:
            _group, add_flags, del_flags, sub = av
            if add_flags or del_flags or not _trailing_literals(sub, out):
                return False
        else:
            return False
    return True


def literal_suffix(pattern: re.Pattern) -> str:
    """The literal text every full match of ``pattern`` ends with ("" when none is certain)."""
    items = _parse(pattern)
    if items is None:
        return ""
    out: list[str] = []
    _trailing_literals(items, out)
    return "".join(out)


def plain_sequence(pattern: re.Pattern) -> tuple[str | int, ...] | None:
    """``pattern`` as literal text and capture-group numbers in order, or None when it holds anything else.

    ``blocks\\.(\\d+)\\.(?P<p>.+)`` gives ``("blocks.", 1, ".", 2)``: a key it fully matches is
    that text with each group's capture in its place. What a group holds inside is not looked at.
    """
    # IGNORECASE is allowed here: the caller checks its guesses by matching them forwards.
    if not isinstance(pattern.pattern, str):
        return None
    out: list[str | int] = []
    for op, av in _sre.parse(pattern.pattern, pattern.flags):
        if op is _sre.LITERAL:
            if out and isinstance(out[-1], str):
                out[-1] += chr(av)
            else:
                out.append(chr(av))
        elif op is _sre.SUBPATTERN and av[0] is not None:
            out.append(av[0])
        else:
            return None
    return tuple(out)
