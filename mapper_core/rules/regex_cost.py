"""What a pattern costs Python's backtracking ``re``, read from its syntax tree.

:func:`linear_in_re`: patterns Python matches in linear time by construction (most key
patterns; they skip RE2). :func:`backtracking_risk`: for patterns RE2 cannot take, whether
Python's backtracking is bounded, or why not. The syntax tree comes from
:mod:`.regex_syntax`, which holds the parser import.
"""
from __future__ import annotations

import re

from .regex_syntax import _CLASS_FLAGS, _MAXREPEAT, _REPEATS, NoLinearForm, _items, _python_class, _sre, _tree

# ---------------------------------------------------------------------------- backtracking bound

MAX_FIXED_PATHS = 256  # ways through the alternations and optional parts of a backtracking pattern


def backtracking_risk(pattern: re.Pattern) -> str | None:
    """Why Python's backtracking ``re`` could take more than linear time on ``pattern``, or None.

    Conservative: at most one repeat of more than one item, of a fixed width (so a key splits
    one way only), and at most :data:`MAX_FIXED_PATHS` ways through alternations and optional parts.
    """
    counts = {"repeats": 0}
    paths = _paths(_tree(pattern.pattern, pattern.flags), counts)
    if counts["repeats"] > 1:
        return "it repeats more than one part (e.g. `.*` twice, or a repeat inside a repeat)"
    if counts.get("variable"):
        return "its repeated part can match texts of different lengths, so a key can split in many ways"
    if paths > MAX_FIXED_PATHS:
        return f"its alternations and optional parts give more than {MAX_FIXED_PATHS} ways through it"
    return None


def _paths(items, counts: dict) -> int:
    total = 1
    for op, av in _items(items):
        if op is _sre.BRANCH:
            total *= sum(_paths(alt, counts) for alt in av[1])
        elif op in (_sre.SUBPATTERN,):
            total *= _paths(av[3], counts)
        elif op in _REPEATS:
            low, high, sub = av
            inner = _paths(sub, counts)
            if high is _MAXREPEAT or high > 1:
                counts["repeats"] += 1
                width = sub.getwidth()
                if width[0] != width[1]:
                    counts["variable"] = True
            total *= inner * (high - low + 1 if high is not _MAXREPEAT and high <= 1 else 1)
        elif op in (_sre.ASSERT, _sre.ASSERT_NOT):
            total *= _paths(av[1], counts)
        elif op is _sre.GROUPREF_EXISTS:
            total *= _paths(av[1], counts) + (_paths(av[2], counts) if av[2] is not None else 1)
        elif hasattr(_sre, "ATOMIC_GROUP") and op is _sre.ATOMIC_GROUP:
            total *= _paths(av, counts)
        total = min(total, MAX_FIXED_PATHS + 1)
    return total


# ---------------------------------------------------------------------------- linear in Python's re

_SINGLE = (_sre.LITERAL, _sre.NOT_LITERAL, _sre.ANY, _sre.IN)


def linear_in_re(pattern: re.Pattern) -> bool:
    r"""True when Python's ``re`` matches ``pattern`` fully in time linear in the key, by construction.

    Sufficient, not necessary. Allowed: literal text, one-character items, plain groups,
    alternations of literal words none of which starts another (``(weight|bias)``), and repeats
    of one character item (``\d+``, ``[^.]*``, ``.+``); no lookaround or backreference. Every
    repeat but the last must be followed by a literal character it cannot match (``(\d+)\.``):
    then only one count of it can lead on, and every other count fails on the next character.
    The last repeat tries at most one count per character, each checked against the rest in
    constant time. Most key patterns are of this kind.
    """
    if pattern.flags & re.IGNORECASE or not isinstance(pattern.pattern, str):
        return False
    flat: list = []
    if not _flat_sequence(_tree(pattern.pattern, pattern.flags), flat):
        return False
    repeats = [k for k, (op, _) in enumerate(flat) if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT)]
    for k in repeats[:-1]:
        after = next((item for item in flat[k + 1:] if item[0] is not _sre.AT), None)
        firsts = ([chr(after[1])] if after is not None and after[0] is _sre.LITERAL else
                  [alt[0] for alt in after[1]] if after is not None and after[0] is _sre.BRANCH else None)
        body = _items(flat[k][1][2])[0]
        if firsts is None or any(_single_matches(body, c, pattern.flags) for c in firsts):
            return False
    return True


def _flat_sequence(items, out: list) -> bool:
    """``items`` with plain groups opened, into ``out``; False on anything :func:`linear_in_re` refuses.

    An alternation of literal words goes in as ``(BRANCH, [words])``.
    """
    for op, av in _items(items):
        if op is _sre.SUBPATTERN:
            if av[1] or av[2] or not _flat_sequence(av[3], out):
                return False
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT):
            sub = _items(av[2])
            if len(sub) != 1 or sub[0][0] not in _SINGLE:
                return False
            out.append((op, av))
        elif op is _sre.BRANCH:
            words = []
            for alt in av[1]:
                alt = _items(alt)
                if not alt or any(o is not _sre.LITERAL for o, _ in alt):
                    return False
                words.append("".join([chr(a) for _, a in alt]))
            if any(w != v and v.startswith(w) for w in words for v in words) or len(set(words)) != len(words):
                return False  # one word starting another: two ways on
            out.append((op, words))
        elif op in _SINGLE or op is _sre.AT:
            out.append((op, av))
        else:
            return False
    return True


def _single_matches(item: tuple, char: str, flags: int) -> bool:
    """Whether a one-character item (LITERAL, NOT_LITERAL, ANY or IN) matches ``char``."""
    op, av = item
    if op is _sre.LITERAL:
        return chr(av) == char
    if op is _sre.NOT_LITERAL:
        return chr(av) != char
    if op is _sre.ANY:
        return char != "\n" or bool(flags & re.DOTALL)
    try:
        return re.fullmatch(_python_class(list(av)), char, flags & _CLASS_FLAGS) is not None
    except NoLinearForm:
        return True  # an item we cannot spell: assume it matches, so RE2 is used
