"""Tied target weights filled from two different sources, found from headers.

A model may hold one tensor under two state-dict names (an output layer sharing the embedding:
``wte.weight`` and ``lm_head.weight``). A plan that fills both names from two source keys that
are not one tensor in the checkpoint loads one value, then overwrites it with the other. Whether
the two hold equal values needs the data (``apply_to_module`` compares them and refuses when they
differ); from headers, ``mapper plan`` and ``convert --target model:NAME`` can only say so first.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from .plan import Mapped, Plan
from .text import shown


def one_source(a: Mapped, b: Mapped, aliases: Mapping[str, str]) -> bool:
    """Whether two entries read one tensor of the source (the same key, or two names of one tensor:
    ``aliases``, alias → stored key) through the same transform steps: they give one value."""
    return aliases.get(a.source, a.source) == aliases.get(b.source, b.source) and a.transform == b.transform


def tied_conflicts(plan: Plan, groups: Sequence[Sequence[str]], aliases: Mapping[str, str], model: str) -> list[str]:
    """A message for each group of tied target names (``groups``: the names of one tensor) that the
    plan fills from sources that are not one tensor (``aliases``: the source's alias → stored key)."""
    group_of = {name: i for i, names in enumerate(groups) if len(names) > 1 for name in names}
    if not group_of:
        return []
    first: dict[int, Mapped] = {}
    said: set[int] = set()
    messages = []
    for m in plan.loadable:
        i = group_of.get(m.target)
        if i is None or i in said:
            continue
        a = first.setdefault(i, m)
        if a is m or one_source(a, m, aliases):
            continue
        said.add(i)
        messages.append(
            f"target keys '{shown(a.target)}' and '{shown(m.target)}' are one tensor in {model} (tied weights), "
            f"and the plan fills them from '{shown(a.source)}' (rule {a.rule}) and '{shown(m.source)}' (rule {m.rule}): unless "
            "the two hold the same values, a load keeps only the second. Map one source into the tied pair (skip "
            "the other key in the rules), or check that they are equal (apply_to_module refuses if they differ)")
    return messages


def tied_aliases(plan: Plan | None, aliases: Mapping[str, str]) -> dict[str, str]:
    """alias → stored key for each target key the plan fills through a tie (``plan.tied_filled``):
    its partner's stored key (``aliases``, the written aliases, resolve a partner that is one itself).
    ``convert`` records them as it records a checkpoint's tied keys (metadata ``mapper.aliases``), so
    the file keeps one copy and ``load_safetensors`` gives the tied name back as the same tensor."""
    if plan is None:
        return {}
    return {k: aliases.get(partner, partner) for k, partner in plan.tied_filled}


def tied_to_done(keys: Sequence[str], done: Sequence[str], aliases: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """(key, the first of ``done`` that is one tensor with it) for each of ``keys`` that ``aliases``
    (alias → stored key, a reader's ``aliases()``) ties to a key of ``done``: export's target keys
    that go back with the exported key they are tied to, rather than being left behind."""
    done_set = set(done)
    first: dict[str, str] = {}
    for k in done:
        first.setdefault(aliases.get(k, k), k)
    return tuple((k, first[aliases.get(k, k)]) for k in keys if k not in done_set and aliases.get(k, k) in first)
