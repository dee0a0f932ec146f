"""Exact character sets for RE2: which code points Python's ``re`` lets a character class match.

RE2's ``\\d``, ``\\w``, ``\\s`` are ASCII, and its case folding differs from Python's on a few
letters (dotless i, the Kelvin sign, ...). So a class is never handed to RE2 as written:
Python's own engine decides which characters it matches (every ASCII character for ASCII keys,
every code point for the rest), and RE2 gets that set as explicit ranges. Answers are cached:
one scan of all code points costs about 30 ms and happens only for keys that are not ASCII.
"""
from __future__ import annotations

import functools
import re

Ranges = tuple  # of (first, last) code points, inclusive, ascending

_SURROGATES = (0xD800, 0xDFFF)  # never in UTF-8 text: RE2 cannot be asked about them
_EMPTY = r"[^\x{0}-\x{10ffff}]"  # a class no character is in


@functools.lru_cache(maxsize=None)
def _texts(ascii_text: bool) -> tuple[tuple[int, str], ...]:
    """(first code point, text of consecutive code points) to scan; surrogates left out."""
    if ascii_text:
        return ((0, "".join(map(chr, range(128)))),)
    low, high = _SURROGATES
    return ((0, "".join(map(chr, range(low)))), (high + 1, "".join(map(chr, range(high + 1, 0x110000)))))


@functools.lru_cache(maxsize=4096)
def members(python_class: str, flags: int, ascii_text: bool) -> Ranges:
    """The code points Python's ``re`` matches with ``python_class`` (one item, e.g. ``[^\\d.]``).

    ``flags``: IGNORECASE and ASCII matter; ``ascii_text``: only ASCII characters are asked about.
    """
    runs = re.compile(f"(?:{python_class})+", flags)
    out = []
    for base, text in _texts(ascii_text):
        out.extend((base + m.start(), base + m.end() - 1) for m in runs.finditer(text))
    return tuple(out)


def re2_class(ranges: Ranges, negate: bool = False) -> str:
    """RE2 syntax for the set (or, with ``negate``, its complement)."""
    parts = []
    low, high = _SURROGATES
    for first, last in ranges:
        if first <= high and last >= low:  # cut surrogates out of a range that spans them
            if first < low:
                parts.append(_range(first, low - 1))
            if last > high:
                parts.append(_range(high + 1, last))
            continue
        parts.append(_range(first, last))
    if not parts:
        return r"[\x{0}-\x{10ffff}]" if negate else _EMPTY
    return ("[^" if negate else "[") + "".join(parts) + "]"


def _range(first: int, last: int) -> str:
    return f"\\x{{{first:x}}}" if first == last else f"\\x{{{first:x}}}-\\x{{{last:x}}}"


def re2_char(code: int) -> str:
    """One literal character in RE2 syntax (letters and digits as themselves)."""
    ch = chr(code)
    return ch if ch.isascii() and ch.isalnum() else f"\\x{{{code:x}}}"


def python_char(code: int) -> str:
    """One literal character in Python ``re`` syntax, safe inside and outside ``[...]``."""
    return f"\\U{code:08x}"
