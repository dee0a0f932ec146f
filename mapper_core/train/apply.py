"""Apply a Plan in memory: to a state dict, to an ``nn.Module``; resolve freeze and param groups.

Needs torch (the ``mapper-core[torch]`` extra); the header-only path (rules → plan → report)
never imports this module.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from .. import arguments
from ..errors import BadInputError, PlanError
from ..io.tensor_ops import apply_chain
from ..io.torch_dtypes import spec_of
from ..plan.entry import make_plan
from ..plan.tied_check import one_source
from ..plan.plan import Plan
from ..plan.report import first_error
from ..rules.ruleset import ParamGroup, RuleSet
from ..specs import TensorSpec
from .checks import check_groups, check_module, check_plan, check_ruleset, check_source


@dataclass(frozen=True)
class LoadResult:
    """What ``load_state_dict`` users expect: what was loaded, missing, unexpected, mismatched."""

    loaded: tuple[str, ...]  # target keys filled
    missing: tuple[str, ...]  # module keys nothing filled
    unexpected: tuple[str, ...]  # planned targets the module does not have
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]  # (target, source shape, module shape)
    # (module key, the loaded key it is one tensor with): tied weights filled through the tie, not missing
    tied: tuple[tuple[str, str], ...] = ()


def module_specs(module: nn.Module) -> dict[str, TensorSpec]:
    """Target specs from a module's state dict (parameters and buffers), for planning."""
    return {k: spec_of(v, k) for k, v in module.state_dict(keep_vars=True).items()}


def module_types(module: nn.Module) -> dict[str, str]:
    """Module name → class name (``"0": "Conv2d"``) for every module that owns parameters or
    buffers: what a plan's kind check names when the target is a real model."""
    return {name: type(m).__name__ for name, m in module.named_modules()
            if any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False))}


def module_ties(module: nn.Module) -> list[tuple[str, ...]]:
    """The names of each tensor the state dict holds under more than one name (tied weights: an
    output layer sharing the embedding), for ``make_plan(..., target_ties=...)``: the one definition
    of a target's ties, for ``plan_for_module`` and ``--target model:NAME`` alike. Names of the state
    dict, so a shared buffer ties too, and a name a state-dict hook leaves out does not."""
    names: dict[int, list[str]] = {}
    for k, v in module.state_dict(keep_vars=True).items():
        names.setdefault(id(v), []).append(k)
    return [tuple(group) for group in names.values() if len(group) > 1]


def plan_for_module(source_specs: Mapping[str, TensorSpec], ruleset: RuleSet, module: nn.Module, *,
                    source_origin: str | None = None, unmatched: str | None = None,
                    non_tensor: Mapping[str, str] | None = None) -> Plan:
    """The plan for loading ``source_specs`` into ``module``: shapes checked against its state
    dict, module kinds against its real module types, tied names filled through their tie (the
    plan to hand to :func:`apply_to_module`)."""
    check_module(module, "plan_for_module")
    return make_plan(source_specs, ruleset, module_specs(module), source_origin=source_origin,
                     target_origin=type(module).__name__, unmatched=unmatched, non_tensor=non_tensor,
                     target_module_types=module_types(module), target_ties=module_ties(module))


def _source_tensor(source: Any, key: str) -> torch.Tensor:
    if not isinstance(source, Mapping):
        return source.get_tensor(key)
    try:
        return source[key]
    except KeyError:
        raise BadInputError(f"the source state dict has no key '{key}', which the plan maps; pass the state dict "
                            "(or the checkpoint's reader) whose specs the plan was made from") from None


def _mapped_tensor(source: Any, m: Any) -> torch.Tensor:
    """The source tensor of a Mapped entry after its rule's transform steps."""
    tensor = _source_tensor(source, m.source)
    if m.transform:
        tensor = apply_chain(m.transform, tensor)
    return tensor


def apply_to_state_dict(plan: Plan, source: Any) -> dict[str, torch.Tensor]:
    """The target-keyed state dict the plan produces. ``source`` is a mapping or a Reader.

    Nothing is copied: a key whose rule has no transform (or only steps that make views, such as
    ``reshape`` of a contiguous tensor) is the source's own tensor, so changing it in place changes
    ``source`` too; ``{k: v.clone() for k, v in result.items()}`` when that matters. (A Reader's
    tensors are read afresh; :func:`apply_to_module` always copies into the module's own tensors.)

    A name the plan fills through a tie (``plan.tied_filled``, known to a plan made with the model's
    ties: :func:`plan_for_module`) is there too, as the very tensor of the key it is tied to, as the
    model holds them: ``model.load_state_dict(result, strict=True)`` does not find it missing.

    Raises PlanError when the plan has errors (collisions, mismatches under ``error``),
    ArgumentTypeError for a ``plan`` or ``source`` of the wrong kind, BadInputError for a key the
    plan maps that the source lacks.
    """
    check_plan(plan, "apply_to_state_dict")
    check_source(source, "apply_to_state_dict")
    _refuse_errors(plan)
    out = {m.target: _mapped_tensor(source, m) for m in plan.loadable}
    out.update((k, out[partner]) for k, partner in plan.tied_filled)  # tied: one tensor, two names
    return out


def apply_to_module(plan: Plan, module: nn.Module, source: Any) -> LoadResult:
    """Copy the plan's tensors into ``module`` one at a time (dtype cast to the module's).

    A tensor on the meta device (a model built under ``with torch.device("meta")``) has no
    memory to copy into: it is replaced by the loaded tensor instead, as ``load_state_dict(...,
    assign=True)`` does, keeping its dtype, ``requires_grad`` and ties (every name that shared
    the meta parameter shares the new one). Keys nothing fills stay on the meta device and are
    listed in ``missing``; ``module.to_empty(device=...)`` is for materialising a whole model.
    A name tied to a loaded one (one tensor under two names) is filled through the tie: it is in
    ``tied``, not ``missing``, whether or not the plan knew of the tie.
    """
    check_plan(plan, "apply_to_module")
    check_module(module, "apply_to_module")
    check_source(source, "apply_to_module")
    _refuse_errors(plan)
    state = module.state_dict(keep_vars=True)
    _refuse_tied_conflicts(plan, state, source)
    loaded, unexpected, mismatched = [], [], []
    replaced: dict[int, torch.Tensor] = {}  # id of a meta tensor → what took its place
    with torch.no_grad():
        for m in plan.loadable:
            dest = state.get(m.target)
            if dest is None:
                unexpected.append(m.target)
                continue
            tensor = _mapped_tensor(source, m)
            if tuple(tensor.shape) != tuple(dest.shape):
                mismatched.append((m.target, tuple(tensor.shape), tuple(dest.shape)))
                continue
            if dest.is_meta:
                if id(dest) not in replaced:  # a tied name loads once (the tie check made the values equal)
                    replaced[id(dest)] = _materialised(dest, tensor)
            else:
                dest.copy_(tensor)
            loaded.append(m.target)
    if replaced:
        _rebind(module, replaced)
    done = set(loaded)
    loaded_as = {}  # id of a loaded tensor object (tied names share it) → the first name it was loaded under
    for k in loaded:
        loaded_as.setdefault(id(state[k]), k)
    tied = tuple((k, loaded_as[id(v)]) for k, v in state.items() if k not in done and id(v) in loaded_as)
    through_tie = {k for k, _ in tied}
    missing = tuple(k for k in state if k not in done and k not in through_tie)
    return LoadResult(tuple(loaded), missing, tuple(unexpected), tuple(mismatched), tied)


def _materialised(meta: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
    """What replaces a meta tensor: a copy of ``tensor`` in the meta tensor's dtype (never the
    caller's own tensor, which training would then change), a Parameter again if it was one."""
    value = tensor.detach().to(dtype=meta.dtype, copy=True)
    return nn.Parameter(value, requires_grad=meta.requires_grad) if isinstance(meta, nn.Parameter) else value


def _rebind(module: nn.Module, replaced: Mapping[int, torch.Tensor]) -> None:
    """Point every name that held a replaced meta tensor at its replacement (tied names too)."""
    for sub in module.modules():
        members = list(sub.named_parameters(recurse=False, remove_duplicate=False)) + \
            list(sub.named_buffers(recurse=False, remove_duplicate=False))
        for name, value in members:
            if id(value) in replaced:
                setattr(sub, name, replaced[id(value)])


def _refuse_tied_conflicts(plan: Plan, state: Mapping[str, torch.Tensor], source: Any) -> None:
    """Refuse, before anything is copied, two entries that fill one tensor of the module under two
    names (tied weights, e.g. an output layer sharing the embedding) with different values: the
    second copy would silently overwrite the first. Two sources that are one tensor in the
    checkpoint (its reader's ``aliases()``), or that hold equal values, fill the pair alike."""
    by_tensor: dict[tuple, Any] = {}
    for m in plan.loadable:
        dest = state.get(m.target)
        if dest is None or dest.numel() == 0:
            continue
        # a meta tensor has no storage: tied meta parameters are one object under two names
        where = (("meta", id(dest)) if dest.is_meta
                 else ("storage", dest.untyped_storage().data_ptr(), dest.storage_offset()))
        first = by_tensor.setdefault(where, m)
        if first is not m and not _same_value(source, first, m, dest.dtype):
            raise PlanError(
                f"rules '{plan.rules_name}': target keys '{first.target}' and '{m.target}' are one tensor in the "
                f"model (tied weights), and the plan fills them from '{first.source}' (rule {first.rule}) and "
                f"'{m.source}' (rule {m.rule}), which hold different values: the second would overwrite the first. "
                "Map one source into the tied pair (skip the other key in the rules), or untie the weights in the "
                "model", plan)


def _same_value(source: Any, a: Any, b: Any, dtype: torch.dtype) -> bool:
    """Whether two plan entries give one value: the same source (or two names of one tensor in the
    checkpoint) through the same steps, or else equal tensors once cast to the module's dtype."""
    aliases = {} if isinstance(source, Mapping) or not hasattr(source, "aliases") else source.aliases()
    if one_source(a, b, aliases):
        return True
    x, y = _mapped_tensor(source, a), _mapped_tensor(source, b)
    return tuple(x.shape) == tuple(y.shape) and torch.equal(x.to(dtype), y.to(dtype))


def _refuse_errors(plan: Plan) -> None:
    if plan.errors:
        first = first_error(plan)
        raise PlanError(
            f"the plan for rules '{plan.rules_name}' has {len(plan.errors)} error{'s' if len(plan.errors) != 1 else ''}, e.g. {first}; "
            "run `mapper plan` to see them all, fix the rules, or set on_shape_mismatch: skip",
            plan,
        )


def parameter_names(module: nn.Module) -> dict[str, list[str]]:
    """Each parameter's name (as ``named_parameters()`` gives it) → every name it has in the
    state dict: a tied parameter (an output layer sharing the embedding) has two, and rules,
    freeze groups and param groups may name it by either. (Ties of the state dict, which plans
    use: :func:`module_ties`.)"""
    canonical = {id(p): n for n, p in module.named_parameters()}
    names: dict[str, list[str]] = {n: [] for n in canonical.values()}
    for n, p in module.named_parameters(remove_duplicate=False):
        names[canonical[id(p)]].append(n)
    return names


def frozen_names(module: nn.Module, ruleset: RuleSet, groups: Iterable[str] | None = None) -> list[str]:
    """Parameter names (as ``named_parameters()`` gives them) in the named freeze groups (all groups
    when ``groups`` is None; one name as a str is one group); a tied parameter is in a group when any
    of its names is."""
    check_module(module, "frozen_names")
    check_ruleset(ruleset, "frozen_names")
    groups = check_groups(groups, "frozen_names")
    chosen = ruleset.freeze if groups is None else tuple(_group(ruleset, g) for g in groups)
    names = parameter_names(module)
    # a parameterless norm layer is frozen by its buffers' names, so those count as matches too
    _idle_patterns(module, ruleset, [n for ns in names.values() for n in ns] + [n for n, _ in module.named_buffers()],
                   [("freeze group", g) for g in chosen], strict=groups is not None)
    return [n for n, all_names in names.items() if any(g.matches(a) for g in chosen for a in all_names)]


def _idle_patterns(module: nn.Module, ruleset: RuleSet, names: list[str], groups: list, strict: bool) -> None:
    """A freeze or parameter-group pattern that matches no name of ``module``: a misspelt or stale
    pattern, which would otherwise leave layers trainable (or in the default group) without a word.
    An error when ``strict`` (the caller named the groups), else a warning (a rules file may hold
    groups for other models)."""
    for what, group in groups:
        for text, pattern in zip(group.match, group.patterns):
            if any(pattern.fullmatch(n) for n in names):
                continue
            message = (f"rules {ruleset.origin or ruleset.name}: {what} '{group.name}': the pattern '{text}' matches "
                       f"no name of the {type(module).__name__} ({len(names):,} names, e.g. "
                       f"{', '.join(repr(n) for n in names[:3]) or 'none'}); patterns match the model's parameter "
                       "names (its state dict's, tied names too) in full: fix or remove it")
            if strict:
                raise BadInputError(message)
            warnings.warn(message, stacklevel=3)


def _group(ruleset: RuleSet, name: str):
    try:
        return ruleset.freeze_group(name)
    except KeyError as exc:
        raise BadInputError(exc.args[0]) from None


def set_frozen(module: nn.Module, ruleset: RuleSet, groups: Iterable[str] | None = None,
               frozen: bool = True) -> list[str]:
    """Freeze (or unfreeze) the parameters of the named freeze groups; returns their names."""
    groups = check_groups(groups, "set_frozen")
    names = set(frozen_names(module, ruleset, groups))
    for n, p in module.named_parameters():
        if n in names:
            p.requires_grad_(not frozen)
    return sorted(names)


def param_groups(module: nn.Module, ruleset: RuleSet, *, trainable_only: bool = False,
                 overrides: Mapping[str, Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Optimizer parameter groups from the rules' ``param_groups``; first matching group wins.

    Parameters no group matches go to the ``default: true`` group; without one they form a
    group named ``rest`` with the optimizer's defaults, so no parameter is silently left out.
    ``overrides`` replaces options per group name (e.g. ``{"new_layers": {"lr": 3e-4}}``).
    """
    check_module(module, "param_groups")
    check_ruleset(ruleset, "param_groups")
    if overrides is not None:
        arguments.mapping(overrides, "param_groups", "overrides", "None or a mapping of group name → options")
    overrides = overrides or {}
    unknown = set(overrides) - {g.name for g in ruleset.param_groups}
    if unknown:
        raise BadInputError(
            f"rules {ruleset.origin or ruleset.name}: no param group named {', '.join(sorted(unknown))}; "
            f"groups: {', '.join(g.name for g in ruleset.param_groups) or 'none'}"
        )
    names = parameter_names(module)
    _idle_patterns(module, ruleset, [n for ns in names.values() for n in ns],
                   [("param group", g) for g in ruleset.param_groups], strict=False)
    buckets: dict[str, list] = {g.name: [] for g in ruleset.param_groups}
    rest: list = []
    taken: dict[str, str] = {}  # parameter name → the group that took it
    for name, p in module.named_parameters():
        if trainable_only and not p.requires_grad:
            continue
        group = param_group_of(ruleset, names[name])
        (buckets[group.name] if group else rest).append(p)
        taken[name] = group.name if group else "rest"
    _shadowed_groups(ruleset, names, taken, buckets)
    result = []
    for g in ruleset.param_groups:
        if buckets[g.name]:
            options = {**g.options, **overrides.get(g.name, {})}
            result.append({"params": buckets[g.name], "name": g.name, **options})
    if rest:
        result.append({"params": rest, "name": "rest"})
    return result


def param_group_of(ruleset: RuleSet, names: Iterable[str]) -> ParamGroup | None:
    """The rules' param group for a parameter with these state-dict ``names`` (a tied one has more
    than one): the first group with a matching pattern, else the ``default: true`` group, else None."""
    names = list(names)
    found = next((g for g in ruleset.param_groups if g.match and any(g.matches(n) for n in names)), None)
    return found or next((g for g in ruleset.param_groups if g.default), None)


def _shadowed_groups(ruleset: RuleSet, names: Mapping[str, list[str]], taken: Mapping[str, str],
                     buckets: Mapping[str, list]) -> None:
    """A param group whose patterns match parameters that earlier groups all took (the first
    matching group wins) is left out of the optimizer's groups, and its options apply to nothing:
    warned, as a pattern that matches no name is."""
    for g in ruleset.param_groups:
        if buckets[g.name] or not g.match:
            continue
        matched = [n for n in taken if any(g.matches(a) for a in names[n])]
        if not matched:  # matches nothing (warned as idle) or only frozen parameters (trainable_only)
            continue
        earlier = list(dict.fromkeys(taken[n] for n in matched))
        options = ", ".join(f"{k} {v!r}" for k, v in g.options.items()) or "its options"
        warnings.warn(
            f"rules {ruleset.origin or ruleset.name}: param group '{g.name}' gets no parameter: every parameter its "
            f"patterns match ({len(matched):,}, e.g. {matched[0]!r}) is taken by the earlier group "
            f"{', '.join(repr(e) for e in earlier)} (the first group that matches a parameter takes it), so "
            f"{options} applies to nothing; move '{g.name}' before {earlier[0]!r} or narrow that group's patterns",
            stacklevel=3)
