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
from .fit import FEW, PAIR_LIMIT, ModuleFit, fit_module, fitting, key_groups
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
    # what was not compared, past PAIR_LIMIT pairs (mapper suggest says so: LIMITED); "" if nothing
    limited: str = ""

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
    # a leading run of children that fit one another is matched as the walk below would match it
    # (a[0] fitting b[0] is in some longest alignment), without the n × m table: the same layers
    # on both sides cost n
    matches: list[tuple[int, int, ModuleFit]] = []
    while len(matches) < min(len(a), len(b)) and \
            (f := fit_module(a[len(matches)], b[len(matches)])) is not None:
        matches.append((len(matches), len(matches), f))
    start = len(matches)
    rest, limited = _longest(a[start:], b[start:])
    matches += [(i + start, j + start, f) for i, j, f in rest]
    return Alignment(tuple(matches), _changed(a, b, matches), (), limited=limited)


def _longest(a: tuple[Module, ...], b: tuple[Module, ...]) -> tuple[list[tuple[int, int, ModuleFit]], str]:
    """The longest order-preserving run of fitting modules, preferring a match, then skipping a
    target child (an inserted layer); and, when the table was cut to a band, what was left out.
    Past :data:`PAIR_LIMIT` pairs, only alignments that shift a child a few places more than the
    difference in length requires are tried: a few layers inserted or removed, not thousands."""
    n, m = len(a), len(b)
    lo, hi, slack = -n, m, 0  # the diagonals j - i of the table that are filled
    limited = ""
    if n * m > PAIR_LIMIT:
        slack = max(FEW, (PAIR_LIMIT // max(n, m) - abs(n - m)) // 2)
        lo, hi = min(0, m - n) - slack, max(0, m - n) + slack
    pairs = [(i, j) for i in range(n) for j in range(max(0, i + lo), min(m, i + hi + 1))]
    if len(pairs) < n * m:
        limited = (f"{n * m - len(pairs):,} of {n * m:,} pairs of modules not compared (over {PAIR_LIMIT:,}); only "
                   f"alignments that shift a layer at most {slack} places beyond the {abs(n - m)} layers added or "
                   "removed were tried")
    fits = {(i, j): f for i, j, f in fitting(a, b, pairs)}
    # best[(i, j)]: most matches aligning a[i:] with b[j:]; a cell off the band is never taken
    best: dict[tuple[int, int], int] = {}
    off = -1 - n - m

    def at(i: int, j: int) -> int:
        return 0 if i == n or j == m else best.get((i, j), off)
    for i, j in reversed(pairs):
        here = at(i + 1, j + 1) + 1 if (i, j) in fits else -1
        best[(i, j)] = max(here, at(i + 1, j), at(i, j + 1))
    matches, i, j = [], 0, 0
    while i < n and j < m:  # prefer a match, then skipping a target child (an inserted layer)
        if (i, j) in fits and at(i, j) == at(i + 1, j + 1) + 1:
            matches.append((i, j, fits[(i, j)]))
            i, j = i + 1, j + 1
        elif at(i, j) == at(i, j + 1):
            j += 1
        else:
            i += 1
    return matches, limited


def _changed(a, b, matches) -> tuple[tuple[int, int], ...]:
    """Unmatched source and target children facing each other in a gap, of compatible kinds."""
    bounds = [(-1, -1)] + [(i, j) for i, j, _ in matches] + [(len(a), len(b))]
    found = []
    for (i0, j0), (i1, j1) in zip(bounds, bounds[1:]):
        first: dict[str, int] = {}  # per kind, its first target child in the gap: a few kinds, not m children
        for j in range(j0 + 1, j1):
            first.setdefault(b[j].kind, j)
        for i in range(i0 + 1, i1):
            facing = [j for kind, j in first.items() if compatible(a[i].kind, kind) or
                      {a[i].kind, kind} <= {"linear", "matrix", "conv"}]
            if facing:
                found.append((i, min(facing)))
    return tuple(found)


def _by_name(a: tuple[Module, ...], b: tuple[Module, ...], by_order: bool) -> Alignment:
    pairs, unchecked = _comparable(a, b)
    fits = {(i, j): f for i, j, f in fitting(a, b, pairs)}
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
    # each option's rivals and alternatives share its source or its target child: look only there
    by_a: dict[int, list] = {}
    by_b: dict[int, list] = {}
    for o in options:
        by_a.setdefault(o[2], []).append(o)
        by_b.setdefault(o[3], []).append(o)
    # child → how it was taken: on the evidence (or left out as ambiguous), by definition order
    # alone, or on weak name evidence; open while absent
    used_a: dict[int, str] = {}
    used_b: dict[int, str] = {}
    matches, ambiguous, ordered, weak = [], [], [], []
    for option in options:
        score, order, i, j, f, named = option
        if i in used_a or j in used_b:
            continue
        near = [o for o in by_a[i] if o is not option] + [o for o in by_b[j] if o is not option]
        rivals = [o for o in near if o[:2] == (score, order) and
                  ((o[2] == i and o[3] not in used_b) or (o[3] == j and o[2] not in used_a))]
        if rivals:
            if i not in {x for x, _ in ambiguous}:
                ambiguous.append((i, tuple(sorted({j, *(o[3] for o in rivals if o[2] == i)}))))
            used_a[i] = _EVIDENCE
            continue
        # open, or taken on no better evidence than this: the alternatives this pair was chosen over
        others = [o for o in near if
                  (o[2] == i and used_b.get(o[3]) != _EVIDENCE) or (o[3] == j and used_a.get(o[2]) != _EVIDENCE)]
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
    limited = (f"{unchecked:,} pairs of like modules not compared (over {PAIR_LIMIT:,}); only those with the same "
               "name or the same numbers in it were") if unchecked else ""
    return Alignment(tuple(matches), (), tuple(ambiguous), tuple(sorted(ordered)), tuple(sorted(weak)), limited)


def _comparable(a: tuple[Module, ...], b: tuple[Module, ...]) -> tuple[list[tuple[int, int]], int]:
    """The child pairs to compare, in order, and how many were not: every pair of modules of one
    fit key, unless they are more than :data:`PAIR_LIMIT`; then only those with the same name or
    the same numbers in their names (``layer7`` and ``block7``), which is what name evidence
    could pick among so many alike."""
    pairs: list[tuple[int, int]] = []
    unchecked = 0
    for xs, ys in key_groups(a, b):
        if len(xs) * len(ys) <= PAIR_LIMIT:
            pairs.extend((i, j) for i in xs for j in ys)
            continue
        by_name = {b[j].child: j for j in ys}
        by_digits: dict[str, list[int]] = {}
        for j in ys:
            by_digits.setdefault(_digit_text(b[j].child), []).append(j)
        by_digits.pop("", None)
        before = len(pairs)
        for i in xs:
            found = set(by_digits.get(_digit_text(a[i].child), ())[:FEW])
            if a[i].child in by_name:
                found.add(by_name[a[i].child])
            pairs.extend((i, j) for j in found)
        unchecked += len(xs) * len(ys) - (len(pairs) - before)
    pairs.sort()
    return pairs, unchecked


def _digit_text(name: str) -> str:
    return "".join(c for c in name if c.isdigit())


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
