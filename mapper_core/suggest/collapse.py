"""Per-tensor pairs → a short list of regex rules, ordered like the model.

Pairs whose keys have the same words (numbers aside) and the same steps form a group. A number
that varies becomes ``(\\d+)``; a target number is the source's (``{1}``), a shift (``{1+K}``)
or a table lookup (``{1|renumber}``). Groups that differ only in a member they keep
(``weight`` → ``weight``) are merged into one rule (``(weight|bias)`` → ``{2}``). A rule must take
exactly its own keys among those no earlier rule took: when ``(\\d+)`` would take more it lists
the numbers (``(0|3)``); a merged group that still takes too much is split by member, and what
is left becomes one literal rule per key.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..rules.positions import MAX_PATTERN_CHARS
from .fit import Steps
from .pairing import Pair

_LISTED = 3  # up to this many member names are listed; more become (\w+)
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Rule:
    match: str
    target: str
    steps: Steps
    tables: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    pairs: tuple[Pair, ...]


def collapse(pairs: Sequence[Pair], source_keys: Iterable[str], literal: frozenset[str] = frozenset()) -> list[Rule]:
    """Rules that send every pair's source to its target and take no other source key, in the
    order of the pairs. Sources in ``literal`` get a rule of their own."""
    place = {p.source: i for i, p in enumerate(pairs)}
    groups: dict[tuple, list[Pair]] = {}
    for p in pairs:
        s, t = p.source.split("."), p.target.split(".")
        if p.source in literal:
            groups[("literal", p.source)] = [p]
            continue
        member = s[-1] == t[-1]
        key = (_skeleton(s[:-1] if member else s), _skeleton(t[:-1] if member else t), p.steps, member)
        groups.setdefault(key, []).append(p)
    # container by container in model order; in each, the groups with steps first: their numbers
    # are listed when needed, so the group that keeps the rest can stay general
    first_of_link: dict[int, int] = {}
    for i, p in enumerate(pairs):
        first_of_link.setdefault(p.link, i)
    ordered = sorted(groups.items(), key=lambda kv: (first_of_link[kv[1][0].link], not kv[1][0].steps,
                                                     place[kv[1][0].source]))
    remaining = dict.fromkeys(source_keys)  # in key order; a dict, so taking keys out costs what they are
    rules: list[Rule] = []
    for key, members in ordered:
        found = _exact_rules(members, remaining, by_member=key[0] != "literal" and key[3])
        for r in found:
            for p in r.pairs:
                remaining.pop(p.source, None)
        rules.extend(found)
    return rules  # in the order each was checked in: a later rule may rely on an earlier one


def _skeleton(parts: Sequence[str]) -> tuple:
    return tuple(None if p.isdigit() else p for p in parts)


def _exact_rules(pairs: list[Pair], remaining: Iterable[str], by_member: bool) -> list[Rule]:
    """One rule for ``pairs`` if one fits exactly; else one per member; else one per key."""
    attempts = [[pairs]]
    if by_member:
        per_member: dict[str, list[Pair]] = {}
        for p in pairs:
            per_member.setdefault(p.source.rpartition(".")[2], []).append(p)
        if len(per_member) > 1:
            attempts.append(list(per_member.values()))
    for split in attempts:
        rules = []
        for part in split:
            rule = _rule(part, remaining, merged_member=by_member)
            if rule is None:
                break
            rules.append(rule)
        else:
            return rules
    return [_literal(p) for p in pairs]


def _literal(p: Pair) -> Rule:
    return Rule(re.escape(p.source), p.target.replace("{", "{{").replace("}", "}}"), p.steps, (), (p,))


def _rule(pairs: list[Pair], remaining: Iterable[str], merged_member: bool) -> Rule | None:
    """The rule for pairs of one skeleton, trying ``(\\d+)`` then listed numbers; None when no
    rule takes exactly these keys."""
    if len(pairs) == 1:
        return _literal(pairs[0])
    src = [p.source.split(".") for p in pairs]
    tgt = [p.target.split(".") for p in pairs]
    if len({len(s) for s in src}) != 1 or len({len(t) for t in tgt}) != 1:
        return None
    members = sorted({s[-1] for s in src}, key=[s[-1] for s in src].index) if merged_member else []
    if len(members) == 1:  # one member: written out, not captured
        members = []
    body_s = [s[:-1] for s in src] if members else src
    body_t = [t[:-1] for t in tgt] if members else tgt
    varying = [i for i in range(len(body_s[0])) if len({s[i] for s in body_s}) > 1]
    if any(not all(s[i].isdigit() for s in body_s) for i in varying):
        return None
    wanted = {p.source for p in pairs}
    for listed in (False, True):
        built = _build(body_s, body_t, varying, members, listed)
        if built is None:
            return None
        pattern, target, tables = built
        if len(pattern) > MAX_PATTERN_CHARS:  # thousands of listed numbers: a rules file refuses it
            return None
        compiled = re.compile(pattern)
        if {k for k in remaining if compiled.fullmatch(k)} == wanted:
            return Rule(pattern, target, pairs[0].steps, tables, tuple(pairs))
    return None


def _build(body_s, body_t, varying, members, listed):
    """(pattern, target template, tables) or None when a target number cannot be written."""
    group_of: dict[int, int] = {}
    parts = []
    for i, word in enumerate(body_s[0]):
        if i in varying:
            group_of[i] = len(group_of) + 1
            values = sorted({s[i] for s in body_s}, key=int)
            parts.append("(" + "|".join(values) + ")" if listed else r"(\d+)")
        else:
            parts.append(re.escape(word))
    if members:
        group_m = len(group_of) + 1
        if len(members) > _LISTED and all(_WORD.fullmatch(m) for m in members):
            parts.append(r"(\w+)")
        else:
            parts.append("(" + "|".join(re.escape(m) for m in members) + ")")
    tables: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    out = []
    for j, word in enumerate(body_t[0]):
        values = [t[j] for t in body_t]
        if len(set(values)) == 1:
            out.append(word.replace("{", "{{").replace("}", "}}"))
            continue
        field = _number(j, values, body_s, varying, group_of, tables)
        if field is None:
            return None
        out.append(field)
    if members:
        out.append("{%d}" % group_m)
    return r"\.".join(parts), ".".join(out), tuple(tables)


def _number(j, values, body_s, varying, group_of, tables) -> str | None:
    """A target number as a template field: ``{g}``, ``{g+K}`` or ``{g|table}``."""
    if not all(v.isdigit() for v in values):
        return None
    for i in varying:  # a shift of one source number, the plain copy first
        shifts = {int(v) - int(s[i]) for v, s in zip(values, body_s)}
        if len(shifts) == 1:
            k = shifts.pop()
            g = group_of[i]
            return "{%d}" % g if k == 0 else "{%d%+d}" % (g, k)
    for i in varying:  # an irregular renumbering: a table, if the source number decides it
        table: dict[str, str] = {}
        if all(table.setdefault(s[i], v) == v for v, s in zip(values, body_s)):
            name = "renumber" if not tables else f"renumber{len(tables) + 1}"
            tables.append((name, tuple(sorted(table.items(), key=lambda kv: int(kv[0])))))
            return "{%d|%s}" % (group_of[i], name)
    return None
