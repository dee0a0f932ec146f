r"""Long candidate lists tried a block at a time: one ``re`` call asks whether any of 64 patterns
fully matches a key, so a key that none of them takes costs one C-level match instead of 64
Python calls.

The matcher's index removes the patterns a key cannot match by a literal prefix or suffix. What it
cannot read (``(?:x|y)z7\.(\d+)\.w``, ``\w+\.w``) stays a candidate of every key with that
suffix, and thousands of such rules made the plan cost keys × rules Python calls (1.7 µs each:
8,000 × 8,000 took two minutes). :class:`Blocks` joins each run of up to :data:`BLOCK` patterns
into one alternation, ``(?:A)|(?:B)|...``, with no group of its own (a group per branch made
Python's ``re`` save state for every branch, slower than the loop). ``fullmatch`` of the
alternation succeeds exactly when some branch fully matches, so skipping a block that says no is
exact; the first block that says yes, and every candidate after it, are tried one by one as before.

A pattern joins a block only where the alternation means the same as the pattern alone and matches
in the same time: one that Python's ``re`` matches anyway (the key pattern's own engine, linear or of
bounded backtracking; never one matched by RE2), with default flags, no named group and no
backreference (group numbers shift in the alternation). Any other stands alone and is tried with its
own full match.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

BLOCK = 64  # patterns per alternation
LONG = 64  # candidate lists at least this long are tried by blocks
_BACKREF = re.compile(r"\\[1-9]|\(\?P=|\(\?\(")  # numbered or named backreferences, conditionals


def joinable(pattern: Any) -> str | None:
    """The regex text of ``pattern`` (a KeyPattern or re.Pattern) if it may join an alternation, else None."""
    regex = getattr(pattern, "regex", pattern)
    if getattr(pattern, "engine", "re") != "re" or getattr(pattern, "_full", None) is not None:
        return None  # matched by RE2 for bounded time: Python's re could backtrack on it
    if regex.flags != re.UNICODE or regex.groupindex or _BACKREF.search(regex.pattern):
        return None
    return regex.pattern


class Blocks:
    """``steps`` (one per candidate, in order) with the texts of their patterns (None: stands alone)."""

    __slots__ = ("steps", "_tests")

    def __init__(self, steps: Sequence[tuple], texts: Sequence[str | None], cache: dict):
        self.steps = tuple(steps)
        tests: list[tuple[int, int, Any]] = []  # (index of the block's first step, of the step after it, its test)
        start = 0
        while start < len(texts):
            if texts[start] is None:
                tests.append((start, start + 1, self.steps[start][0]))
                start += 1
                continue
            end = start
            while end < len(texts) and end - start < BLOCK and texts[end] is not None:
                end += 1
            run = tuple(texts[start:end])
            test = cache.get(run)
            if test is None:
                test = cache[run] = _alternation(run)
            if test is False:  # the alternation would not compile: each pattern alone
                tests += [(j, j + 1, self.steps[j][0]) for j in range(start, end)]
            else:
                tests.append((start, end, test))
            start = end
        self._tests = tuple(tests)

    def from_first_possible(self, key: str) -> tuple:
        """The steps from the first block (or lone pattern) that can fully match ``key`` on: () if none can."""
        for start, _, test in self._tests:
            if test(key) is not None:
                return self.steps[start:]
        return ()

    def matching(self, key: str) -> list[tuple]:
        """Every step whose pattern fully matches ``key``, in order."""
        found = []
        for start, end, test in self._tests:
            if test(key) is not None:
                found += [step for step in self.steps[start:end] if step[0](key) is not None]
        return found


def _alternation(texts: tuple[str, ...]) -> Any:
    try:
        return re.compile("|".join(f"(?:{t})" for t in texts)).fullmatch
    except (re.error, RecursionError, OverflowError):
        return False
