"""The text report's long lists, built a column at a time instead of a row at a time.

A plan of a large model has one row per source key, so the report spends its time on rows. Here
each column (the sources, the padding after them, the targets, what follows) is made by C-level
``map`` calls, the columns are interleaved by slice assignment, and each list becomes one string
with one ``join``: no Python code runs per row except for rows with transform steps. The text is
byte for byte what formatting each row by itself gave (tests/plan/test_report_rows.py).
"""
from __future__ import annotations

from typing import Callable, Hashable, Iterable, Sequence

from .text import shown

END = "\n  "  # ends every item of a block's last column: the next row's newline and indent


def shown_all(texts: Sequence[str]) -> Sequence[str]:
    """``[shown(t) for t in texts]``: the texts themselves when all are printable (one C-level check)."""
    return texts if "".join(texts).isprintable() else list(map(shown, texts))


def padding(texts: Sequence[str], after: str) -> list[str]:
    """What follows each text to left-justify it to the longest (``f"{text:<{width}}"``), then ``after``."""
    lengths = list(map(len, texts))
    width = max(lengths, default=0)
    pads = {n: " " * (width - n) + after for n in set(lengths)}  # one string per distinct length
    return list(map(pads.__getitem__, lengths))


def block(*columns: Iterable[str]) -> str:
    """Rows of ``"  "`` and the columns' items side by side, joined by newlines; every item of the last
    column ends in :data:`END`. The columns must be equally long and not empty."""
    first = list(columns[0])
    count = len(columns)
    parts = [""] * (count * len(first))
    parts[0::count] = first
    for i, column in enumerate(columns[1:], 1):
        parts[i::count] = column  # a ValueError, not a shifted report, if a column's length differs
    return "  " + "".join(parts)[:-len(END)]


def key_rows(keys: Sequence[str], indent: str = "  ") -> str:
    """One row per key (shown), each after ``indent``."""
    return indent + ("\n" + indent).join(shown_all(keys))


class Cache(dict):
    """``cache[key]`` is ``make(key)``, made once per distinct key; for ``map(cache.__getitem__, keys)``."""

    def __init__(self, make: Callable[[Hashable], str]):
        super().__init__()
        self.make = make

    def __missing__(self, key: Hashable) -> str:
        value = self[key] = self.make(key)
        return value
