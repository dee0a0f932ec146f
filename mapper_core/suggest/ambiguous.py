"""How the ambiguities of a pairing are warned about: one warning per kind, not one per module.

A model of 48 identical blocks leaves the same ambiguity in every block (its two norms fit each
other's places equally): a warning each would bury everything else the command says. So the
ambiguities of one kind (:data:`~.containers.MODULE`, :data:`~.containers.CONTAINER`,
:data:`~.containers.ARRANGEMENT`) make one warning with their count and the first few; a kind met
once keeps its own sentence. Every one stays in the rules file's ``AMBIGUOUS`` comments and in
``--json`` (``ambiguous``), which the warning points to.
"""
from __future__ import annotations

from typing import Sequence

from .containers import ARRANGEMENT, CONTAINER, MODULE, Ambiguity, shown_path, shown_paths

SHOWN = 3  # examples in a summary: enough to see the pattern, few enough for one line

_SAID = {  # kind → (what is ambiguous, what fits how, why, what to do)
    MODULE: ("modules", "each fit several modules of their paired container equally well",
             "same shapes; names and order do not tell them apart", "pair them by hand"),
    CONTAINER: ("containers", "each fit several containers equally well",
                "same structure, no name or order evidence", "pair them by hand"),
    ARRANGEMENT: ("containers", "have modules that fit those of another container in more than one way",
                  "same shapes; names and order do not tell them apart", "pair their modules by hand"),
}


def warnings(entries: Sequence[Ambiguity], listed_in: str) -> list[str]:
    """One warning per kind of ambiguity among ``entries``, in the order each kind first appears.
    ``listed_in``: where every one of them is written out (the rules file's comments, the JSON report)."""
    kinds: dict[str, list[Ambiguity]] = {}
    for entry in entries:
        kinds.setdefault(entry.kind, []).append(entry)
    return [group[0].reason if len(group) == 1 else _summary(kind, group, listed_in) for kind, group in kinds.items()]


def _summary(kind: str, group: Sequence[Ambiguity], listed_in: str) -> str:
    what, fit, why, to_do = _SAID[kind]
    joint = "with" if kind == ARRANGEMENT else "fits"
    shown = "; ".join(f"{shown_path(a.source)} {joint} {shown_paths(a.candidates)}" for a in group[:SHOWN])
    more = f"; and {len(group) - SHOWN} more" if len(group) > SHOWN else ""
    return f"ambiguous: {len(group)} {what} {fit} ({why}), e.g. {shown}{more}; {to_do} (every one is listed in {listed_in})"
