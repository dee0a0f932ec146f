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
The prefixes and suffixes are read off the pattern's syntax by :mod:`.regex_syntax`.
"""
from __future__ import annotations

import re
from typing import Iterator, Sequence

from .regex_syntax import DIGITS, literal_prefix, literal_suffix, prefix_tokens

__all__ = ["Matcher", "literal_prefix", "literal_suffix", "naive_full_matches", "prefix_tokens"]

_digit_run = re.compile(r"\d+").match  # str \d is Unicode-decimal: the same set as str.isdecimal


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
            if token is DIGITS:
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
