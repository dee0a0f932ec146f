"""Pairing the containers of two models: which are candidates (their children align,
:mod:`.align`), how each candidate is scored, and which are taken, best first and one to one.

A candidate is scored by how much of both containers it covers, whether the shapes are equal,
name similarity, equal numbers in the paths, and the place among containers of the same
structure. When two candidates tie on all of it, neither is taken (an ambiguity); when only the
place told them apart, the pair is taken and marked as decided by order alone (:mod:`.order`).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..specs import format_shape
from .align import Alignment, align
from .fit import FEW, PAIR_LIMIT, fit_key
from .structure import Container, Structure, name_similarity, trigrams

_TIE = 1e-9
_ORDER = 0.5  # the weight of the place among like containers in the strong score


MODULE, CONTAINER, ARRANGEMENT = "module", "container", "arrangement"  # the kinds of Ambiguity


@dataclass(frozen=True)
class Ambiguity:
    """A source module or container that fits several equally; it is left unpaired. ``kind``: a
    module that fits several modules of its paired container (:data:`MODULE`), a container that fits
    several containers (:data:`CONTAINER`), or a container whose modules fit another's in more than
    one way (:data:`ARRANGEMENT`)."""

    source: str
    candidates: tuple[str, ...]
    reason: str
    kind: str = MODULE


def shown_path(path: str) -> str:
    return f"'{path}'" if path else "the root module"


def containers_named(source: str, target: str) -> str:
    """``containers net -> net``: what a tensor pair's signal that is about its containers starts with
    (the name similarity or place of ``net`` and ``net`` is not that of ``net.0`` and ``net.out_proj``)."""
    return f"containers {source or '(top level)'} -> {target or '(top level)'}"


def shown_paths(paths) -> str:
    shown = ", ".join(map(shown_path, paths[:3]))
    return shown if len(paths) <= 3 else f"{shown} and {len(paths) - 3} more"


def container_candidates(src: Structure, tgt: Structure):
    """Every accepted container pair with its scores; and, for containers with no accepted pair,
    the reason their closest refused candidate was refused. Containers of one structure are
    aligned once per structure of the other side."""
    ids_s, ids_t = _structure_ids(src.containers), _structure_ids(tgt.containers)
    rank_s, rank_t = _ranks(ids_s), _ranks(ids_t)
    numbered_s, numbered_t = _numbered(src.containers, ids_s), _numbered(tgt.containers, ids_t)
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
    accepted, refused, closest, tied, tied_pairs, limited = [], {}, {}, {}, [], []
    # structure → the target structures with a child of the same fit key: the others have no child
    # that fits, so aligning with them finds nothing (and many distinct siblings would cost n × m)
    near_t: dict[frozenset, set[int]] = {}
    for tid, targets in by_id_t.items():
        for m in tgt.containers[targets[0]].children:
            near_t.setdefault(fit_key(m), set()).add(tid)
    near = {sid: sorted({tid for m in src.containers[sources[0]].children for tid in near_t.get(fit_key(m), ())})
            for sid, sources in by_id_s.items()}
    if sum(map(len, near.values())) > PAIR_LIMIT:
        near, unaligned = _near_structures(near, by_id_s, by_id_t, src, tgt)
        limited.append(f"{len(by_id_s):,} and {len(by_id_t):,} kinds of containers: {unaligned:,} pairs of them not "
                       f"aligned (over {PAIR_LIMIT:,}); only those with the same path or numbers in it were")
    for sid, sources in by_id_s.items():
        first = src.containers[sources[0]]
        for tid in near[sid]:
            targets = by_id_t[tid]
            al = align(first, tgt.containers[targets[0]], src.ordered and tgt.ordered)
            if al.limited:
                limited.append(f"the modules of {shown_path(first.path)} and "
                               f"{shown_path(tgt.containers[targets[0]].path)}: {al.limited}")
            if not al.matches:
                if al.ambiguous:  # they fit, in more than one way: not "nothing fits"
                    if _all_tie(al, first, tgt.containers[targets[0]]):
                        tied_pairs.extend((a, b, al) for a in sources for b in targets
                                          if index_s[a] and index_s[a] == index_t[b])
                    for a in sources:
                        tied.setdefault(("s", src.containers[a].path), []).extend(
                            tgt.containers[b].path for b in _same_numbers(index_s[a], targets, index_t))
                    for b in targets:
                        tied.setdefault(("t", tgt.containers[b].path), []).extend(
                            src.containers[a].path for a in _same_numbers(index_t[b], sources, index_s))
                continue
            n = len(al.matches)
            coverage = n / max(len(first.children), len(tgt.containers[targets[0]].children))
            exact = sum(f.exact for _, _, f in al.matches) / n
            pairs, unscored = _scored(sources, targets, src, tgt, index_s, index_t, rank_s, rank_t)
            if unscored:
                limited.append(f"{len(sources):,} containers like {shown_path(first.path)} and {len(targets):,} like "
                               f"{shown_path(tgt.containers[targets[0]].path)}: {unscored:,} pairs not scored (over "
                               f"{PAIR_LIMIT:,}); only those with the same path, numbers in it or place were")
            for a, b in pairs:
                s, t = src.containers[a], tgt.containers[b]
                if not al.accepted:
                    _refusal(s, t, al, coverage, closest, refused)
                    continue
                name = name_similarity(grams_s[a], grams_t[b])
                same_idx = bool(index_s[a]) and index_s[a] == index_t[b]
                in_order = rank_s[a] == rank_t[b]
                numbered = numbered_s[a] is not None and numbered_s[a] == numbered_t[b]
                accepted.append({"s": s, "t": t, "alignment": al, "coverage": coverage, "exact": exact,
                                 "name_sim": name, "same_idx": same_idx, "in_order": in_order,
                                 "numbered": numbered,
                                 "strong": 2 * coverage + 0.5 * exact + name + 0.5 * same_idx + _ORDER * in_order,
                                 "name": max(name, float(same_idx or in_order))})
    accepted.extend(_tied_layers(tied_pairs, accepted, src, tgt, tied, grams_s, grams_t, rank_s, rank_t))
    return accepted, refused, {k: tuple(v) for k, v in tied.items()}, tuple(limited)


def _near_structures(near, by_id_s, by_id_t, src: Structure, tgt: Structure):
    """Of ``near`` (source structure → target structures with a like child), past :data:`PAIR_LIMIT`
    pairs in all: those whose first containers share the path or the numbers in it; and how many
    were left out."""
    def tags(c: Container):
        return (("path", c.path), *((("numbers", c.indices),) if c.indices else ()))
    by_tag: dict[tuple, list[int]] = {}
    for tid, targets in by_id_t.items():
        for tag in tags(tgt.containers[targets[0]]):
            by_tag.setdefault(tag, []).append(tid)
    kept = {}
    for sid, tids in near.items():
        allowed = set(tids)
        kept[sid] = sorted({tid for tag in tags(src.containers[by_id_s[sid][0]])
                            for tid in by_tag.get(tag, ())[:FEW] if tid in allowed})
    return kept, sum(map(len, near.values())) - sum(map(len, kept.values()))


def _scored(sources, targets, src: Structure, tgt: Structure, index_s, index_t, rank_s, rank_t):
    """The container pairs of one structure pair to score, in order, and how many were not: all,
    unless more than :data:`PAIR_LIMIT`; then those with the same numbers in their paths, the same
    place among like containers, or the same path (what the score could pick among so many alike)."""
    if len(sources) * len(targets) <= PAIR_LIMIT:
        return [(a, b) for a in sources for b in targets], 0

    def tags(path, numbers, rank):
        return (("path", path), ("place", rank), *((("numbers", numbers),) if numbers else ()))
    by_tag: dict[tuple, list[int]] = {}
    for b in targets:
        for tag in tags(tgt.containers[b].path, index_t[b], rank_t[b]):
            by_tag.setdefault(tag, []).append(b)
    pairs = []
    for a in sources:
        found = {b for tag in tags(src.containers[a].path, index_s[a], rank_s[a]) for b in by_tag.get(tag, ())[:FEW]}
        pairs.extend((a, b) for b in sorted(found))
    return pairs, len(sources) * len(targets) - len(pairs)


def _all_tie(al: Alignment, s: Container, t: Container) -> bool:
    """Every child of both containers fits, but only among siblings that tie (two norms of a block)."""
    return (len(al.ambiguous) == len(s.children) and
            {j for _, js in al.ambiguous for j in js} == set(range(len(t.children))))


def _tied_layers(tied_pairs, accepted, src: Structure, tgt: Structure, tied: dict, grams_s, grams_t,
                 rank_s, rank_t) -> list[dict]:
    """Candidates for containers whose children all tie among themselves (a block's two norms in a
    sorted file), with the container of the same numbers (``model.layers.2`` and ``layers.2``),
    when another container would take them otherwise: the children stay ambiguous one by one (in
    :mod:`.pairing`), but no container of another layer (or the root) is paired in their place."""
    elsewhere = {c["s"].path for c in accepted} | {c["t"].path for c in accepted}
    found = []
    for a, b, al in tied_pairs:
        s, t = src.containers[a], tgt.containers[b]
        if s.path not in elsewhere and t.path not in elsewhere:
            continue
        tied.pop(("s", s.path), None)
        tied.pop(("t", t.path), None)
        name = name_similarity(grams_s[a], grams_t[b])
        in_order = rank_s[a] == rank_t[b]
        found.append({"s": s, "t": t, "alignment": al, "coverage": 1.0, "exact": 0.0, "name_sim": name,
                      "same_idx": True, "in_order": in_order, "numbered": True, "tied_children": True,
                      "strong": 2.0 + name + 0.5 + _ORDER * in_order, "name": 1.0})
    return found


def _same_numbers(numbers: tuple[int, ...], others: list[int], index: list[tuple[int, ...]]) -> list[int]:
    """Of ``others``, those with the same numbers in their paths (layers.2 for model.layers.2),
    if any: the candidates worth naming; else all of them."""
    same = [o for o in others if numbers and index[o] == numbers]
    return same or others


def _signals(cand) -> list[str]:
    """The evidence of a chosen container pair, in words."""
    s, t, matches = cand["s"], cand["t"], cand["alignment"].matches
    n = len(matches)
    modules = f"{n} module{'s' if n != 1 else ''}"
    if cand.get("tied_children"):
        k = len(s.children)
        signals = [f"{k} module{'s' if k != 1 else ''} that tie among themselves, each left ambiguous"]
    elif s.numeric and t.numeric:
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
    for side, c, other in (("s", s, f"closest: {shown_path(t.path)}"),
                           ("t", t, f"closest source: {shown_path(s.path)}")):
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


def _numbered(containers, ids) -> list[tuple[int, int] | None]:
    """(rank by the numbers in the path, how many) among containers of the same structure, when
    those numbers tell them all apart (``layer1.0``, ``layer1.1``); else None."""
    groups: dict[int, list[int]] = {}
    for a, i in enumerate(ids):
        groups.setdefault(i, []).append(a)
    found: list[tuple[int, int] | None] = [None] * len(ids)
    for members in groups.values():
        indices = [containers[a].indices for a in members]
        if all(indices) and len(set(indices)) == len(indices):
            for rank, a in enumerate(sorted(members, key=lambda a: containers[a].indices)):
                found[a] = (rank, len(members))
    return found


def assign_containers(candidates):
    """Best first, one to one; a tie on the strong score for a free container is an ambiguity."""
    candidates = sorted(candidates, key=lambda c: (-c["strong"], c["s"].order, c["t"].order))
    by_s: dict[str, list] = {}
    by_t: dict[str, list] = {}
    for c in candidates:
        by_s.setdefault(c["s"].path, []).append(c)
        by_t.setdefault(c["t"].path, []).append(c)
    # container → False when taken on the evidence (or left out as ambiguous), True when by order alone
    used_s: dict[str, bool] = {}
    used_t: dict[str, bool] = {}
    chosen, ambiguous = [], []
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
                f"ambiguous: {shown_path(s.path)} fits {', '.join(map(shown_path, targets))} equally well "
                "(same structure, no name or order evidence); pair it by hand"), CONTAINER))
            used_s[s.path] = False  # neither is taken: the target stays free for another source
            continue
        cand["order_only"] = _by_order(cand, by_s[s.path] + by_t[t.path], used_s, used_t)
        second = max((c["strong"] for c in free), default=0.0)
        margin = min(1.0, 4 * (cand["strong"] - second) / cand["strong"])
        cand["signals"] = _signals(cand)
        cand["confidence"] = round(0.4 * cand["coverage"] + 0.2 * cand["exact"] + 0.2 * min(1.0, cand["name"])
                                   + 0.2 * margin, 2)
        if second > 0:
            cand["signals"] = [*cand["signals"], f"best of {len(free) + 1} candidates by {cand['strong'] - second:.2f}"]
        used_s[s.path] = used_t[t.path] = bool(cand["order_only"])
        chosen.append((s, t, cand))
    chosen.sort(key=lambda x: x[0].order)
    return chosen, ambiguous


def _by_order(cand, others, used_s: dict[str, bool], used_t: dict[str, bool]) -> tuple[str, ...]:
    """The target containers (``cand``'s first) that would fit its source as well but for the place
    among like containers, when that place alone decided (the numbers in the paths, ``layer1.0`` and
    ``blocks.0``, do not rank them alike); else ``()``."""
    if not cand["in_order"] or cand["numbered"]:
        return ()
    plain = cand["strong"] - _ORDER
    equal = [c for c in others if c is not cand and c["strong"] - _ORDER * c["in_order"] > plain - _TIE and
             (used_t.get(c["t"].path) is not False if c["s"] is cand["s"] else used_s.get(c["s"].path) is not False)]
    if not equal:
        return ()
    return (cand["t"].path, *sorted({c["t"].path for c in equal if c["s"] is cand["s"]}))
