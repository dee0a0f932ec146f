"""Why a rule took no key: it matched none, or an earlier rule or skip pattern took every key it
matches (it is *shadowed*: the classic rule that silently steals another's keys), or its template
gave no key for them (``{1+1}`` on ``norm``, a table without the captured entry).

Worked out after the plan is made, for the unused rules only: a search, in C, for the source keys
that start (or end) with the literal text these rules' matches start (or end) with; their full
patterns on those few; then, for the keys they match, who took each, from the plan's entries.
The planner's own per-key loop pays nothing for it.
"""
from __future__ import annotations

import re
from collections import Counter
from operator import attrgetter, itemgetter
from typing import Iterable, Sequence

from ..rules.combined import LONG, Blocks, joinable
from ..rules.key_pattern import KeyPattern, full_matcher
from ..rules.regex_syntax import literal_prefix, literal_suffix
from ..rules.ruleset import RuleSet
from .plan import Mapped, Skipped, Taker, UnusedRule

_source, _rule = itemgetter(0), itemgetter(2)  # of a Mapped (a tuple)
_skipped = attrgetter("source", "pattern", "rule")


def unused_rules(keys: Iterable[str], ruleset: RuleSet, used: Sequence[bool], mapped: Sequence[Mapped],
                 skipped: Sequence[Skipped]) -> tuple[UnusedRule, ...]:
    """An :class:`UnusedRule` with its reason for each rule of ``ruleset`` not ``used``, from the plan's
    ``mapped`` and ``skipped`` entries (who took each key)."""
    unused = [r for r, u in zip(ruleset.rules, used) if not u]
    if not unused:
        return ()
    keys = list(keys)
    joined = _Joined(keys)
    narrowed = {r.index: joined.candidates(r.pattern) for r in unused}
    broad = [r for r in unused if narrowed[r.index] is keys]  # no literal text to search the keys by
    if len(broad) < LONG:
        broad = []
    by_blocks = {r.index for r in broad}
    # filter: no Python code per key for the usual pattern (re's own fullmatch)
    matches = {r.index: list(filter(full_matcher(r.pattern), narrowed[r.index])) for r in unused
               if r.index not in by_blocks}
    matches.update(_broad_matches(keys, broad))
    takers = _takers(ruleset, mapped, skipped) if any(matches.values()) else {}
    return tuple(_why(rule, matches[rule.index], ruleset, takers) for rule in unused)


def _broad_matches(keys: list[str], rules: list) -> dict[int, list[str]]:
    """The keys each of many ``rules`` fully matches, when no literal text narrows their keys: key by
    key, a block of rules per ``re`` call (:class:`~mapper_core.rules.combined.Blocks`), not every
    rule on every key (thousands of such rules against thousands of keys took minutes)."""
    matches: dict[int, list[str]] = {r.index: [] for r in rules}
    if not rules:
        return matches
    blocks = Blocks([(full_matcher(r.pattern), r.index) for r in rules], [joinable(r.pattern) for r in rules], {})
    for key in keys:
        for _, index in blocks.matching(key):
            matches[index].append(key)
    return matches


def _takers(ruleset: RuleSet, mapped: Sequence[Mapped], skipped: Sequence[Skipped]) -> dict[str, int]:
    """Source key → the rule that took it (its index), or ``-2 - k`` for skip pattern ``k``; a key passed
    through is -1 (PASS_THROUGH), an unmatched key is absent. Built without Python code per mapped key."""
    took = dict(zip(map(_source, mapped), map(_rule, mapped)))
    position = {}
    for k, s in enumerate(ruleset.skip):
        position.setdefault(s.match, k)
    for source, pattern, rule in map(_skipped, skipped):
        took[source] = rule if pattern is None else -2 - position[pattern]
    return took


class _Joined:
    """The source keys, and all of them joined by newlines to search in (made on first use)."""

    def __init__(self, keys: list[str]):
        self.keys = keys
        self._text: str | None = None

    def candidates(self, pattern) -> list[str]:
        """The keys, in order, that start with the literal text ``pattern``'s full matches start with,
        or end with the text they end with: a superset of its matches, found by ``str.find`` (C, a
        millisecond or two for 100,000 keys). All keys when it has neither, when a key holds a
        newline, or when there are so many that filtering them all is quicker."""
        regex = pattern.regex if isinstance(pattern, KeyPattern) else pattern
        prefix = literal_prefix(regex)
        suffix = "" if prefix else literal_suffix(regex)
        if not prefix and not suffix:
            return self.keys
        if self._text is None:
            self._text = "\n" + "\n".join(self.keys) + "\n"
            if self._text.count("\n") != len(self.keys) + 1:  # a key holds a newline: no lines to go by
                self._text = ""
        joined = self._text
        text = "\n" + prefix if prefix else suffix + "\n"
        if not joined or joined.count(text) > len(self.keys) // 8:
            return self.keys
        found, find, rfind = [], joined.find, joined.rfind
        at = find(text)
        while at >= 0:
            start = at + 1 if prefix else rfind("\n", 0, at + 1) + 1
            found.append(joined[start:find("\n", start)])
            at = find(text, at + 1)
        return found


def _why(rule, keys: list[str], ruleset: RuleSet, took: dict[str, int]) -> UnusedRule:
    if not keys:
        return UnusedRule(rule.index, rule.match, rule.line)
    counts = Counter(map(took.get, keys))
    earlier = {code: n for code, n in counts.items() if code is not None and (code <= -2 or 0 <= code < rule.index)}
    unfilled = len(keys) - sum(earlier.values())
    taken = tuple(Taker("skip", -2 - code, ruleset.skip[-2 - code].line, n) if code <= -2 else
                  Taker("rule", code, ruleset.rules[code].line, n)
                  for code, n in sorted(earlier.items(), key=lambda item: (item[0] >= 0, abs(item[0]))))
    example = None
    if unfilled:  # the first key it was tried on and could not fill (it went to a later rule, or to none)
        key = next(k for k in keys if took.get(k) not in earlier)
        example = (key, rule.template.trace(rule.pattern.fullmatch(key)).reason or "")
    return UnusedRule(rule.index, rule.match, rule.line, "unfilled" if unfilled else "shadowed", len(keys),
                      taken, unfilled, example)
