"""Pairings that rest on definition order alone, and how they are reported.

When modules (or containers) fit each other equally and their names do not tell them apart, the
order both sides define them in decides (when both keep it: a state dict or a built model). That
is often right (one architecture under other names), but the order modules are defined in need
not be the order they run in (``out_proj`` registered before ``in_proj``), so such a pair gets a
low confidence, the signal ``order only``, an entry of its own and the advice to prove it with
``mapper verify`` or to write it by hand. Names that agree as well keep the pair's confidence.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

ORDER_ONLY_CONFIDENCE = 0.3  # at most: well below a pair the names or a unique fit back
ADVICE = ("the order modules are defined in need not be the order they run in: prove these pairs with "
          "`mapper verify`, or rename the modules or write their rules by hand")
DEFINITION, FILE = "definition order", "file order"  # where the order came from: built models, or a file
_FILE_ADVICE = ("the order of the keys in a checkpoint need not be the order its modules are defined in, "
                "nor the order they run in: prove these pairs with `mapper verify`, or rename the modules "
                "or write their rules by hand")


@dataclass(frozen=True)
class OrderOnly:
    """A source module or container paired with ``target`` by definition order alone: every one of
    ``candidates`` (``target`` first) fits it as well, and the names do not tell them apart."""

    source: str
    target: str
    candidates: tuple[str, ...]
    reason: str
    basis: str = DEFINITION  # FILE when a checkpoint's key order decided, not a built model's


def order_only(source: str, target: str, candidates: Sequence[str], what: str = "module",
               basis: str = DEFINITION) -> OrderOnly:
    """``basis``: :data:`DEFINITION` when both sides are built models, else :data:`FILE` (the order
    came from a checkpoint's keys, which is never presented as the model's)."""
    others = [c for c in candidates if c != target]
    decided = (f"the order the {what}s are defined in" if basis == DEFINITION else
               f"the order of the {what}s' keys in the checkpoint")
    return OrderOnly(source, target, (target, *others),
                     f"order only: '{source}' -> '{target}': {also_fit(target, others, what)} and the names do "
                     f"not tell them apart, so {decided} decided", basis)


def advice(entries: Sequence[OrderOnly]) -> str:
    """What to do about them, saying a file's order is no model's when one decided."""
    return _FILE_ADVICE if any(e.basis == FILE for e in entries) else ADVICE


def signal(entry: OrderOnly, about: str = "") -> str:
    """The pair's evidence: short, the entry's reason says the rest. ``about``: what was paired, when
    not the pair's own modules (``containers enc -> first``)."""
    return marked(f"ORDER ONLY: {about + ' ' if about else ''}paired by {entry.basis}", entry.candidates)


def warning(entries: Sequence[OrderOnly]) -> str:
    """One warning for all of them, or ``''``."""
    basis = FILE if any(e.basis == FILE for e in entries) else DEFINITION
    return warned(entries, f"by {basis} alone, as the names do not tell the candidates apart", advice(entries))


def also_fit(target: str, others: Sequence[str], what: str = "module") -> str:
    """Which other candidates fit as well, in words."""
    if others:
        return f"{quoted(others)} fit{'s' if len(others) == 1 else ''} it as well"
    return f"'{target}' fits other source {what}s as well"


def marked(label: str, candidates: Sequence[str]) -> str:
    """A pair's first signal: ``label`` and the other candidates (after the target) that fit as well."""
    others = candidates[1:]
    return label + (f" ({quoted(others)} fit as well)" if others else "")


def warned(entries, how: str, what_to_do: str) -> str:
    """One warning for all ``entries`` decided ``how``, with what to do; ``''`` when none."""
    if not entries:
        return ""
    n = len(entries)
    return f"{n} pairing{'s' if n != 1 else ''} {how}: {listed(entries)}; {what_to_do}"


def listed(entries) -> str:
    """``'a' -> 'b', ...``: the first five pairs of ``entries`` and how many more."""
    shown = ", ".join(f"'{e.source}' -> '{e.target}'" for e in entries[:5])
    return shown + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")


def quoted(paths: Sequence[str]) -> str:
    shown = ", ".join(f"'{p}'" for p in paths[:3])
    return shown if len(paths) <= 3 else f"{shown} and {len(paths) - 3} more"
