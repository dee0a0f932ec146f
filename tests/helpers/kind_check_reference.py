"""The kind check as it was before it went columnar (mapper_core/plan/kind_check.py at 0c16637), kept as
the reference that tests/plan/test_kind_check_reference.py holds the fast one to."""
from __future__ import annotations

from typing import Iterator, Mapping, Sequence, Tuple

from mapper_core.plan.kind_check import _name, _strays  # unchanged helpers, shared
from mapper_core.plan.kinds import ModuleKind, classify, compatible, kind_of_type
from mapper_core.plan.plan import PASS_THROUGH, KindMismatch, Mapped
from mapper_core.specs import TensorSpec

_UNKNOWN = ModuleKind("unknown", "unknown")


def reference_check_kinds(
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
    # each key split once ('a.b.weight' → ('a.b', 'weight'); no dot → ('', key), as split_key does)
    source_split = {k: k.rpartition(".")[::2] for k in source_specs}
    source_modules = _modules(source_specs, source_split)
    for m in mapped:  # a member arrives at the rank its transform gives it
        if m.out_shape is not None:
            module, member = source_split[m.source]
            source_modules[module][member] = len(m.out_shape)
    source_kinds = {name: classify(members) for name, members in source_modules.items()}
    target_split = {} if target_specs is None else {k: k.rpartition(".")[::2] for k in target_specs}
    target_kinds = {} if target_specs is None else {
        name: classify(members) for name, members in _modules(target_specs, target_split).items()}

    def action(m: Mapped) -> str:
        return "error" if m.rule == PASS_THROUGH else actions[m.rule]

    def target_label(module: str) -> str:
        if module in types:
            return types[module]
        if target_specs is None:
            return "unknown (no target given)"
        return target_kinds[module].signature if module in target_kinds else "unknown"

    # each key split once: (entry, (source module, member), (target module, member))
    pairs = [(m, source_split[m.source], target_split.get(m.target) or m.target.rpartition(".")[::2])
             for m in mapped]
    found: dict[str, KindMismatch] = {}
    if target_specs is not None:
        for m, (s_mod, member), (t_mod, _) in pairs:
            skind = source_kinds[s_mod]
            tkind = kind_of_type(types[t_mod]) if t_mod in types else \
                target_kinds.get(t_mod, _UNKNOWN).kind
            if not compatible(skind.kind, tkind):
                found[m.source] = KindMismatch(
                    m.source, m.target, m.rule, skind.signature, target_label(t_mod), action(m),
                    f"a {skind.kind}'s {member} would load into a {types.get(t_mod, tkind)}")
    for (m, (s_mod, _), (t_mod, _)), detail in _splits(pairs, source_kinds, target_kinds):
        if m.source not in found:
            found[m.source] = KindMismatch(m.source, m.target, m.rule, source_kinds[s_mod].signature,
                                           target_label(t_mod), action(m), detail)
    order = {m.source: i for i, m in enumerate(mapped)}
    labels = ({s: source_kinds[s].signature for s in {p[1][0] for p in pairs}},
              {t: target_label(t) for t in {p[2][0] for p in pairs}} if target_specs is not None else {})
    return tuple(sorted(found.values(), key=lambda k: order[k.source])), labels


Pair = Tuple[Mapped, Tuple[str, str], Tuple[str, str]]


def _modules(specs: Mapping[str, TensorSpec], split: Mapping[str, tuple[str, str]]) -> dict[str, dict[str, int]]:
    """Module → {member: rank}, in first-seen order (:func:`.kinds.group_modules` on keys split already)."""
    modules: dict[str, dict[str, int]] = {}
    for key, spec in specs.items():
        module, member = split[key]
        members = modules.get(module)
        if members is None:
            members = modules[module] = {}
        members[member] = len(spec.shape)
    return modules


def _splits(pairs: Sequence[Pair], source_kinds: Mapping[str, ModuleKind],
            target_kinds: Mapping[str, ModuleKind]) -> Iterator[tuple[Pair, str]]:
    """(pair, detail) for each member that leaves the module its siblings go to, or comes from
    another module than its siblings do."""
    by_source: dict[str, list[Pair]] = {}
    by_target: dict[str, list[Pair]] = {}
    for pair in pairs:
        s_mod, t_mod = pair[1][0], pair[2][0]
        if s_mod and source_kinds[s_mod].known:
            by_source.setdefault(s_mod, []).append(pair)
        if t_mod and t_mod in target_kinds and target_kinds[t_mod].known:
            by_target.setdefault(t_mod, []).append(pair)
    for pair, s_mod, home, others in _strays(by_source, 1, 2):
        yield pair, (f"leaves its module: the other members of {_name(s_mod)} ({', '.join(others)}) "
                     f"go to {_name(home)}, this {pair[1][1]} goes to {_name(pair[2][0])}")
    for pair, t_mod, home, others in _strays(by_target, 2, 1):
        yield pair, (f"mixes modules: {_name(t_mod)} gets its {', '.join(others)} from {_name(home)}, "
                     f"this {pair[2][1]} from {_name(pair[1][0])}")
