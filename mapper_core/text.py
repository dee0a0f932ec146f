"""Keys as text for people: control characters escaped, so a key cannot fake report rows.

A tensor name is data from a file. A newline in it would start a new row of the report, an ANSI
escape could recolour or erase what came before, a bidi override could reverse what follows;
each is shown as an escape (``\\n``, ``\\x1b``, ``\\u202e``) instead. Used by every text report
(plan, explain, inspect, the readers' messages). JSON output needs none of this: ``json`` escapes by itself.
"""
from __future__ import annotations

import re
from typing import Sequence

# bidi embeddings, overrides and isolates: invisible, yet they reorder the text around them
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)}

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def shown(text: str | None) -> str:
    """``text`` with every control, line/paragraph separator and bidi character escaped."""
    if text is None:
        return "None"
    if text.isprintable():  # the usual key: no work
        return text
    return "".join(_escape(c) for c in text)


def listed(items: Sequence[str], shown: int) -> str:
    """The first ``shown`` of ``items``, comma-separated, then "and N more" for the rest."""
    rest = len(items) - shown
    return ", ".join(items[:shown]) + (f" and {rest} more" if rest > 0 else "")


def _escape(c: str) -> str:
    import unicodedata  # only for the rare text that needs escaping: not at start-up

    if (c.isprintable() and c not in _BIDI) or unicodedata.category(c) == "Zs":
        return c  # Zs: no-break and other spaces are not printable to Python but harmless
    if c in _NAMED:
        return _NAMED[c]
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


# What a terminal acts on inside a message (C0 and C1 controls but newline and tab, DEL, bidi controls)
_ACTIVE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def inert(message: str) -> str:
    """``message`` (an error or a warning, several lines maybe) with every character a terminal would
    act on escaped: a key from a hostile file quoted in it cannot recolour, erase or reorder the
    user's screen. Newlines stay; the reports escape those in keys themselves (:func:`shown`)."""
    return _ACTIVE.sub(lambda m: _escape(m.group()), message) if _ACTIVE.search(message) else message
