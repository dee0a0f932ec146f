"""What a ``match`` pattern says about its keys, read from the pattern's syntax tree.

The only module that touches the standard library's regex parser: ``re._parser`` on
Python 3.11+, ``sre_parse`` on 3.10 (the same parser under its old name). Both are private,
so every walk over their opcodes lives here and callers get plain values back:

- :func:`prefix_tokens`, :func:`literal_prefix`, :func:`literal_suffix` for the matcher's
  index (text every full match starts or ends with);
- :func:`plain_sequence` for reading a rule backwards (a pattern that is only literal text
  and capture groups);
- :func:`compile_pattern`: ``re.compile`` that keeps the syntax tree it parsed, so that a
  rules pattern is parsed once, not once to compile and again for these answers.

Parsing with the parser ``re.compile`` itself uses keeps these answers in step with matching.
"""
from __future__ import annotations

import re
from typing import Any

import _sre as _engine  # the C engine re.compile hands its code to

from . import charsets

try:  # Python 3.11+
    import re._parser as _sre  # type: ignore[import-not-found]
    from re import _compiler  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python 3.10
    import sre_compile as _compiler  # type: ignore[no-redef]
    import sre_parse as _sre  # type: ignore[no-redef]

DIGITS = object()  # marker in prefix tokens: a maximal run of one or more decimal characters
# POSSESSIVE_REPEAT exists from 3.11 on; getattr keeps 3.10 working
_REPEATS = tuple(
    getattr(_sre, name) for name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT") if hasattr(_sre, name)
)


_TREES: dict[tuple[str, int], Any] = {}  # (pattern, flags) → syntax tree; the oldest go first past the limit
TREES_KEPT = 4096  # as many as key_pattern keeps compiled patterns


def _tree(text: str, flags: int):
    """The syntax tree, parsed once per pattern (parsing costs about a microsecond a character)."""
    tree = _TREES.get((text, flags))
    if tree is None:
        tree = _keep(text, flags, _sre.parse(text, flags))
    return tree


def _keep(text: str, flags: int, tree: Any) -> Any:
    if len(_TREES) >= TREES_KEPT:
        del _TREES[next(iter(_TREES))]
    _TREES[text, flags] = tree
    return tree


def _from_tree(text: str, tree: Any) -> re.Pattern:
    """What ``re.compile(text)`` returns, built from ``text``'s syntax tree as ``re._compiler.compile``
    builds it (the same code on Python 3.10 to 3.13)."""
    groupindex = tree.state.groupdict
    indexgroup: list[str | None] = [None] * tree.state.groups
    for name, index in groupindex.items():
        indexgroup[index] = name
    return _engine.compile(text, tree.state.flags, _compiler._code(tree, 0), tree.state.groups - 1,
                           groupindex, tuple(indexgroup))


def _private_parts_work() -> bool:
    """Whether :func:`_from_tree` still builds what ``re.compile`` does (Pattern equality compares
    the pattern text, the flags and the compiled code)."""
    try:
        sample = r"(?P<a>x+)\.(\d+)[^.]*$"
        return _from_tree(sample, _sre.parse(sample, 0)) == re.compile(sample)
    except Exception:  # noqa: BLE001 - any change in re's private parts: use re.compile
        return False


PARSE_ONCE = _private_parts_work()


def compile_pattern(text: str) -> re.Pattern:
    """``re.compile(text)``, parsing ``text`` once: the syntax tree is kept for the answers below.

    Raises ``re.error`` for bad syntax, as ``re.compile`` does. Where re's private parts are not
    as expected (:data:`PARSE_ONCE` false), it is ``re.compile`` and the tree is parsed when asked for.
    """
    if not PARSE_ONCE:
        return re.compile(text)
    tree = _sre.parse(text, 0)
    pattern = _from_tree(text, tree)
    _keep(text, pattern.flags, tree)
    return pattern


def _items(sub: Any) -> list:
    """The items of a parsed (sub)pattern: the parser's own list where it keeps one, read as is
    (iterating the SubPattern instead costs a Python ``__getitem__`` call per item)."""
    if isinstance(sub, list):
        return sub
    data = getattr(sub, "data", None)
    return data if isinstance(data, list) else list(sub)


def _parse(pattern: re.Pattern) -> list | None:
    """The syntax tree's top-level items, or None for patterns whose literals are not literal text."""
    if pattern.flags & re.IGNORECASE or not isinstance(pattern.pattern, str):
        return None
    return _items(_tree(pattern.pattern, pattern.flags))


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
    for op, av in _items(items):
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
    for op, av in _items(items):
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
    merged: list = []  # adjacent characters become one string (joined once: += here would be quadratic)
    for t in tokens:
        if t is not DIGITS and merged and merged[-1] is not DIGITS:
            merged[-1].append(t)
        else:
            merged.append(t if t is DIGITS else [t])
    return tuple(t if t is DIGITS else "".join(t) for t in merged)


def literal_prefix(pattern: re.Pattern) -> str:
    """The plain literal text every full match starts with (up to the first digit run)."""
    tokens = prefix_tokens(pattern)
    return tokens[0] if tokens and tokens[0] is not DIGITS else ""


def _trailing_literals(items, out: list) -> bool:
    """Append to ``out`` the literal chars ``items`` end with, last first; False where we had to stop."""
    for op, av in reversed(_items(items)):
        if op is _sre.LITERAL:
            out.append(chr(av))
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
    return "".join(reversed(out))


def plain_sequence(pattern: re.Pattern) -> tuple[str | int, ...] | None:
    """``pattern`` as literal text and capture-group numbers in order, or None when it holds anything else.

    ``blocks\\.(\\d+)\\.(?P<p>.+)`` gives ``("blocks.", 1, ".", 2)``: a key it fully matches is
    that text with each group's capture in its place. What a group holds inside is not looked at.
    """
    # IGNORECASE is allowed here: the caller checks its guesses by matching them forwards.
    if not isinstance(pattern.pattern, str):
        return None
    out: list[list[str] | int] = []
    for op, av in _items(_tree(pattern.pattern, pattern.flags)):
        if op is _sre.LITERAL:
            if out and isinstance(out[-1], list):
                out[-1].append(chr(av))
            else:
                out.append([chr(av)])
        elif op is _sre.SUBPATTERN and av[0] is not None:
            out.append(av[0])
        else:
            return None
    return tuple("".join(p) if isinstance(p, list) else p for p in out)


# ---------------------------------------------------------------------------- RE2 translation

class NoLinearForm(ValueError):
    """RE2 cannot match this pattern exactly as Python's ``re`` does; the message names what."""


_MAXREPEAT = _sre.MAXREPEAT
RE2_MAX_COUNT = 1000  # RE2 refuses larger repeat counts
_CLASS_FLAGS = re.IGNORECASE | re.ASCII  # the flags that change which characters a class matches
_CATEGORIES = {
    _sre.CATEGORY_DIGIT: r"\d", _sre.CATEGORY_NOT_DIGIT: r"\D", _sre.CATEGORY_SPACE: r"\s",
    _sre.CATEGORY_NOT_SPACE: r"\S", _sre.CATEGORY_WORD: r"\w", _sre.CATEGORY_NOT_WORD: r"\W",
}
_NEEDS_BACKTRACKING = {
    _sre.ASSERT: "a lookahead or lookbehind ((?=...), (?!...), (?<=...), (?<!...))",
    _sre.ASSERT_NOT: "a lookahead or lookbehind ((?=...), (?!...), (?<=...), (?<!...))",
    _sre.GROUPREF: "a backreference (\\1, (?P=name))",
    _sre.GROUPREF_EXISTS: "a conditional group ((?(1)...|...))",
}
for _name, _what in (("ATOMIC_GROUP", "an atomic group ((?>...))"), ("POSSESSIVE_REPEAT", "a possessive repeat (*+, ++)")):
    if hasattr(_sre, _name):  # Python 3.11+
        _NEEDS_BACKTRACKING[getattr(_sre, _name)] = _what


def to_re2(pattern: re.Pattern, ascii_text: bool) -> str:
    """``pattern`` in RE2 syntax, matching exactly what Python's ``re`` matches, with the same groups.

    ``ascii_text``: the result is only used on ASCII text (classes are then computed over
    128 characters instead of every code point). Raises :class:`NoLinearForm` naming what
    has no exact RE2 equivalent (lookarounds, backreferences, ``\\b`` without ASCII, ...).
    """
    if not isinstance(pattern.pattern, str):
        raise NoLinearForm("a bytes pattern")
    return _Re2Writer(ascii_text).sequence(_tree(pattern.pattern, pattern.flags), pattern.flags, True)


class _Re2Writer:
    def __init__(self, ascii_text: bool):
        self.ascii_text = ascii_text

    def sequence(self, items, flags: int, tail: bool) -> str:
        items = list(items)
        return "".join(self.item(op, av, flags, tail and k == len(items) - 1) for k, (op, av) in enumerate(items))

    def item(self, op, av, flags: int, tail: bool) -> str:
        """One syntax-tree item; ``tail``: nothing can follow it (the key must end right after)."""
        if op is _sre.LITERAL:
            if flags & re.IGNORECASE:
                return self.computed(charsets.python_char(av), flags)
            return charsets.re2_char(av)
        if op is _sre.NOT_LITERAL:
            if flags & re.IGNORECASE:
                return self.computed(f"[^{charsets.python_char(av)}]", flags)
            return charsets.re2_class(((av, av),), negate=True)
        if op is _sre.ANY:
            return r"(?s:.)" if flags & re.DOTALL else r"[^\n]"
        if op is _sre.IN:
            return self.char_class(av, flags)
        if op is _sre.BRANCH:
            return "(?:" + "|".join(self.sequence(alt, flags, tail) for alt in av[1]) + ")"
        if op is _sre.SUBPATTERN:
            group, add_flags, del_flags, sub = av
            inner = self.sequence(sub, (flags | add_flags) & ~del_flags, tail)
            return f"({inner})" if group is not None else f"(?:{inner})"
        if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT):
            low, high, sub = av
            if low > RE2_MAX_COUNT or (high is not _MAXREPEAT and high > RE2_MAX_COUNT):
                raise NoLinearForm(f"a repeat count over {RE2_MAX_COUNT} (RE2's limit)")
            if high is _MAXREPEAT or high > 1:
                if sub.getwidth()[0] == 0:  # RE2 and re disagree on what an empty repetition captures
                    raise NoLinearForm("a repeat of a part that can match empty text (e.g. `(a*)*`)")
            body = self.sequence(sub, flags, tail and high is not _MAXREPEAT and high <= 1)
            if high is _MAXREPEAT:
                count = {0: "*", 1: "+"}.get(low, f"{{{low},}}")
            else:
                count = "?" if (low, high) == (0, 1) else f"{{{low}}}" if low == high else f"{{{low},{high}}}"
            return f"(?:{body}){count}" + ("?" if op is _sre.MIN_REPEAT else "")
        if op is _sre.AT:
            return self.anchor(av, flags, tail)
        raise NoLinearForm(_NEEDS_BACKTRACKING.get(op, f"the construct {op}"))

    def anchor(self, at, flags: int, tail: bool) -> str:
        multiline = flags & re.MULTILINE
        if at is _sre.AT_BEGINNING:
            return "(?m:^)" if multiline else r"\A"
        if at is _sre.AT_BEGINNING_STRING:
            return r"\A"
        if at is _sre.AT_END_STRING:
            return r"\z"
        if at is _sre.AT_END:
            if multiline:
                return "(?m:$)"
            if tail:  # `$` may also stand before a final newline, but a full match ends at the key's end
                return r"\z"
            raise NoLinearForm("`$` with more pattern after it")
        if at in (_sre.AT_BOUNDARY, _sre.AT_NON_BOUNDARY) and flags & re.ASCII:
            return r"\b" if at is _sre.AT_BOUNDARY else r"\B"
        raise NoLinearForm("a word boundary (\\b, \\B) without the ASCII flag (?a)")

    def char_class(self, items, flags: int) -> str:
        items = list(items)
        negate = bool(items) and items[0][0] is _sre.NEGATE
        members = items[1:] if negate else items
        if not flags & re.IGNORECASE and all(op in (_sre.LITERAL, _sre.RANGE) for op, _ in members):
            return charsets.re2_class(tuple((av, av) if op is _sre.LITERAL else av for op, av in members), negate)
        return self.computed(_python_class(items), flags)

    def computed(self, python_class: str, flags: int) -> str:
        """A class whose members Python's engine decides (case folding, \\d, \\w, \\s)."""
        return charsets.re2_class(charsets.members(python_class, flags & _CLASS_FLAGS, self.ascii_text))


def _python_class(items) -> str:
    """A class's syntax-tree items written back as Python ``[...]`` syntax (for Python to decide it)."""
    text = []
    for op, av in items:
        if op is _sre.NEGATE:
            text.append("^")
        elif op is _sre.LITERAL:
            text.append(charsets.python_char(av))
        elif op is _sre.RANGE:
            text.append(f"{charsets.python_char(av[0])}-{charsets.python_char(av[1])}")
        elif op is _sre.CATEGORY and av in _CATEGORIES:
            text.append(_CATEGORIES[av])
        else:
            raise NoLinearForm(f"the class item {op} {av}")
    return "[" + "".join(text) + "]"
