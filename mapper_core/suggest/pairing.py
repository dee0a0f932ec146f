"""Pairing a source model with a target model, tensor by tensor, from structure, names and shapes.

Containers (the modules under one parent path) are paired first (:mod:`.containers`), then the
modules inside each pair of containers (:mod:`.align`) give the tensor pairs; modules left over
on both sides are paired where each is the other's only fit. A pair that only the order of
definition told apart is marked (:mod:`.order`), and so is one that names which only look alike
told apart (:mod:`.weak`).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping

from ..specs import TensorSpec
from .align import Alignment
from .containers import ARRANGEMENT, MODULE, Ambiguity, assign_containers, container_candidates, containers_named
from .containers import shown_path as _name, shown_paths as _names
from .fit import (PAIR_LIMIT, SAME, Steps, fit_member, fit_module, fitting, is_square_linear, key_groups,
                  stored_transposed)
from .order import DEFINITION, FILE, ORDER_ONLY_CONFIDENCE, OrderOnly, order_only, signal
from .orientation import Orientation
from .structure import Module, Structure, build_structure
from .ties import known_aliases, pair_ties
from .weak import WEAK_NAMES_CONFIDENCE, WeakNames, weak_names
from .weak import signal as weak_signal


@dataclass(frozen=True)
class Pair:
    """One source tensor → one target tensor, with its steps, confidence (0-1) and signals."""

    source: str
    target: str
    steps: Steps
    confidence: float
    signals: tuple[str, ...]
    link: int  # index of the container link (or -1 for a top-level key)
    order_only: bool = False  # paired by definition order alone (:mod:`.order`)
    weak_names: bool = False  # paired by names that only look alike (:mod:`.weak`)


@dataclass(frozen=True)
class Link:
    """A source container paired with a target container."""

    source: str
    target: str
    modules: int
    signals: tuple[str, ...]
    confidence: float
    order_only: bool = False  # this container paired with that one by definition order alone


@dataclass(frozen=True)
class Left:
    """A key left out of the pairing (source: skipped; target: new), and why."""

    key: str
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
    order_only: tuple[OrderOnly, ...] = ()  # what definition order alone decided, in model order
    weak_names: tuple[WeakNames, ...] = ()  # what names that only look alike decided, in model order
    limited: tuple[str, ...] = ()  # where too many alike were compared only in part (fit.PAIR_LIMIT)


def pair_models(source_specs: Mapping[str, TensorSpec], target_specs: Mapping[str, TensorSpec],
                source_types: Mapping[str, str] | None = None,
                target_types: Mapping[str, str] | None = None,
                source_aliases: Mapping[str, str] | None = None) -> Pairing:
    """Pair every source tensor with a target tensor where the evidence allows. ``source_aliases``:
    alias → key of the checkpoint's tied keys (its reader's ``aliases()``), paired as ties (:mod:`.ties`)."""
    aliases = known_aliases(source_aliases, source_specs)
    own = {k: v for k, v in source_specs.items() if k not in aliases} if aliases else source_specs
    src, tgt = build_structure(own, source_types), build_structure(target_specs, target_types)
    basis = DEFINITION if source_types is not None and target_types is not None else FILE
    candidates, refused, tied, limited = container_candidates(src, tgt)
    chosen, ambiguous = assign_containers(candidates)
    orientation = Orientation((s.path, [(s.children[i], t.children[j], f) for i, j, f in c["alignment"].matches])
                              for s, t, c in chosen)
    pairs, links, reasons_s, reasons_t, by_order, own_links, by_weak = [], [], {}, {}, [], [], []
    ambiguous = list(ambiguous)
    for s, t, cand in chosen:
        link = len(links)
        a: Alignment = cand["alignment"]
        link_order = cand["order_only"]
        containers = containers_named(s.path, t.path)
        about_containers = f"{containers}: {', '.join(cand['signals'])}"  # said apart from the pair's own signals
        link_alone = order_only(s.path, t.path, link_order, "container", basis) if link_order else None
        if link_alone is not None:
            by_order.append(link_alone)
        links.append(Link(s.path, t.path, len(a.matches), cand["signals"],
                          min(cand["confidence"], ORDER_ONLY_CONFIDENCE) if link_order else cand["confidence"],
                          bool(link_order)))
        own_links.append((link, s.path, t.path, f"own tensors of {about_containers}", links[-1].confidence))
        child_order, child_weak = dict(a.by_order), dict(a.weak)
        matched_s, matched_t = set(), set()
        for i, j, fit in a.matches:
            ms, mt = s.children[i], t.children[j]
            matched_s.add(i)
            matched_t.add(j)
            signals, square = [about_containers], ""
            if is_square_linear(ms) and None in (stored_transposed(ms), stored_transposed(mt)):
                fit, square = _square(ms, mt, fit, orientation.decide(s.path))
            if not fit.same_dtype:
                signals.append("dtype differs")
            alone, first = (link_alone, (signal(link_alone, containers),)) if link_alone is not None else (None, ())
            if i in child_order:
                alone = order_only(ms.path, mt.path, [t.children[x].path for x in child_order[i]], basis=basis)
                by_order.append(alone)
                first = (signal(alone),)
            weak = None
            if alone is None and i in child_weak:
                weak = weak_names(ms.path, mt.path, [t.children[x].path for x in child_weak[i]])
                by_weak.append(weak)
                first = (weak_signal(weak),)
            confidence = (min(cand["confidence"], ORDER_ONLY_CONFIDENCE) if alone is not None else
                          min(cand["confidence"], WEAK_NAMES_CONFIDENCE) if weak else cand["confidence"])
            for member, steps, how in fit.steps:
                extra = (square,) if square and member == "weight" else ()
                pairs.append(Pair(f"{ms.path}.{member}", f"{mt.path}.{member}", steps,
                                  confidence, (*first, how, *signals, *extra), link, alone is not None,
                                  weak is not None))
        for i, js in a.ambiguous:
            names = tuple(t.children[j].path for j in js)
            ambiguous.append(Ambiguity(s.children[i].path, names, (
                f"ambiguous: '{s.children[i].path}' fits {', '.join(map(_name, names))} equally well "
                "(same shapes; names and order do not tell them apart); pair it by hand"), MODULE))
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
                ambiguous.append(Ambiguity(c.path, targets, why, ARRANGEMENT))
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
    pairs.extend(_own(src, tgt, own_links, {p.source for p in pairs}, {p.target for p in pairs}))
    ties, tie_reasons = pair_ties(aliases, {p.source: p.target for p in pairs}, source_specs, target_specs)
    pairs.extend(Pair(alias, target, steps, confidence, signals, -1) for alias, target, steps, confidence, signals in ties)
    taken = {p.source for p in pairs}
    skipped = [Left(k, tie_reasons.get(k) or reasons_s.get(_module(k), "a top-level key with no target of that "
                                                                       "name and shape"))
               for k in source_specs if k not in taken]
    filled = {p.target for p in pairs}
    new = [Left(k, reasons_t.get(_module(k), "a top-level key no source key fills"))
           for k in target_specs if k not in filled]
    order = {k: i for i, k in enumerate(source_specs)}
    pairs.sort(key=lambda p: order[p.source])
    return Pairing(tuple(pairs), tuple(links), tuple(skipped), tuple(new), tuple(ambiguous),
                   source_specs, target_specs, tuple(by_order), tuple(by_weak), limited)


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
    # a group of more than PAIR_LIMIT pairs of one fit key is not compared: among so many alike,
    # hardly one fits only one other
    pairs = sorted((a, b) for xs, ys in key_groups(left_s, left_t) if len(xs) * len(ys) <= PAIR_LIMIT
                   for a in xs for b in ys)
    fits = {(a, b): f for a, b, f in fitting(left_s, left_t, pairs)}
    count_s = Counter(a for a, _ in fits)
    count_t = Counter(b for _, b in fits)
    found = []
    for (a, b), fit in fits.items():
        if count_s[a] == 1 and count_t[b] == 1:
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


def _own(src: Structure, tgt: Structure, own_links, taken: set[str], filled: set[str]) -> list[Pair]:
    """A paired container's own tensors (``model.pos_emb`` beside the module ``model.fc``) go where
    the container went: to the member of the same name and a fitting shape among the other
    container's own tensors (``pos_emb``, for ``model`` -> the top level)."""
    own_s, own_t = _own_modules(src), _own_modules(tgt)
    pairs = []
    for link, s_path, t_path, about, confidence in own_links:
        ms, mt = own_s.get(s_path), own_t.get(t_path)
        if ms is None or mt is None:
            continue
        target = dict(mt.members)
        for name, spec in ms.members:
            source_key, target_key = _key(ms.path, name), _key(mt.path, name)
            found = fit_member(spec, target[name]) if name in target else None
            if found is None or source_key in taken or target_key in filled:
                continue
            pairs.append(Pair(source_key, target_key, found[0], min(confidence, 1.0 if found[1] == SAME else 0.8),
                              ("same name", found[1], about), link))
            taken.add(source_key)
            filled.add(target_key)
    return pairs


def _own_modules(structure: Structure) -> dict[str, Module]:
    """Path → the module of that path (``''``: the top-level keys)."""
    found = {m.path: m for c in structure.containers for m in c.children}
    found.update((m.path, m) for m in structure.loose)
    return found


def _key(module: str, member: str) -> str:
    return f"{module}.{member}" if module else member


def _module(key: str) -> str:
    return key.rpartition(".")[0]


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
