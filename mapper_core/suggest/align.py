"""Aligning the children of two containers: which source module goes to which target module.

Numbered children (``features.0``, ``features.3``, ...) keep their order: the alignment is the
longest order-preserving run of fitting modules, so layers inserted or removed on either side are
gaps. Named children (``c_attn``, ``c_proj``) are paired by fit, then by name (only what tells the
candidates apart counts, :mod:`.names`; names that only look alike are marked, :mod:`.weak`); a
child that fits several equally is ambiguous and left unpaired, unless the order both sides define
them in tells them apart: that pairing rests on definition order alone (not forward order) and is
marked as such. An alignment where, between two matched modules, an unmatched source module faces an
unmatched target module of a compatible kind is a *changed* layer (the head whose output size
changed), and the container pair is refused as a whole.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..plan.kinds import compatible
from .fit import ModuleFit, fit_module
from .names import name_scores, telling_word
from .structure import Container, Module


@dataclass(frozen=True)
class Alignment:
    matches: tuple[tuple[int, int, ModuleFit], ...]  # (source child, target child, fit)
    changed: tuple[tuple[int, int], ...]  # (source child, target child) facing each other, not fitting
    ambiguous: tuple[tuple[int, tuple[int, ...]], ...]  # source child → target children it fits equally
    # source child → the target children (its own first) it fits as well by name, of which
    # definition order alone chose: the names do not tell them apart
    by_order: tuple[tuple[int, tuple[int, ...]], ...] = ()
    # source child → the target children (its own first) it fits as well, of which names that only
    # look alike chose (:mod:`.weak`)
    weak: tuple[tuple[int, tuple[int, ...]], ...] = ()

    @property
    def accepted(self) -> bool:
        return bool(self.matches) and not self.changed


def align(src: Container, tgt: Container, by_order: bool = False) -> Alignment:
    """``by_order``: both sides' keys are in definition order (a state dict, not a file that stores
    its keys sorted), so among named children that tie, the order they were defined in decides."""
    if src.numeric and tgt.numeric:
        return _in_order(src.children, tgt.children)
    return _by_name(src.children, tgt.children, by_order)


def _in_order(a: tuple[Module, ...], b: tuple[Module, ...]) -> Alignment:
    n, m = len(a), len(b)
    fits = [[fit_module(x, y) for y in b] for x in a]
    # best[i][j]: most matches aligning a[i:] with b[j:]
    best = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            here = best[i + 1][j + 1] + 1 if fits[i][j] is not None else -1
            best[i][j] = max(here, best[i + 1][j], best[i][j + 1])
    matches, i, j = [], 0, 0
    while i < n and j < m:  # prefer a match, then skipping a target child (an inserted layer)
        if fits[i][j] is not None and best[i][j] == best[i + 1][j + 1] + 1:
            matches.append((i, j, fits[i][j]))
            i, j = i + 1, j + 1
        elif best[i][j] == best[i][j + 1]:
            j += 1
        else:
            i += 1
    return Alignment(tuple(matches), _changed(a, b, matches), ())


def _changed(a, b, matches) -> tuple[tuple[int, int], ...]:
    """Unmatched source and target children facing each other in a gap, of compatible kinds."""
    bounds = [(-1, -1)] + [(i, j) for i, j, _ in matches] + [(len(a), len(b))]
    found = []
    for (i0, j0), (i1, j1) in zip(bounds, bounds[1:]):
        for i in range(i0 + 1, i1):
            for j in range(j0 + 1, j1):
                if compatible(a[i].kind, b[j].kind) or {a[i].kind, b[j].kind} <= {"linear", "matrix", "conv"}:
                    found.append((i, j))
                    break
    return tuple(found)


def _by_name(a: tuple[Module, ...], b: tuple[Module, ...], by_order: bool) -> Alignment:
    fits = {(i, j): f for i, x in enumerate(a) for j, y in enumerate(b) if (f := fit_module(x, y)) is not None}
    names = name_scores([x.child for x in a], [y.child for y in b], fits)
    ordinal_a, ordinal_b = _ordinals(a), _ordinals(b)
    place_a, place_b = (_places(a), _places(b)) if by_order else ({}, {})
    options = []
    for (i, j), f in fits.items():
        x, y = a[i], b[j]
        same = x.child == y.child
        order, named = _tie_break(ordinal_a.get(i), ordinal_b.get(j), place_a.get(i), place_b.get(j))
        options.append((-(2.0 if same else names[(i, j)] + _digits(x.child, y.child)), order, i, j, f, named))
    options.sort(key=lambda o: o[:4])
    # child → how it was taken: on the evidence (or left out as ambiguous), by definition order
    # alone, or on weak name evidence; open while absent
    used_a: dict[int, str] = {}
    used_b: dict[int, str] = {}
    matches, ambiguous, ordered, weak = [], [], [], []
    for k, (score, order, i, j, f, named) in enumerate(options):
        if i in used_a or j in used_b:
            continue
        rivals = [o for o in options if o[:2] == (score, order) and o is not options[k] and
                  ((o[2] == i and o[3] not in used_b) or (o[3] == j and o[2] not in used_a))]
        if rivals:
            if i not in {x for x, _ in ambiguous}:
                ambiguous.append((i, tuple(sorted({j, *(o[3] for o in rivals if o[2] == i)}))))
            used_a[i] = _EVIDENCE
            continue
        # open, or taken on no better evidence than this: the alternatives this pair was chosen over
        others = [o for o in options if o is not options[k] and
                  ((o[2] == i and used_b.get(o[3]) != _EVIDENCE) or (o[3] == j and used_a.get(o[2]) != _EVIDENCE))]
        # as good by name, and open: the tie-break decided, and unless ordinals in the names did
        # (conv1 before conv2), that was the order of definition
        equal = [o for o in others if o[0] == score and
                 (used_b.get(o[3]) if o[2] == i else used_a.get(o[2])) != _WEAK]
        how = _ORDER if equal and not named else _EVIDENCE
        if others and not equal and score > -2.0:
            # names that differ decided (or left this pair after a weak decision): they share a
            # word the alternatives lack, or the evidence is weak
            rival_b = [b[o[3]].child for o in others if o[2] == i]
            rival_a = [a[o[2]].child for o in others if o[3] == j]
            if telling_word(a[i].child, b[j].child, rival_b, rival_a) is None:
                how = _WEAK
                weak.append((i, (j, *sorted({o[3] for o in others if o[2] == i}))))
        if how == _ORDER:
            ordered.append((i, (j, *sorted({o[3] for o in equal if o[2] == i}))))
        used_a[i] = used_b[j] = how
        matches.append((i, j, f))
    matches.sort()
    return Alignment(tuple(matches), (), tuple(ambiguous), tuple(sorted(ordered)), tuple(sorted(weak)))


_EVIDENCE, _ORDER, _WEAK = "evidence", "order", "weak"


_ORDINAL = re.compile(r"(.*?)(?:(\d+)|_([a-z]))")  # conv1, ln_2, conv_a: a stem and its ordinal


def _ordinals(children: tuple[Module, ...]) -> dict[int, tuple[int, int]]:
    """Child → (rank, how many) among siblings that share a stem and differ by an ordinal
    (``conv1``, ``conv2``; ``norm_a``, ``norm_b``), ranked by the ordinal, not by storage order."""
    families: dict[str, list[tuple[object, int]]] = {}
    for i, m in enumerate(children):
        found = _ORDINAL.fullmatch(m.child)
        if found:
            stem, number, letter = found.groups()
            families.setdefault(stem, []).append((int(number) if number else letter, i))
    ranks = {}
    for members in families.values():
        if len(members) > 1 and len({type(o) for o, _ in members}) == 1:
            for rank, (_, i) in enumerate(sorted(members)):
                ranks[i] = (rank, len(members))
    return ranks


def _places(children: tuple[Module, ...]) -> dict[int, tuple[int, int]]:
    """Child → (place, how many) among siblings of the same kind and member shapes, in definition order."""
    families: dict[tuple, list[int]] = {}
    for i, m in enumerate(children):
        families.setdefault((m.kind, tuple((n, s.shape) for n, s in m.members)), []).append(i)
    return {i: (place, len(members)) for members in families.values() if len(members) > 1
            for place, i in enumerate(sorted(members, key=lambda i: children[i].order))}


def _tie_break(ordinal_x, ordinal_y, place_x, place_y) -> tuple[int, bool]:
    """0 when ``x`` and ``y`` hold the same rank among like siblings (by ordinal, else by definition
    order), 2 when a different one, 1 when that cannot be told; and whether the names' ordinals
    told it. Used only between equal names."""
    for rx, ry, named in ((ordinal_x, ordinal_y, True), (place_x, place_y, False)):
        if rx and ry and rx[1] == ry[1]:
            return (0 if rx[0] == ry[0] else 2), named
    return 1, False


def _digits(x: str, y: str) -> float:
    """A small bonus when two names carry the same numbers (``ln_1`` and ``norm1``)."""
    dx, dy = [c for c in x if c.isdigit()], [c for c in y if c.isdigit()]
    return 0.5 if dx and dx == dy else 0.0
