"""Pairings that weak name evidence decided, and how they are reported.

Siblings of the same shapes (the two ``[C]`` norms of a transformer block, the projections of an
attention) fit each other's places equally, so only their names can pair them. Names that share
a whole word their rivals lack (``attn_norm`` and ``norm_attn``, ``ln_1`` and ``norm1``) are
evidence. Names that only look alike (``attn`` and ``attention``; letters every candidate has do
not count at all, :mod:`.names`) are not enough for a high confidence: such a pair gets a low one,
the signal ``WEAK NAMES``, an entry of its own and the advice to prove it with ``mapper verify``,
like a pair that definition order alone decided (:mod:`.order`). So is a pair that only the
other, weakly decided, one left over.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .order import also_fit, marked, warned

WEAK_NAMES_CONFIDENCE = 0.4  # at most: a little above order alone, well below names that agree
ADVICE = ("names that only look alike do not show which module is which: prove these pairs with "
          "`mapper verify`, or rename the modules or write their rules by hand")


@dataclass(frozen=True)
class WeakNames:
    """A source module paired with ``target`` on weak name evidence: every one of ``candidates``
    (``target`` first) fits it as well, and no whole word of the names tells them apart."""

    source: str
    target: str
    candidates: tuple[str, ...]
    reason: str


def weak_names(source: str, target: str, candidates: Sequence[str]) -> WeakNames:
    others = [c for c in candidates if c != target]
    return WeakNames(source, target, (target, *others),
                     f"weak names: '{source}' -> '{target}': {also_fit(target, others)}, and no whole word of "
                     "the names tells them apart, so names that only look alike decided")


def signal(entry: WeakNames) -> str:
    """The pair's evidence: short, the entry's reason says the rest."""
    return marked("WEAK NAMES: paired by names that only look alike", entry.candidates)


def warning(entries: Sequence[WeakNames]) -> str:
    """One warning for all of them, or ``''``."""
    return warned(entries, "on weak name evidence among modules of the same shapes", ADVICE)
