"""The kind check: every mapped tensor lands in a module of its own kind, together with its siblings.

Two checks, both from headers (see :mod:`.kinds`):

- **kind**: the source module (with each mapped member at the rank its transform gives it, so an
  unsqueezed Linear arrives as a 1x1 conv) and the target module must be of compatible kinds;
- **module split**: the members of one module of known kind travel together. When the members of
  a source module end in different target modules, those that leave the module the others go to
  (the one its ``weight`` goes to, else the one most of them go to) are flagged; likewise a
  target module of known kind filled from several source modules. A whole module may move (an
  index shift renumbers modules, not members); a bias that moves to a sibling may not.

Each finding is a :class:`KindMismatch` with the rule's ``on_kind_mismatch``; passed-through keys
(rule -1) count as ``error``.
"""
from __future__ import annotations

from collections import Counter
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Iterable, Mapping, Sequence, Tuple

from ..specs import TensorSpec
from .kinds import UNKNOWN, ModuleKind, classify, compatible, kind_of_type
from .plan import PASS_THROUGH, KindMismatch, Mapped

_UNKNOWN = ModuleKind(UNKNOWN, UNKNOWN)
_source, _target, _module = attrgetter("source"), attrgetter("target"), itemgetter(0)

Pair = Tuple[int, Tuple[str, str], Tuple[str, str]]  # (entry index, (source module, member), (target module, member))


def check_kinds(
    mapped: Sequence[Mapped],
    source_specs: Mapping[str, TensorSpec],
    target_specs: Mapping[str, TensorSpec] | None,
    actions: Sequence[str],
    target_module_types: Mapping[str, str] | None = None,
) -> tuple[tuple[KindMismatch, ...], tuple[dict[str, str], dict[str, str]]]:
    """Kind mismatches and module splits among ``mapped`` (the loadable entries); ``actions[i]`` is
    rule i's ``on_kind_mismatch``. Also the labels ``explain`` shows: source module → signature (as
    its tensors arrive), target module → real type or signature, for the modules of ``mapped``.

    Per entry only C-level passes run (splitting keys, sets of module pairs); a module is classified
    once, and entries are looked at one by one only where the pairs show a finding."""
    types = target_module_types or {}
    if not mapped:
        return (), ({}, {})
    # each key split once: 'a.b.weight' → ('a.b', '.', 'weight'); no dot → ('', '', key), as split_key does
    s_split = list(map(str.rpartition, map(_source, mapped), repeat(".")))
    t_split = list(map(str.rpartition, map(_target, mapped), repeat(".")))
    s_mods, t_mods = list(map(_module, s_split)), list(map(_module, t_split))
    s_names, t_names = set(s_mods), set(t_mods)
    source_modules = _modules(source_specs, s_names)
    for m, (module, _, member) in zip(mapped, s_split):  # a member arrives at the rank its transform gives it
        if m.out_shape is not None:
            source_modules[module][member] = len(m.out_shape)
    source_kinds = {name: classify(source_modules[name]) for name in s_names}
    target_kinds = {} if target_specs is None else {
        name: classify(members) for name, members in _modules(target_specs, t_names).items() if members}

    def target_label(module: str) -> str:
        if module in types:
            return types[module]
        if target_specs is None:
            return "unknown (no target given)"
        return target_kinds[module].signature if module in target_kinds else "unknown"

    def finding(i: int, detail: str) -> None:
        m = mapped[i]
        if i not in found:
            found[i] = KindMismatch(m.source, m.target, m.rule, source_kinds[s_mods[i]].signature,
                                    target_label(t_mods[i]), "error" if m.rule == PASS_THROUGH else actions[m.rule],
                                    detail)

    found: dict[int, KindMismatch] = {}  # entry index → finding; the first finding of an entry stands
    if target_specs is not None:
        skind = {name: kind.kind for name, kind in source_kinds.items()}
        tkind = {name: kind_of_type(types[name]) if name in types else target_kinds.get(name, _UNKNOWN).kind
                 for name in t_names}
        kinds = list(zip(map(skind.__getitem__, s_mods), map(tkind.__getitem__, t_mods)))
        bad = {pair for pair in set(kinds) if not compatible(*pair)}
        for i in (i for i, pair in enumerate(kinds) if pair in bad) if bad else ():
            t_mod = t_mods[i]
            finding(i, f"a {kinds[i][0]}'s {s_split[i][2]} would load into a {types.get(t_mod, kinds[i][1])}")
    module_pairs = set(zip(s_mods, t_mods))
    # a module of known kind whose members part ways: a source module sending members to two target
    # modules, or a target module filled from two source modules (none when each side sees one)
    spread = _shared(module_pairs, 0, len(s_names), lambda s: s and source_kinds[s].known)
    mixed = _shared(module_pairs, 1, len(t_names), lambda t: t and t in target_kinds and target_kinds[t].known)
    if spread or mixed:
        pairs = [(i, (s[0], s[2]), (t[0], t[2])) for i, s, t in zip(range(len(mapped)), s_split, t_split)
                 if s[0] in spread or t[0] in mixed]
        for (i, _, _), detail in _splits(pairs, spread, mixed):
            finding(i, detail)
    labels = ({s: source_kinds[s].signature for s in s_names},
              {t: target_label(t) for t in t_names} if target_specs is not None else {})
    return tuple(found[i] for i in sorted(found)), labels


def _modules(specs: Mapping[str, TensorSpec], wanted: Iterable[str]) -> dict[str, dict[str, int]]:
    """Module → {member: rank} for the ``wanted`` modules, members in first-seen order (as
    :func:`.kinds.group_modules` gives them)."""
    modules: dict[str, dict[str, int]] = {name: {} for name in wanted}
    get = modules.get
    for key, spec in specs.items():
        module, _, member = key.rpartition(".")
        members = get(module)
        if members is not None:
            members[member] = len(spec.shape)
    return modules


def _shared(module_pairs: set, side: int, distinct: int, known) -> set[str]:
    """The modules on ``side`` (0 source, 1 target) that pair with more than one module on the
    other side and pass ``known``; none, at the cost of one comparison, when every module pairs
    with one (``distinct`` is the number of modules on that side)."""
    if len(module_pairs) == distinct:
        return set()
    counts = Counter(map(itemgetter(side), module_pairs))
    return {name for name, n in counts.items() if n > 1 and known(name)}


def _splits(pairs: Sequence[Pair], spread: set[str], mixed: set[str]) -> Iterable[tuple[Pair, str]]:
    """(pair, detail) for each member that leaves the module its siblings go to, or comes from
    another module than its siblings do; ``pairs`` are (entry index, (source module, member),
    (target module, member)) in plan order."""
    by_source: dict[str, list[Pair]] = {}
    by_target: dict[str, list[Pair]] = {}
    for pair in pairs:
        s_mod, t_mod = pair[1][0], pair[2][0]
        if s_mod in spread:
            by_source.setdefault(s_mod, []).append(pair)
        if t_mod in mixed:
            by_target.setdefault(t_mod, []).append(pair)
    for pair, s_mod, home, others in _strays(by_source, 1, 2):
        yield pair, (f"leaves its module: the other members of {_name(s_mod)} ({', '.join(others)}) "
                     f"go to {_name(home)}, this {pair[1][1]} goes to {_name(pair[2][0])}")
    for pair, t_mod, home, others in _strays(by_target, 2, 1):
        yield pair, (f"mixes modules: {_name(t_mod)} gets its {', '.join(others)} from {_name(home)}, "
                     f"this {pair[2][1]} from {_name(pair[1][0])}")


def _strays(groups: Mapping[str, list[Pair]], here: int, there: int):
    """(pair, module, home, home's members) for each pair of a module on this side (``pair[here]``
    is (module, member)) whose module on the other side (``pair[there]``) is not the one its
    siblings share."""
    for module, entries in groups.items():
        if len(entries) < 2:  # one member cannot be split from its siblings
            continue
        home = _home([(p[there][0], p[here][1]) for p in entries])
        for p in entries:
            if p[there][0] != home:
                yield p, module, home, [o[here][1] for o in entries if o[there][0] == home]


def _home(pairs: list[tuple[str, str]]) -> str:
    """The module the ``weight`` goes to (or comes from), else the one most members share, first first."""
    for module, member in pairs:
        if member == "weight":
            return module
    counts: dict[str, int] = {}
    for module, _ in pairs:
        counts[module] = counts.get(module, 0) + 1
    return max(counts, key=counts.__getitem__)  # max keeps the first of equal counts


def _name(module: str) -> str:
    return f"'{module}'" if module else "the root module"
