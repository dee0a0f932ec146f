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

import functools
from itertools import compress, count, repeat
from operator import attrgetter, is_not, itemgetter, ne
from typing import Callable, Iterable, Mapping, Sequence, Tuple

from ..specs import TensorSpec
from .kinds import UNKNOWN, ModuleKind, classify_all, compatible, kind_of_type
from .plan import PASS_THROUGH, KindMismatch, Mapped

_UNKNOWN = ModuleKind(UNKNOWN, UNKNOWN)
_source, _target, _out_shape = attrgetter("source"), attrgetter("target"), attrgetter("out_shape")
_module = itemgetter(0)

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
    # each entry's modules ('a.b.weight' → 'a.b'; no dot → '', as split_key does); a member is split
    # off again only for the few entries a message or a transform needs it for
    s_mods, t_mods = _modules_of(map(_source, mapped)), _modules_of(map(_target, mapped))
    parted = _several(s_mods, t_mods)  # source modules that send members to two target modules
    if target_specs is None:
        # only those modules' kinds are needed now; the labels are worked out when explain reads them
        source_kinds = _source_kinds(mapped, source_specs, parted)
        labels: tuple[Mapping[str, str], Mapping[str, str]] = (
            LazyLabels(functools.partial(source_labels, mapped, source_specs)), {})
        t_names: set[str] = set()
        target_kinds: dict[str, ModuleKind] = {}
    else:
        s_names, t_names = set(s_mods), set(t_mods)
        source_kinds = _source_kinds(mapped, source_specs, s_names)
        target_kinds = classify_all(
            {name: members for name, members in _modules(target_specs, t_names).items() if members})

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
            member = mapped[i].source.rpartition(".")[2]
            finding(i, f"a {kinds[i][0]}'s {member} would load into a {types.get(t_mod, kinds[i][1])}")
    # a module of known kind whose members part ways: a source module sending members to two target
    # modules, or a target module filled from two source modules
    spread = {name for name in parted if name and source_kinds[name].known}
    mixed = {name for name in _several(t_mods, s_mods)
             if name and name in target_kinds and target_kinds[name].known} if target_kinds else set()
    if spread or mixed:
        pairs = [(i, _split(mapped[i].source), _split(mapped[i].target))
                 for i, s, t in zip(count(), s_mods, t_mods) if s in spread or t in mixed]
        for (i, _, _), detail in _splits(pairs, spread, mixed):
            finding(i, detail)
    if target_specs is not None:  # worked out when explain reads them, as without a target
        labels = (LazyLabels(lambda: {s: source_kinds[s].signature for s in s_names}),
                  LazyLabels(lambda: {t: target_label(t) for t in t_names}))
    return tuple(found[i] for i in sorted(found)), labels


def source_labels(mapped: Sequence[Mapped], source_specs: Mapping[str, TensorSpec]) -> dict[str, str]:
    """Source module → its signature as its tensors arrive, for the modules of ``mapped``."""
    kinds = _source_kinds(mapped, source_specs, set(_modules_of(map(_source, mapped))))
    return {name: kind.signature for name, kind in kinds.items()}


class LazyLabels(Mapping):
    """A read-only mapping worked out by ``make()`` on first use (module labels: explain reads one or
    two, and a plan of a million keys need not label them all). Equal to a dict of the same items;
    pickles as that dict."""

    __slots__ = ("_make", "_items")

    def __init__(self, make: Callable[[], dict]):
        self._make: Callable[[], dict] | None = make
        self._items: dict | None = None

    def _dict(self) -> dict:
        if self._items is None:
            self._items, self._make = self._make(), None
        return self._items

    def __getitem__(self, key):
        return self._dict()[key]

    def __iter__(self):
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())

    def __contains__(self, key) -> bool:
        return key in self._dict()

    def __repr__(self) -> str:
        return repr(self._dict())

    def __reduce__(self):
        return dict, (self._dict(),)


def _modules_of(keys: Iterable[str]) -> list[str]:
    """Each key's module (the text before its last dot, '' without one), in C-level passes."""
    return list(map(_module, map(str.rpartition, keys, repeat("."))))


def _split(key: str) -> tuple[str, str]:
    """(module, member) as :func:`_modules_of` splits: ``'a'`` → ``('', 'a')``."""
    module, _, member = key.rpartition(".")
    return module, member


def _source_kinds(mapped: Sequence[Mapped], source_specs: Mapping[str, TensorSpec],
                  names: set[str]) -> dict[str, ModuleKind]:
    """The kinds of the source modules ``names``, each member at the rank its transform gives it."""
    if not names:
        return {}
    modules = _modules(source_specs, names)
    for i in compress(count(), map(is_not, map(_out_shape, mapped), repeat(None))):
        module, member = _split(mapped[i].source)  # a member arrives at the rank its transform gives it
        if module in modules:
            modules[module][member] = len(mapped[i].out_shape)
    return classify_all(modules)


def _modules(specs: Mapping[str, TensorSpec], wanted: Iterable[str]) -> dict[str, dict[str, int]]:
    """Module → {member: rank} for the ``wanted`` modules, members in first-seen order (as
    :func:`.kinds.group_modules` gives them)."""
    modules: dict[str, dict[str, int]] = {name: {} for name in wanted}
    # only the keys of wanted modules are looked at one by one; the rest are passed over in C
    keys = list(specs)
    for key, spec in compress(zip(keys, specs.values()), map(modules.__contains__, _modules_of(keys))):
        module, _, member = key.rpartition(".")
        modules[module][member] = len(spec.shape)
    return modules


def _several(modules: Sequence[str], partners: Sequence[str]) -> set[str]:
    """The modules that pair with more than one partner (``modules[i]`` with ``partners[i]``), in
    C-level passes over the lists."""
    one = dict(zip(modules, partners))  # each module with its last partner; any other names it
    return set(compress(modules, map(ne, map(one.__getitem__, modules), partners)))


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
