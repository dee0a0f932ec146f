"""Freeze and parameter-group patterns checked against the target's keys when a plan has a target.

The groups of a rules file name *target* keys (the model the weights go into). A pattern written
with source names (``backbone\\..*`` where the target calls it ``encoder``) matches nothing there;
:func:`apply_to_module`'s freezing finds that out only when training starts. With a target at
plan time the same check costs one pass over the target keys, so ``mapper plan`` can say it first.
"""
from __future__ import annotations

from itertools import chain
from typing import Iterable

from ..rules.matcher import Matcher
from ..rules.ruleset import RuleSet
from .plan import Plan


def plan_target_keys(plan: Plan) -> set[str]:
    """The target's keys, as far as the plan knows them (it was made with a target): those it
    fills, those it leaves, and those a mismatch names."""
    filled = (m.target for m in plan.mapped if m.target_shape is not None)
    named = (m.target for m in plan.mismatched if m.target_shape is not None)
    return set(chain(filled, named, plan.uninitialized, plan.expected_uninitialized))


def idle_group_patterns(ruleset: RuleSet, target_keys: Iterable[str]) -> list[str]:
    """A message for each freeze or parameter-group pattern that matches no target key."""
    groups = [("freeze group", g) for g in ruleset.freeze] + [("param group", g) for g in ruleset.param_groups]
    patterns = [(what, g.name, text, p) for what, g in groups for text, p in zip(g.match, g.patterns)]
    if not patterns:
        return []
    keys = list(target_keys)
    matcher = Matcher([p for *_, p in patterns])
    unused = set(range(len(patterns)))
    for key in keys:  # one index walk per key, whatever the number of patterns
        for i, _ in matcher.full_matches(key):
            unused.discard(i)
        if not unused:
            return []
    origin = ruleset.origin or ruleset.name
    sample = ", ".join(repr(k) for k in sorted(keys)[:3]) or "none"
    count = f"{len(keys):,} key{'s' if len(keys) != 1 else ''}"
    return [f"rules {origin}: {what} '{name}': the pattern '{text}' matches no key of the target ({count}, "
            f"e.g. {sample}); freeze and param_groups patterns name target keys in full: is it a source name?"
            for i, (what, name, text, _) in enumerate(patterns) if i in unused]
