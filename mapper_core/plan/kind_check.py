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

from typing import Mapping, Sequence

from ..specs import TensorSpec
from .kinds import ModuleKind, classify, compatible, group_modules, kind_of_type, split_key
from .plan import PASS_THROUGH, KindMismatch, Mapped


def check_kinds(
    mapped: Sequence[Mapped],
    source_specs: Mapping[str, TensorSpec],
    target_specs: Mapping[str, TensorSpec] | None,
    actions: Sequence[str],
    target_module_types: Mapping[str, str] | None = None,
) -> tuple[tuple[KindMismatch, ...], tuple[dict[str, str], dict[str, str]]]:
    """Kind mismatches and module splits among ``mapped`` (the loadable entries); ``actions[i]`` is
    rule i's ``on_kind_mismatch``. Also the labels ``explain`` shows: source module → signature (as
    its tensors arrive), target module → real type or signature, for the modules of ``mapped``."""
    types = target_module_types or {}
    arriving = {m.source: len(m.result_shape) for m in mapped}
    source_kinds = {name: classify(members) for name, members in group_modules(
        (k, arriving.get(k, len(s.shape))) for k, s in source_specs.items()).items()}
    target_kinds = {} if target_specs is None else {
        name: classify(members) for name, members in group_modules(
            (k, len(s.shape)) for k, s in target_specs.items()).items()}

    def action(m: Mapped) -> str:
        return "error" if m.rule == PASS_THROUGH else actions[m.rule]

    def target_label(module: str) -> str:
        if module in types:
            return types[module]
        return target_kinds[module].signature if module in target_kinds else "unknown"

    found: dict[str, KindMismatch] = {}
    if target_specs is not None:
        for m in mapped:
            s_mod, t_mod = split_key(m.source)[0], split_key(m.target)[0]
            skind = source_kinds[s_mod]
            tkind = kind_of_type(types[t_mod]) if t_mod in types else \
                target_kinds.get(t_mod, ModuleKind("unknown", "unknown")).kind
            if not compatible(skind.kind, tkind):
                found[m.source] = KindMismatch(
                    m.source, m.target, m.rule, skind.signature, target_label(t_mod), action(m),
                    f"a {skind.kind}'s {split_key(m.source)[1]} would load into a {types.get(t_mod, tkind)}")
    for m, home, detail in _splits(mapped, source_kinds, target_kinds):
        if m.source not in found:
            s_mod, t_mod = split_key(m.source)[0], split_key(m.target)[0]
            found[m.source] = KindMismatch(m.source, m.target, m.rule, source_kinds[s_mod].signature,
                                           target_label(t_mod), action(m), detail)
    order = {m.source: i for i, m in enumerate(mapped)}
    labels = ({s: source_kinds[s].signature for s in {split_key(m.source)[0] for m in mapped}},
              {t: target_label(t) for t in {split_key(m.target)[0] for m in mapped}} if target_specs is not None
              else {})
    return tuple(sorted(found.values(), key=lambda k: order[k.source])), labels


def _splits(mapped: Sequence[Mapped], source_kinds: Mapping[str, ModuleKind],
            target_kinds: Mapping[str, ModuleKind]):
    """(entry, home module, detail) for each member that leaves the module its siblings go to."""
    by_source: dict[str, list[Mapped]] = {}
    by_target: dict[str, list[Mapped]] = {}
    for m in mapped:
        s_mod, t_mod = split_key(m.source)[0], split_key(m.target)[0]
        if s_mod and source_kinds[s_mod].known:
            by_source.setdefault(s_mod, []).append(m)
        if t_mod and t_mod in target_kinds and target_kinds[t_mod].known:
            by_target.setdefault(t_mod, []).append(m)
    source, target = (lambda m: split_key(m.source)), (lambda m: split_key(m.target))
    for m, s_mod, home, others in _strays(by_source, source, target):
        yield m, home, (f"leaves its module: the other members of {_name(s_mod)} ({', '.join(others)}) "
                        f"go to {_name(home)}, this {source(m)[1]} goes to {_name(target(m)[0])}")
    for m, t_mod, home, others in _strays(by_target, target, source):
        yield m, home, (f"mixes modules: {_name(t_mod)} gets its {', '.join(others)} from {_name(home)}, "
                        f"this {target(m)[1]} from {_name(source(m)[0])}")


def _strays(groups: Mapping[str, list[Mapped]], here, there):
    """(entry, module, home, home's members) for each entry of a module on this side (``here``: entry →
    (module, member)) whose module on the other side (``there``) is not the one its siblings share."""
    for module, entries in groups.items():
        home = _home([(there(m)[0], here(m)[1]) for m in entries])
        for m in entries:
            if there(m)[0] != home:
                yield m, module, home, [here(o)[1] for o in entries if there(o)[0] == home]


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
