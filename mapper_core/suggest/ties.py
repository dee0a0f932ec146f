"""Tied keys of a checkpoint: ``lm_head.weight`` stored as the same tensor as
``model.embed_tokens.weight`` (the reader's ``aliases()``). Such a key is no module of its own, so
it is left out of the structural pairing, which would find it ambiguous, and paired afterwards as
a tie: with the one target key left unfilled that fits it, else skipped saying what it is tied to.
"""
from __future__ import annotations

from typing import Mapping

from ..specs import TensorSpec
from .fit import SAME, fit_member

TIE_CONFIDENCE = 0.7  # the tie is certain; which target it goes to rests on being the only fit left


def known_aliases(aliases: Mapping[str, str] | None, specs: Mapping[str, TensorSpec]) -> dict[str, str]:
    """Alias → canonical key, for the aliases whose both keys are in ``specs``."""
    return {a: k for a, k in (aliases or {}).items() if a in specs and k in specs and a != k}


def pair_ties(aliases: Mapping[str, str], paired: Mapping[str, str], source_specs: Mapping[str, TensorSpec],
              target_specs: Mapping[str, TensorSpec]):
    """(alias, target, steps, confidence, signals) for each alias paired; and alias → the reason it is
    skipped. ``paired``: source key → target key of the pairs made so far."""
    filled = set(paired.values())
    found, reasons = [], {}
    for alias, key in aliases.items():
        tied = f"tied to {key} (the same tensor in the checkpoint"
        tied += f", which goes to {paired[key]})" if key in paired else ")"
        fits = [(t, f) for t in target_specs if t not in filled
                and (f := fit_member(source_specs[alias], target_specs[t])) is not None]
        if len(fits) == 1:
            (target, (steps, how)), = fits
            filled.add(target)
            found.append((alias, target, steps, TIE_CONFIDENCE if how == SAME else TIE_CONFIDENCE - 0.1,
                          (tied, "the only target key left that fits it", how)))
        else:
            which = f"{len(fits)} target keys left fit it" if fits else "no target key left fits it"
            reasons[alias] = f"{tied}; {which}: write its rule by hand if the target has a tied key of its own"
    return found, reasons
