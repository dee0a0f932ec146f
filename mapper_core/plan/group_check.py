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
    fills (through a tie too), those it leaves, and those a mismatch names."""
    filled = (m.target for m in plan.mapped if m.target_shape is not None)
    named = (m.target for m in plan.mismatched if m.target_shape is not None)
    tied = (k for k, _ in plan.tied_filled)
    return set(chain(filled, named, tied, plan.uninitialized, plan.expected_uninitialized))


def idle_group_patterns(ruleset: RuleSet, target_keys: Iterable[str]) -> list[str]:
    """A message for each freeze or parameter-group pattern that matches no target key."""
    groups = [("freeze group", g) for g in ruleset.freeze] + [("param group", g) for g in ruleset.param_groups]
    patterns = [(what, g.name, text, p) for what, g in groups for text, p in zip(g.match, g.patterns)]
    if not patterns:
        return []
    keys = list(target_keys)
    matcher = Matcher([p for *_, p in patterns])
    unused = set(range(len(patterns)))
    matched: set[str] = set()  # param groups that match some key
    claimed: set[str] = set()  # param groups that are the first to match some key (an optimizer group's keys)
    for key in keys:  # one index walk per key, whatever the number of patterns
        hits = [i for i, _ in matcher.full_matches(key)]
        unused.difference_update(hits)
        groups_here = [patterns[i][1] for i in hits if patterns[i][0] == "param group"]
        if groups_here:
            matched.update(groups_here)
            claimed.add(groups_here[0])
    origin = ruleset.origin or ruleset.name
    sample = ", ".join(repr(k) for k in sorted(keys)[:3]) or "none"
    count = f"{len(keys):,} key{'s' if len(keys) != 1 else ''}"
    messages = [f"rules {origin}: {what} '{name}': the pattern '{text}' matches no key of the target ({count}, "
                f"e.g. {sample}); freeze and param_groups patterns name target keys in full: is it a source name?"
                for i, (what, name, text, _) in enumerate(patterns) if i in unused]
    # a group whose every key an earlier group takes first trains nothing with its own options
    messages += [f"rules {origin}: param group '{g.name}' gets no key of the target: every key it matches is "
                 "taken by an earlier group (a key goes to the first group that matches it); narrow the earlier "
                 "group's patterns or remove this one" for g in ruleset.param_groups
                 if g.name in matched and g.name not in claimed]
    return messages
