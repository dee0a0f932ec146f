"""Pairing a source model with a target model, tensor by tensor, from structure, names and shapes.

Containers (the modules under one parent path) are paired first: a pair is a candidate when its
children align (:mod:`.align`), and candidates are scored by how much of both containers they
cover, whether the shapes are equal, name similarity, equal numbers in the paths, and order
among containers of the same structure. Pairs are taken best first, one to one; when two
candidates tie on the strong signals, the pairing is ambiguous and neither is taken.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from ..specs import TensorSpec, format_shape
from .align import Alignment, align
from .fit import SAME, Steps, fit_member, fit_module, is_square_linear, stored_transposed
from .orientation import Orientation
from .structure import Container, Structure, build_structure, name_similarity, trigrams

_TIE = 1e-9


@dataclass(frozen=True)
class Pair:
    """One source tensor → one target tensor, with its steps, confidence (0-1) and signals."""

    source: str
    target: str
    steps: Steps
    confidence: float
    signals: tuple[str, ...]
    link: int  # index of the container link (or -1 for a top-level key)


@dataclass(frozen=True)
class Link:
    """A source container paired with a target container."""

    source: str
    target: str
    modules: int
    signals: tuple[str, ...]
    confidence: float


@dataclass(frozen=True)
class Left:
    """A key left out of the pairing (source: skipped; target: new), and why."""

    key: str
    reason: str


@dataclass(frozen=True)
class Ambiguity:
    source: str
    candidates: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Pairing:
    pairs: tuple[Pair, ...]
    links: tuple[Link, ...]
    skipped: tuple[Left, ...]
    new: tuple[Left, ...]
    ambiguous: tuple[Ambiguity, ...]
    source_specs: Mapping[str, TensorSpec] = field(repr=False)
    target_specs: Mapping[str, TensorSpec] = field(repr=False)


def pair_models(source_specs: Mapping[str, TensorSpec], target_specs: Mapping[str, TensorSpec],
                source_types: Mapping[str, str] | None = None,
                target_types: Mapping[str, str] | None = None) -> Pairing:
    """Pair every source tensor with a target tensor where the evidence allows."""
    src, tgt = build_structure(source_specs, source_types), build_structure(target_specs, target_types)
    candidates, refused, tied = _candidates(src, tgt)
    chosen, ambiguous = _assign(candidates)
    orientation = Orientation((s.path, [(s.children[i], t.children[j], f) for i, j, f in c["alignment"].matches])
                              for s, t, c in chosen)
    pairs, links, reasons_s, reasons_t = [], [], {}, {}
    ambiguous = list(ambiguous)
    for s, t, cand in chosen:
        link = len(links)
        a: Alignment = cand["alignment"]
        links.append(Link(s.path, t.path, len(a.matches), cand["signals"], cand["confidence"]))
        matched_s, matched_t = set(), set()
        for i, j, fit in a.matches:
            ms, mt = s.children[i], t.children[j]
            matched_s.add(i)
            matched_t.add(j)
            signals, square = list(cand["signals"]), ""
            if is_square_linear(ms) and None in (stored_transposed(ms), stored_transposed(mt)):
                fit, square = _square(ms, mt, fit, orientation.decide(s.path))
            if not fit.same_dtype:
                signals.append("dtype differs")
            for member, steps, how in fit.steps:
                extra = (square,) if square and member == "weight" else ()
                pairs.append(Pair(f"{ms.path}.{member}", f"{mt.path}.{member}", steps,
                                  cand["confidence"], (how, *signals, *extra), link))
        for i, js in a.ambiguous:
            names = tuple(t.children[j].path for j in js)
            ambiguous.append(Ambiguity(s.children[i].path, names, (
                f"ambiguous: '{s.children[i].path}' fits {', '.join(map(_name, names))} equally well "
                "(same shapes; names and order do not tell them apart); pair it by hand")))
            reasons_s[s.children[i].path] = ambiguous[-1].reason
            matched_s.add(i)
        for j in {j for _, js in a.ambiguous for j in js} - matched_t:
            reasons_t[t.children[j].path] = (f"ambiguous: more than one module of {_name(s.path)} fits it equally "
                                             "well; pair it by hand")
            matched_t.add(j)
        for i, m in enumerate(s.children):
            if i not in matched_s:
                reasons_s[m.path] = f"no counterpart in {_name(t.path)} ({_name(s.path)} is paired with it; a removed layer)"
        for j, m in enumerate(t.children):
            if j not in matched_t:
                reasons_t[m.path] = f"a layer {_name(t.path)} adds ({_name(s.path)} is paired with it)"
    paired_s = {s.path for s, _, _ in chosen}
    paired_t = {t.path for _, t, _ in chosen}
    for amb in list(ambiguous):
        for child in next((c.children for c in src.containers if c.path == amb.source), ()):
            reasons_s.setdefault(child.path, amb.reason)
    lost_s, lost_t = _lost(candidates, chosen)
    for c in src.containers:
        if c.path not in paired_s:
            why = lost_s.get(c.path) or refused.get(("s", c.path))
            if why is None and ("s", c.path) in tied:
                targets = tied[("s", c.path)]
                why = (f"ambiguous: the modules of {_name(c.path)} fit those of {_names(targets)} "
                       "in more than one way (same shapes; names and order do not tell them apart); pair them by hand")
                ambiguous.append(Ambiguity(c.path, targets, why))
            for m in c.children:
                reasons_s.setdefault(
                    m.path, why or f"no target container has modules that fit those of {_name(c.path)}")
    for c in tgt.containers:
        if c.path not in paired_t:
            why = lost_t.get(c.path) or refused.get(("t", c.path))
            if why is None and ("t", c.path) in tied:
                why = (f"ambiguous: the modules of {_names(tied[('t', c.path)])} fit its modules in more "
                       "than one way; pair them by hand")
            for m in c.children:
                reasons_t.setdefault(
                    m.path, why or f"no source container has modules that fit those of {_name(c.path)}")
    leftovers = _leftovers(src, tgt, reasons_s, reasons_t)
    for ms, mt, fit, signals, confidence in leftovers:
        link = len(links)
        links.append(Link(ms.path.rpartition(".")[0], mt.path.rpartition(".")[0], 1, signals, confidence))
        pairs.extend(Pair(f"{ms.path}.{member}", f"{mt.path}.{member}", steps, confidence, (how, *signals), link)
                     for member, steps, how in fit.steps)
    pairs.extend(_loose(src, tgt))
    taken = {p.source for p in pairs}
    skipped = [Left(k, reasons_s.get(_module(k), "a top-level key with no target of that name and shape"))
               for k in source_specs if k not in taken]
    filled = {p.target for p in pairs}
    new = [Left(k, reasons_t.get(_module(k), "a top-level key no source key fills"))
           for k in target_specs if k not in filled]
    order = {k: i for i, k in enumerate(source_specs)}
    pairs.sort(key=lambda p: order[p.source])
    return Pairing(tuple(pairs), tuple(links), tuple(skipped), tuple(new), tuple(ambiguous),
                   source_specs, target_specs)


def _lost(candidates, chosen) -> tuple[dict[str, str], dict[str, str]]:
    """For each container left unpaired although another fits it: which, and where that one went."""
    partner_s = {s.path: t.path for s, t, _ in chosen}
    partner_t = {t.path: s.path for s, t, _ in chosen}
    lost_s: dict[str, str] = {}
    lost_t: dict[str, str] = {}
    for cand in sorted(candidates, key=lambda c: -c["strong"]):
        s, t = cand["s"].path, cand["t"].path
        if s not in partner_s and t in partner_t:
            lost_s.setdefault(s, f"its best fit {_name(t)} is paired with {_name(partner_t[t])} instead")
        if t not in partner_t and s in partner_s:
            lost_t.setdefault(t, f"its best fit {_name(s)} is paired with {_name(partner_s[s])} instead")
    return lost_s, lost_t


def _leftovers(src: Structure, tgt: Structure, reasons_s: dict, reasons_t: dict):
    """Modules the container pairing left on both sides (removed or added layers, or in containers
    nothing fits), paired where each is the other's only fit among them: ``fc`` that moved to
    ``head.fc``. Only modules with a matrix or kernel (a norm's [C] vectors fit too much to go by),
    and never those left out for a changed layer or an ambiguity: that reason stands."""
    def free(structure, reasons, ambiguous_word):
        return [m for c in structure.containers for m in c.children
                if m.path in reasons and not reasons[m.path].startswith(ambiguous_word)
                and "changed layer" not in reasons[m.path] and _has_matrix(m)]
    left_s, left_t = free(src, reasons_s, "ambiguous"), free(tgt, reasons_t, "ambiguous")
    fits = {(a, b): f for a, ms in enumerate(left_s) for b, mt in enumerate(left_t)
            if (f := fit_module(ms, mt)) is not None}
    found = []
    for (a, b), fit in fits.items():
        if sum(x == a for x, _ in fits) == 1 and sum(y == b for _, y in fits) == 1:
            ms, mt = left_s[a], left_t[b]
            same = ms.child == mt.child
            signals = ("the only leftover module of its shape on either side",
                       "same name" if same else "renamed", *(() if fit.same_dtype else ("dtype differs",)))
            found.append((ms, mt, fit, signals, 0.7 if same else 0.5))
            for reasons, m in ((reasons_s, ms), (reasons_t, mt)):
                reasons.pop(m.path)
    return found


def _has_matrix(m) -> bool:
    weight = dict(m.members).get("weight")
    return weight is not None and len(weight.shape) >= 2


def _square(ms, mt, fit, decided: tuple[bool | None, str]):
    """A square matrix's fit and its signal: as its neighbours are stored (:mod:`.orientation`), else,
    with no neighbour to go by, as a known ``Conv1D`` on one side says."""
    transpose, why = decided
    if transpose is None and not why and True in (stored_transposed(ms), stored_transposed(mt)):
        transpose, why = True, "square matrix transposed: a Conv1D faces a module of unknown type"
    return (fit_module(ms, mt, True) or fit) if transpose else fit, why


def _module(key: str) -> str:
    return key.rpartition(".")[0]


def _name(path: str) -> str:
    return f"'{path}'" if path else "the root module"


def _names(paths) -> str:
    shown = ", ".join(map(_name, paths[:3]))
    return shown if len(paths) <= 3 else f"{shown} and {len(paths) - 3} more"


def _candidates(src: Structure, tgt: Structure):
    """Every accepted container pair with its scores; and, for containers with no accepted pair,
    the reason their closest refused candidate was refused. Containers of one structure are
    aligned once per structure of the other side."""
    ids_s, ids_t = _structure_ids(src.containers), _structure_ids(tgt.containers)
    rank_s, rank_t = _ranks(ids_s), _ranks(ids_t)
    by_id_s: dict[int, list[int]] = {}
    by_id_t: dict[int, list[int]] = {}
    for a, i in enumerate(ids_s):
        by_id_s.setdefault(i, []).append(a)
    for b, i in enumerate(ids_t):
        by_id_t.setdefault(i, []).append(b)
    grams_s = [trigrams(c.path) for c in src.containers]
    grams_t = [trigrams(c.path) for c in tgt.containers]
    index_s = [c.indices for c in src.containers]
    index_t = [c.indices for c in tgt.containers]
    accepted, refused, closest, tied = [], {}, {}, {}
    for sid, sources in by_id_s.items():
        first = src.containers[sources[0]]
        for tid, targets in by_id_t.items():
            al = align(first, tgt.containers[targets[0]], src.ordered and tgt.ordered)
            if not al.matches:
                if al.ambiguous:  # they fit, in more than one way: not "nothing fits"
                    for a in sources:
                        tied.setdefault(("s", src.containers[a].path), []).extend(tgt.containers[b].path
                                                                                 for b in targets)
                    for b in targets:
                        tied.setdefault(("t", tgt.containers[b].path), []).extend(src.containers[a].path
                                                                                 for a in sources)
                continue
            n = len(al.matches)
            coverage = n / max(len(first.children), len(tgt.containers[targets[0]].children))
            exact = sum(f.exact for _, _, f in al.matches) / n
            for a in sources:
                s = src.containers[a]
                for b in targets:
                    t = tgt.containers[b]
                    if not al.accepted:
                        _refusal(s, t, al, coverage, closest, refused)
                        continue
                    name = name_similarity(grams_s[a], grams_t[b])
                    same_idx = bool(index_s[a]) and index_s[a] == index_t[b]
                    in_order = rank_s[a] == rank_t[b]
                    accepted.append({"s": s, "t": t, "alignment": al, "coverage": coverage, "exact": exact,
                                     "name_sim": name, "same_idx": same_idx, "in_order": in_order,
                                     "strong": 2 * coverage + 0.5 * exact + name + 0.5 * same_idx + 0.5 * in_order,
                                     "name": max(name, float(same_idx or in_order))})
    return accepted, refused, {k: tuple(v) for k, v in tied.items()}


def _signals(cand) -> list[str]:
    """The evidence of a chosen container pair, in words."""
    s, t, matches = cand["s"], cand["t"], cand["alignment"].matches
    n = len(matches)
    modules = f"{n} module{'s' if n != 1 else ''}"
    if s.numeric and t.numeric:
        signals = [f"{modules} in order"]
    else:  # named children are paired by fit, then by name: say how many names agree
        same = sum(s.children[i].child == t.children[j].child for i, j, _ in matches)
        signals = [f"{modules} by name" if same == n else
                   f"{modules} by fit ({same} of {n} with the same name)" if same else f"{modules} by fit, renamed"]
    if cand["name_sim"] > 0:
        signals.append(f"name similarity {cand['name_sim']:.2f}")
    if cand["same_idx"]:
        signals.append("same layer numbers")
    if cand["in_order"]:
        signals.append("same place among like containers")
    return signals


def _refusal(s: Container, t: Container, al: Alignment, coverage: float, closest: dict, refused: dict) -> None:
    """Remember why the closest refused candidate of ``s`` and of ``t`` was refused."""
    i, j = al.changed[0]
    facing = (f"{len(al.matches)} of {len(s.children)} modules fit; {s.children[i].path} "
              f"{_shapes(s.children[i])} faces {t.children[j].path} {_shapes(t.children[j])}: "
              "a changed layer, so the whole container is left out")
    for side, c, other in (("s", s, f"closest: {_name(t.path)}"), ("t", t, f"closest source: {_name(s.path)}")):
        if coverage > closest.get((side, c.path), -1):
            closest[(side, c.path)] = coverage
            refused[(side, c.path)] = f"{other} ({facing})"


def _shapes(m) -> str:
    w = dict(m.members).get("weight")
    return f"{m.label() if m.type_name else m.kind} {format_shape(w.shape) if w is not None else ''}".strip()


def _structure_ids(containers) -> list[int]:
    ids: dict[tuple, int] = {}
    return [ids.setdefault(c.structure(), len(ids)) for c in containers]


def _ranks(ids) -> list[tuple[int, int]]:
    """(place among containers of the same structure, how many there are)."""
    counts: dict[int, int] = {}
    places = []
    for i in ids:
        places.append(counts.get(i, 0))
        counts[i] = counts.get(i, 0) + 1
    return [(p, counts[i]) for p, i in zip(places, ids)]


def _assign(candidates):
    """Best first, one to one; a tie on the strong score for a free container is an ambiguity."""
    candidates = sorted(candidates, key=lambda c: (-c["strong"], c["s"].order, c["t"].order))
    by_s: dict[str, list] = {}
    by_t: dict[str, list] = {}
    for c in candidates:
        by_s.setdefault(c["s"].path, []).append(c)
        by_t.setdefault(c["t"].path, []).append(c)
    used_s, used_t, chosen, ambiguous = set(), set(), [], []
    for cand in candidates:
        s, t = cand["s"], cand["t"]
        if s.path in used_s or t.path in used_t:
            continue
        free = [c for c in by_s[s.path] if c["t"].path not in used_t and c is not cand] + \
               [c for c in by_t[t.path] if c["s"].path not in used_s and c is not cand]
        rivals = [c for c in free if abs(c["strong"] - cand["strong"]) < _TIE]
        if rivals:
            targets = sorted({t.path, *(c["t"].path for c in rivals if c["s"].path == s.path)})
            ambiguous.append(Ambiguity(s.path, tuple(targets), (
                f"ambiguous: {_name(s.path)} fits {', '.join(map(_name, targets))} equally well "
                "(same structure, no name or order evidence); pair it by hand")))
            used_s.add(s.path)  # neither is taken: the target stays free for another source
            continue
        second = max((c["strong"] for c in free), default=0.0)
        margin = min(1.0, 4 * (cand["strong"] - second) / cand["strong"])
        cand["signals"] = _signals(cand)
        cand["confidence"] = round(0.4 * cand["coverage"] + 0.2 * cand["exact"] + 0.2 * min(1.0, cand["name"])
                                   + 0.2 * margin, 2)
        if second > 0:
            cand["signals"] = [*cand["signals"], f"best of {len(free) + 1} candidates by {cand['strong'] - second:.2f}"]
        used_s.add(s.path)
        used_t.add(t.path)
        chosen.append((s, t, cand))
    chosen.sort(key=lambda x: x[0].order)
    return chosen, ambiguous


def _loose(src: Structure, tgt: Structure) -> list[Pair]:
    """Top-level keys (no dot) pair only with a key of the same name and a fitting shape."""
    target = {name: spec for m in tgt.loose for name, spec in m.members}
    pairs = []
    for m in src.loose:
        for name, spec in m.members:
            found = fit_member(spec, target[name]) if name in target else None
            if found is not None:
                pairs.append(Pair(name, name, found[0], 1.0 if found[1] == SAME else 0.8,
                                  ("same name", found[1]), -1))
    return pairs
