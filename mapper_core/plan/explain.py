"""explain(key): which rule or skip pattern takes a source key, and why every other candidate lost.

It re-runs the planner's decision for one key the slow, talkative way (every pattern,
``fullmatch`` then ``match``/``search`` to spot near misses), and adds what a Plan knows
about the key: whether it is in the source at all, a shape mismatch, a collision.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from typing import Any

from .plan import Collision, Mismatch, Plan
from ..rules.ruleset import Rule, RuleSet
from ..specs import format_shape


@dataclass(frozen=True)
class Candidate:
    """One rule or skip pattern that has something to do with the key."""

    kind: str  # "rule" or "skip"
    index: int  # the rule's index, or the skip pattern's position in the list
    match: str
    won: bool
    reason: str
    target: str | None = None  # what a fully matching rule would render


@dataclass(frozen=True)
class Explanation:
    """The verdict on one source key and the reasons behind it."""

    key: str
    outcome: str  # "mapped", "skipped" or "unmatched"
    rule: int | None  # the rule that took the key (also set when a shape mismatch skipped it)
    skip_pattern: str | None  # the skip pattern that took the key
    target: str | None
    candidates: tuple[Candidate, ...]  # skip patterns first, then rules, each in order
    unrelated_rules: int  # rules that match no part of the key
    unrelated_skips: int
    rules_name: str = ""
    in_source: bool | None = None  # None when no plan was given
    similar: tuple[str, ...] = ()  # source keys close to a key that is not in the source
    mismatch: Mismatch | None = None
    collision: Collision | None = None
    target_shape: tuple[int, ...] | None = None
    shape: tuple[int, ...] | None = None

    @property
    def winner(self) -> Candidate | None:
        return next((c for c in self.candidates if c.won), None)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for name in ("shape", "target_shape"):
            d[name] = None if d[name] is None else list(d[name])
        d["candidates"] = [dataclasses.asdict(c) for c in self.candidates]
        d["similar"] = list(self.similar)
        if self.collision is not None:
            d["collision"] = {"target": self.collision.target, "sources": list(self.collision.sources),
                              "rules": list(self.collision.rules)}
        if self.mismatch is not None:
            d["mismatch"]["shape"] = list(self.mismatch.shape)
            d["mismatch"]["target_shape"] = None if self.mismatch.target_shape is None else list(self.mismatch.target_shape)
        return d

    def render(self) -> str:
        """The text form, for people."""
        lines = [f"key {self.key!r}"]
        if self.in_source is False:
            lines.append("  not in the source checkpoint; what would happen if it were:")
            if self.similar:
                lines.append("  similar source keys: " + ", ".join(self.similar))
        if self.outcome == "mapped":
            lines.append(f"  mapped by rule {self.rule} -> {self.target}")
        elif self.outcome == "skipped" and self.skip_pattern is not None:
            lines.append(f"  skipped by skip pattern {self.skip_pattern}")
        elif self.outcome == "skipped":
            lines.append(f"  skipped: rule {self.rule} takes it -> {self.target}, but the shapes differ "
                         "(on_shape_mismatch: skip)")
        else:
            lines.append("  unmatched: no rule and no skip pattern takes it")
        if self.shape is not None:
            lines.append(f"  shape {format_shape(self.shape)}" + (
                f", target {format_shape(self.target_shape)}" if self.target_shape is not None else ""))
        if self.mismatch is not None:
            m = self.mismatch
            after = f" ({format_shape(m.out_shape)} after its transform)" if m.out_shape is not None else ""
            what = (m.reason or "the target has no key " + repr(m.target) if m.reason or m.target_shape is None
                    else f"shape {format_shape(m.shape)}{after} but the target has {format_shape(m.target_shape)}")
            effect = "the plan fails" if m.action == "error" else "the key is left behind"
            lines.append(f"  {'error' if m.action == 'error' else 'note'}: shape mismatch: {what} "
                         f"(on_shape_mismatch: {m.action}: {effect})")
        if self.collision is not None:
            others = [s for s in self.collision.sources if s != self.key]
            lines.append(f"  error: collision: {self.collision.target!r} is also the target of " + ", ".join(others))
        if self.candidates:
            lines.append("  candidates:")
            width = max(len(_label(c)) + len(c.match) for c in self.candidates) + 2
            for c in self.candidates:
                head = f"{_label(c)}  {c.match}"
                lines.append(f"    {'*' if c.won else ' '} {head:<{width}}  {c.reason}")
        rest = []
        if self.unrelated_skips:
            rest.append(f"{self.unrelated_skips} skip pattern{'s' if self.unrelated_skips != 1 else ''}")
        if self.unrelated_rules:
            rest.append(f"{self.unrelated_rules} rule{'s' if self.unrelated_rules != 1 else ''}")
        if rest:
            single = len(rest) == 1 and (self.unrelated_skips + self.unrelated_rules) == 1
            lines.append(f"  {' and '.join(rest)} {'matches' if single else 'match'} no part of the key")
        return "\n".join(lines)


def explain(key: str, ruleset: RuleSet, plan: Plan | None = None) -> Explanation:
    """Explain what happens to source ``key`` under ``ruleset`` (and, given a plan, what the plan found)."""
    candidates: list[Candidate] = []
    skip_winner: int | None = None
    unrelated_skips = 0
    for pos, skip in enumerate(ruleset.skip):
        if skip.pattern.fullmatch(key):
            if skip_winner is None:
                skip_winner = pos
                candidates.append(Candidate("skip", pos, skip.match, True, "takes the key: it is left behind"))
            else:
                candidates.append(Candidate("skip", pos, skip.match, False,
                                            f"also matches fully, but skip pattern {skip_winner} comes first"))
            continue
        near = _near_miss(skip.pattern, key)
        if near is None:
            unrelated_skips += 1
        else:
            candidates.append(Candidate("skip", pos, skip.match, False, near))

    rule_winner: Rule | None = None
    target = None
    unrelated_rules = 0
    for rule in ruleset.rules:
        m = rule.pattern.fullmatch(key)
        if m is None:
            near = _near_miss(rule.pattern, key)
            if near is None:
                unrelated_rules += 1
            else:
                candidates.append(Candidate("rule", rule.index, rule.match, False, near))
            continue
        rendering = rule.template.trace(m)  # the planner's answer, with the reason when there is none
        rendered = rendering.key
        if skip_winner is not None:
            reason = (f"full match, but skipped: skip patterns are checked before rules "
                      f"(skip pattern {skip_winner} takes the key)")
        elif rule_winner is not None:
            reason = f"also matches fully, but rule {rule_winner.index} comes first"
        elif rendered is None:
            reason = f"full match, but {rendering.reason}"
        else:
            rule_winner, target = rule, rendered
            candidates.append(Candidate("rule", rule.index, rule.match, True, f"takes the key -> {rendered}", rendered))
            continue
        candidates.append(Candidate("rule", rule.index, rule.match, False, reason, rendered))

    if skip_winner is not None:
        outcome, rule_index, skip_text, target = "skipped", None, ruleset.skip[skip_winner].match, None
    elif rule_winner is not None:
        outcome, rule_index, skip_text = "mapped", rule_winner.index, None
    else:
        outcome, rule_index, skip_text = "unmatched", None, None

    extra: dict[str, Any] = {}
    if plan is not None:
        extra = _from_plan(key, plan, target)
        if extra.get("mismatch") is not None and extra["mismatch"].action == "skip":
            outcome = "skipped"
    return Explanation(key, outcome, rule_index, skip_text, target, tuple(candidates), unrelated_rules,
                       unrelated_skips, rules_name=ruleset.name, **extra)


def _from_plan(key: str, plan: Plan, target: str | None) -> dict[str, Any]:
    """What the plan knows about ``key``: presence, shapes, mismatch, collision."""
    entry = next((m for m in plan.mapped if m.source == key), None)
    in_source = entry is not None or key in plan.unmatched or any(s.source == key for s in plan.skipped)
    extra: dict[str, Any] = {"in_source": in_source}
    if not in_source:
        sources = [m.source for m in plan.mapped] + [s.source for s in plan.skipped] + list(plan.unmatched)
        extra["similar"] = tuple(difflib.get_close_matches(key, sources, n=3, cutoff=0.6))
        return extra
    mismatch = next((m for m in plan.mismatched if m.source == key), None)
    extra["mismatch"] = mismatch
    if entry is not None:
        extra["shape"], extra["target_shape"] = entry.shape, entry.target_shape
    elif mismatch is not None:
        extra["shape"], extra["target_shape"] = mismatch.shape, mismatch.target_shape
    if target is not None:
        extra["collision"] = next((c for c in plan.collisions if c.target == target and key in c.sources), None)
    return extra


def _near_miss(pattern: re.Pattern, key: str) -> str | None:
    """Why a pattern that does not fully match still looks related, or None when it matches nothing."""
    m = pattern.match(key)
    if m is not None and m.end() > 0:
        return f"matches a prefix only ({m.group()!r}); patterns must match the whole key"
    for m in pattern.finditer(key):
        if m.end() > m.start():
            return (f"matches {m.group()!r} at column {m.start() + 1} only; "
                    "patterns must match the whole key")
    return None


def _label(c: Candidate) -> str:
    return f"rule {c.index}" if c.kind == "rule" else f"skip {c.index}"

