"""Fast first-full-match over many patterns: a prefix index in front of ``re.fullmatch``.

Trying every pattern on every key costs keys × patterns regex calls. Instead each
pattern is reduced to a *necessary* prefix: a sequence of literal text and digit runs
(``model.layers.`` <digits> ``.block17.`` for ``model\\.layers\\.(\\d+)\\.block17\\.(\\w+)``),
stored in a compressed trie. A key walks the trie once; only the patterns whose prefix it
satisfies are tried, in their original order, with ``fullmatch``. The answer is exactly
that of the naive loop: the index only removes patterns that cannot match.

Why a digit run may stand in the prefix: the prefix keeps a run of digit items (``\\d+``,
``[0-9]``, literal digits) only when a non-digit literal character follows it and a
non-digit literal (or the start) precedes it. A key matching such a pattern then has a
*maximal* run of decimal characters there, so the trie can consume the whole run at once.
"""
from __future__ import annotations

import re
from typing import Iterator, Sequence

try:  # Python 3.11+; the same parser `re.compile` uses, so prefixes agree with matching
    import re._parser as _sre  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - Python 3.10
    import sre_parse as _sre  # type: ignore[no-redef]

_DIGITS = object()  # marker: a maximal run of one or more decimal characters
_digit_run = re.compile(r"\d+").match  # str \d is Unicode-decimal: the same set as str.isdecimal
_REPEATS = tuple(
    getattr(_sre, name) for name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT") if hasattr(_sre, name)
)


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
            out.append(_DIGITS)
        else:  # alternation, optional or open-ended repeats, classes, backrefs, lookarounds
            return False
    return True


def prefix_tokens(pattern: re.Pattern) -> tuple:
    """The necessary prefix of ``pattern`` for a full match: literal strings and digit-run markers.

    Empty when nothing can be said (case-insensitive patterns, a leading group or class, ...).
    """
    if pattern.flags & re.IGNORECASE or not isinstance(pattern.pattern, str):
        return ()
    flat: list = []
    _flatten(_sre.parse(pattern.pattern, pattern.flags), flat)
    # Split into segments of "digit things" and non-digit literals; a segment holding a
    # digit marker becomes one marker, a segment of literal digits stays literal.
    tokens: list = []
    i = 0
    while i < len(flat):
        item = flat[i]
        if item is _DIGITS or item.isdecimal():
            j = i
            while j < len(flat) and (flat[j] is _DIGITS or flat[j].isdecimal()):
                j += 1
            segment = flat[i:j]
            if any(s is _DIGITS for s in segment):
                if j == len(flat):  # no non-digit literal after the run: its end is unknown
                    break
                tokens.append(_DIGITS)
            else:
                tokens.extend(segment)
            i = j
        else:
            tokens.append(item)
            i += 1
    # merge adjacent characters into strings
    merged: list = []
    for t in tokens:
        if t is not _DIGITS and merged and merged[-1] is not _DIGITS:
            merged[-1] += t
        else:
            merged.append(t)
    return tuple(merged)


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
    if pattern.flags & re.IGNORECASE or not isinstance(pattern.pattern, str):
        return ""
    out: list[str] = []
    _trailing_literals(_sre.parse(pattern.pattern, pattern.flags), out)
    return "".join(out)


def literal_prefix(pattern: re.Pattern) -> str:
    """The plain literal text every full match starts with (up to the first digit run)."""
    tokens = prefix_tokens(pattern)
    return tokens[0] if tokens and tokens[0] is not _DIGITS else ""


class _Node:
    __slots__ = ("ids", "edges", "digits")

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.edges: dict[str, tuple[str, _Node]] = {}  # first char -> (edge label, child)
        self.digits: _Node | None = None


class Matcher:
    """Patterns in order; finds, for a key, the patterns that fully match it, in order."""

    def __init__(self, patterns: Sequence[re.Pattern]):
        self.patterns = tuple(patterns)
        self._fullmatch = tuple(p.fullmatch for p in self.patterns)
        self._root = _Node()
        # Patterns without a usable prefix are indexed by literal suffix (``.*\\.bias``),
        # as {suffix length: {suffix: ids}}; only the rest are tried on every key.
        by_suffix: dict[int, dict[str, list[int]]] = {}
        for index, pattern in enumerate(self.patterns):
            tokens = prefix_tokens(pattern)
            suffix = "" if tokens else literal_suffix(pattern)
            if suffix:
                by_suffix.setdefault(len(suffix), {}).setdefault(suffix, []).append(index)
            else:
                self._insert(tokens, index)
        self._by_suffix = tuple(by_suffix.items())

    def _insert(self, tokens: tuple, index: int) -> None:
        node = self._root
        for token in tokens:
            if token is _DIGITS:
                if node.digits is None:
                    node.digits = _Node()
                node = node.digits
                continue
            rest = token
            while rest:
                edge = node.edges.get(rest[0])
                if edge is None:
                    child = _Node()
                    node.edges[rest[0]] = (rest, child)
                    node, rest = child, ""
                    continue
                label, child = edge
                common = 0
                limit = min(len(label), len(rest))
                while common < limit and label[common] == rest[common]:
                    common += 1
                if common < len(label):  # split the edge where the two strings part
                    middle = _Node()
                    middle.edges[label[common]] = (label[common:], child)
                    node.edges[rest[0]] = (label[:common], middle)
                    child = middle
                node, rest = child, rest[common:]
        node.ids.append(index)

    def candidates(self, key: str) -> list[int]:
        """Indices of the patterns whose prefix (or suffix) ``key`` has, ascending: a superset of the matches."""
        # Hot path: one trie walk per key. A node can offer two ways on (a literal edge and a
        # digit run); the second one waits on a small stack, which is rarely used.
        found: list[int] = []
        n = len(key)
        pending: list = []
        node, i = self._root, 0
        while True:
            if node.ids:
                found += node.ids
            if i < n:
                c = key[i]
                digits = node.digits
                if digits is not None and c.isdecimal():
                    pending.append((digits, _digit_run(key, i).end()))
                edge = node.edges.get(c)
                if edge is not None:
                    label = edge[0]
                    if key.startswith(label, i):
                        node, i = edge[1], i + len(label)
                        continue
            if not pending:
                break
            node, i = pending.pop()
        for length, table in self._by_suffix:
            ids = table.get(key[-length:])  # a key shorter than the suffix cannot be equal to it
            if ids is not None:
                found += ids
        if len(found) > 1:
            found.sort()
        return found

    def full_matches(self, key: str) -> Iterator[tuple[int, re.Match]]:
        """Every pattern that fully matches ``key``, in pattern order, with its match."""
        fullmatch = self._fullmatch
        for index in self.candidates(key):
            m = fullmatch[index](key)
            if m is not None:
                yield index, m

    def first(self, key: str) -> tuple[int, re.Match] | None:
        """The first pattern (in order) that fully matches ``key``, or None."""
        return next(self.full_matches(key), None)


def naive_full_matches(patterns: Sequence[re.Pattern], key: str) -> list[int]:
    """The reference the index must agree with: try every pattern, in order."""
    return [i for i, p in enumerate(patterns) if p.fullmatch(key)]
