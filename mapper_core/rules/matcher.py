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
from operator import itemgetter
from typing import Any, Callable, Iterator, Sequence

from .regex_syntax import DIGITS, literal_prefix, literal_suffix, prefix_tokens

__all__ = ["Matcher", "literal_prefix", "literal_suffix", "naive_full_matches", "prefix_tokens"]

_DIGIT_RUN = re.compile(r"\d+")  # str \d is Unicode-decimal: the same set as str.isdecimal
_digit_run, _runs, _has_digit = _DIGIT_RUN.match, _DIGIT_RUN.finditer, _DIGIT_RUN.search
# a key's UTF-8 bytes with every ASCII digit as 0xff, a byte UTF-8 never holds: the key's class in cached_candidates
_MASK_DIGITS = bytes.maketrans(b"0123456789", b"\xff" * 10)
# cached_candidates remembers at most this many answers, then walks every key (one answer per class
# of keys: a few thousand for a model's worth of rules, however many keys)
MEMO_LIMIT = 1 << 16


class _Node:
    __slots__ = ("ids", "edges", "digits", "digit_edge")

    def __init__(self) -> None:
        self.ids: list[int] = []
        # first char -> (edge label, child, whether the label holds a digit); the flag is set once built
        self.edges: dict[str, tuple] = {}
        self.digits: _Node | None = None
        self.digit_edge = False  # whether a label starts with a digit: which digit comes next matters

    def seal(self) -> None:
        """Set the flags :meth:`Matcher._walk` reads to note the digit runs it compares, here and below."""
        stack = [self]
        while stack:  # a loop, not recursion: a long pattern makes a deep trie
            node = stack.pop()
            node.digit_edge = any(first.isdecimal() for first in node.edges)
            for first, (label, child, _) in node.edges.items():
                node.edges[first] = (label, child, bool(_has_digit(label)))
                stack.append(child)
            if node.digits is not None:
                stack.append(node.digits)


class Matcher:
    """Patterns in order; finds, for a key, the patterns that fully match it, in order."""

    def __init__(self, patterns: Sequence[re.Pattern], answer: Callable[[list[int]], Any] = tuple):
        """``answer`` makes what :meth:`cached_candidates` gives (and remembers) from the candidates
        (indices, ascending); it must not give None. The planner has each index's work looked up once."""
        self.patterns = tuple(patterns)
        self._answer = answer
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
        self._root.seal()
        # (length, {suffix: ids}, whether a suffix of that length holds a digit)
        self._by_suffix = tuple((length, table, any(map(_has_digit, table))) for length, table in by_suffix.items())
        self._memo: dict[bytes, list] | None = {}  # cached_candidates: key class → [(pick, answers, runs read)]
        self._stored = 0

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
                    node.edges[rest[0]] = (rest, child, None)
                    node, rest = child, ""
                    continue
                label, child, _ = edge
                common = 0
                limit = min(len(label), len(rest))
                while common < limit and label[common] == rest[common]:
                    common += 1
                if common < len(label):  # split the edge where the two strings part
                    middle = _Node()
                    middle.edges[label[common]] = (label[common:], child, None)
                    node.edges[rest[0]] = (label[:common], middle, None)
                    child = middle
                node, rest = child, rest[common:]
        node.ids.append(index)

    def candidates(self, key: str) -> list[int]:
        """Indices of the patterns whose prefix (or suffix) ``key`` has, ascending: a superset of the matches."""
        return self._walk(key)

    def cached_candidates(self, key: str) -> Any:
        """``answer`` (a tuple unless the matcher was given another) of :meth:`candidates`, remembered for keys that differ from one seen only in the
        digits of runs the index did not read (up to :data:`MEMO_LIMIT` answers).

        A key's class is its text with every ASCII digit masked. Walking a key notes which digit runs
        it compared with a label or a suffix; a key of the same class with the same digits in those
        runs takes the same steps through the trie, so it gets the same answer.
        ``model.layers.7.block3.weight`` and ``model.layers.8.block3.weight`` share one when only
        ``block3`` was read.
        """
        memo = self._memo
        if memo is None:
            return self._answer(self._walk(key))
        # UTF-8 (lone surrogates too) never holds the byte 0xff, so a masked digit is told from any
        # other character, and the class fixes every character but the ASCII digits
        shape = key.encode("utf-8", "surrogatepass").translate(_MASK_DIGITS)
        picks = memo.get(shape)
        if picks is not None:
            for pick, answers, _ in picks:
                found = answers.get(pick(key))
                if found is not None:
                    return found
        return self._remember(key, shape)

    def _remember(self, key: str, shape: bytes) -> Any:
        """Walk ``key``, noting the spans it compared digits in, and store the answer for its class."""
        compared: list[tuple[int, int]] = []
        found = self._answer(self._walk(key, compared))
        # the digit runs (a class fixes where they are) that hold a compared position
        read: list[tuple[int, int]] = []
        if compared:
            for run in _runs(key):
                start, end = span = run.span()
                for a, b in compared:
                    if a < end and start < b:
                        read.append(span)
                        break
        spans = tuple(read)
        picks = self._memo.setdefault(shape, [])
        for pick, answers, seen in picks:
            if seen == spans:
                break
        else:  # the text of those spans; len, a constant for the class, when there are none
            pick = itemgetter(*(slice(*span) for span in spans)) if spans else len
            answers = {}
            picks.append((pick, answers, spans))
        answers[pick(key)] = found
        self._stored += 1
        if self._stored >= MEMO_LIMIT:  # keys too unlike one another to share answers: walk each
            self._memo = None
        return found

    def _walk(self, key: str, compared: list[tuple[int, int]] | None = None) -> list[int]:
        """:meth:`candidates`; with ``compared``, also adds to it each span (start, end) of the key in
        which the walk compared a digit of the key with a digit of the index (a digit edge, a label or a
        suffix holding a digit). Elsewhere a digit of the key meets only non-digits or a digit run,
        whichever digit it is, so a key that differs only in digits outside those spans takes the
        same steps."""
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
                if compared is not None:
                    if node.digit_edge and c.isdecimal():  # which digit this is decides
                        compared.append((i, i + 1))
                    if edge is not None and edge[2]:  # a label's digits are compared with the key's
                        compared.append((i, i + len(edge[0])))
                if edge is not None:
                    label = edge[0]
                    if key.startswith(label, i):
                        node, i = edge[1], i + len(label)
                        continue
            if not pending:
                break
            node, i = pending.pop()
        for length, table, digit_suffix in self._by_suffix:
            if compared is not None and digit_suffix:
                compared.append((n - length, n))
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
