"""A prefix every unmatched key shares and the rules would take them without: a wrapper's name.

Lightning saves a LightningModule's weights as ``model.<name>`` (the attribute holding the
network), DDP as ``module.<name>``, ``torch.compile`` as ``_orig_mod.<name>``. Rules written for
the bare network then match nothing, and the plan lists every key as unmatched. When all the
unmatched keys start with one dotted prefix and the rules take them once it is removed, the
answer is ``--strip-prefix PREFIX``; this module finds that prefix from the plan alone.

The other way round: the torch reader strips ``module.`` by itself, and rules written for the
keys as ``torch.load`` shows them (``module\\.(.+)``) then match nothing;
:func:`restored_prefix_hint` tells that case.
"""
from __future__ import annotations

from typing import Sequence

from ..rules.key_pattern import full_matcher
from ..rules.ruleset import RuleSet

SAMPLE = 50  # unmatched keys tried against the rules (only on a failing plan)
MAX_PARTS = 3  # dotted components a wrapper prefix may have


def strip_prefix_hint(unmatched: Sequence[str], ruleset: RuleSet) -> str | None:
    """The prefix (with its trailing dot) that every key in ``unmatched`` starts with and without
    which some rule or skip pattern takes most of them; None when there is no such prefix."""
    if not unmatched:
        return None
    takes = _taker(ruleset)
    sample = list(unmatched[:SAMPLE])
    for prefix in reversed(_dotted_prefixes(unmatched[0])):  # the longest shared prefix that works
        if not all(k.startswith(prefix) and len(k) > len(prefix) for k in unmatched):
            continue
        if _most(takes(k[len(prefix):]) for k in sample):
            return prefix
    return None


def _dotted_prefixes(key: str) -> list[str]:
    """``key``'s first :data:`MAX_PARTS` dotted prefixes, shortest first: ``a.``, ``a.b.``, ..."""
    prefixes, start = [], 0
    for _ in range(MAX_PARTS):
        dot = key.find(".", start)
        if dot < 0:
            break
        prefixes.append(key[:dot + 1])
        start = dot + 1
    return prefixes


def _taker(ruleset: RuleSet):
    """``key → whether a rule or skip pattern of ruleset fully matches it``."""
    matchers = [full_matcher(p.pattern) for p in (*ruleset.skip, *ruleset.rules)]
    return lambda key: any(m(key) for m in matchers)


def _most(found) -> bool:
    """Whether more than half of a sample's answers (an iterable of bools) are true."""
    answers = list(found)
    return sum(answers) * 2 > len(answers)


def shared_prefix(keys: Sequence[str]) -> str | None:
    """The first dotted component (with its dot) every key starts with, or None."""
    if not keys:
        return None
    head, dot, _ = keys[0].partition(".")
    prefix = head + dot
    return prefix if dot and all(k.startswith(prefix) and len(k) > len(prefix) for k in keys) else None


def restored_prefix_hint(unmatched: Sequence[str], ruleset: RuleSet, stripped: str) -> bool:
    """Whether the rules were written for the keys with the prefix the reader ``stripped`` (DDP's
    ``module.``, as ``torch.load`` shows them): most of ``unmatched`` are taken once it is put back."""
    if not unmatched or not stripped:
        return False
    takes = _taker(ruleset)
    return _most(takes(stripped + k) for k in unmatched[:SAMPLE])


def target_prefix_hint(missing: Sequence[str], uninitialized: Sequence[str]) -> str | None:
    """The prefix (with its dot) every uninitialized target key starts with and that most of the
    ``missing`` keys (planned targets the target lacks) are found under: a Lightning target's
    ``model.``, to strip from the target's keys. None when there is no such prefix."""
    if not missing or not uninitialized:
        return None
    wanted = set(uninitialized)
    sample = list(missing[:SAMPLE])
    for prefix in reversed(_dotted_prefixes(uninitialized[0])):
        if not all(k.startswith(prefix) for k in uninitialized):
            continue
        if _most(prefix + k in wanted for k in sample):
            return prefix
    return None
