"""``verify``: load both models, run them on the same inputs, compare the paired modules."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..rules.ruleset import RuleSet
from ..specs import TensorSpec
from ..plan.kinds import split_key
from ..plan.plan import Plan
from ..train.apply import module_ties
from .compare import LeftBehind, Runner, TiedKey, VerifyResult, compare_models, module_pairs, run_model
from .load import load_source, load_target


def verify(ruleset: RuleSet, source: Any, source_specs: Mapping[str, TensorSpec], source_model: nn.Module,
           target_model: nn.Module, inputs: Sequence[torch.Tensor], *, run_source: Runner = run_model,
           run_target: Runner = run_model, rtol: float | None = None, atol: float | None = None,
           origin: str = "source", input_names: Sequence[str] = (),
           names: tuple[str, str] = ("the source model", "the target model")) -> VerifyResult:
    """Load ``source`` (a mapping or a Reader) into ``source_model`` as is and into ``target_model``
    through the rules, run both on ``inputs`` and compare every module pair the plan makes.
    Raises BadInputError when the checkpoint does not fit the source model, PlanError when the
    plan cannot load (kind-check findings are loaded anyway and reported)."""
    state = {k: (source[k] if isinstance(source, Mapping) else source.get_tensor(k)) for k in source_specs}
    load_source(source_model, state, origin)
    plan, findings = load_target(target_model, state, source_specs, ruleset, origin)
    names_s = {n for n, _ in source_model.named_modules()}
    names_t = {n for n, _ in target_model.named_modules()}
    pairs = [(s, t) for s, t in module_pairs(plan) if s in names_s and t in names_t]
    result = compare_models(pairs, source_model, target_model, inputs, run_source=run_source,
                            run_target=run_target, rtol=rtol, atol=atol, names=names)
    gone, tied = left_behind(plan, state, module_ties(source_model))
    return VerifyResult(result.modules, result.rtol, result.atol, tuple(input_names), len(plan.loadable), findings,
                        final=result.final, left_behind=gone, tied=tied)


def left_behind(plan: Plan, state: Mapping[str, torch.Tensor], source_ties: Sequence[Sequence[str]] = (),
                ) -> tuple[tuple[LeftBehind, ...], tuple[TiedKey, ...]]:
    """Source modules with floating-point weights (parameters, running statistics) the plan does not
    load, by module in checkpoint order, each key with why: what verify cannot have compared; and the
    keys it loaded all the same. A key the source model ties to a loaded key (``source_ties``: the
    names of one tensor, an output layer sharing the embedding) is loaded when the target model ties
    a key to where that one went (``plan.tied_filled``); else it is left behind, and the reason says so."""
    into = {m.source: m.target for m in plan.loadable}
    why = {s.source: (f"skipped by '{s.pattern}'" if s.pattern is not None else
                      f"skipped by rule {s.rule} on a shape mismatch") for s in plan.skipped}
    why.update((m.source, f"rule {m.rule}: shape mismatch, skipped") for m in plan.mismatched)
    why.update((k, "no rule or skip pattern takes it") for k in plan.unmatched)
    loaded_partner = {k: next(n for n in names if n in into) for names in source_ties
                      if any(n in into for n in names) for k in names if k not in into}
    tied_in_target: dict[str, str] = {}
    for target, partner in plan.tied_filled:
        tied_in_target.setdefault(partner, target)
    tied: list[TiedKey] = []
    modules: dict[str, list[str]] = {}
    for key, tensor in state.items():
        if key in into or not tensor.is_floating_point() or not tensor.numel():
            continue
        partner = loaded_partner.get(key)
        if partner is not None and into[partner] in tied_in_target:
            tied.append(TiedKey(key, partner, into[partner], tied_in_target[into[partner]]))
            continue
        if partner is not None:
            why[key] = (f"{why.get(key, 'not loaded')}; tied to '{partner}', which was loaded into "
                        f"'{into[partner]}', but the target model ties nothing to that")
        modules.setdefault(split_key(key)[0], []).append(key)
    return tuple(LeftBehind(module, tuple(keys), tuple(why.get(k, "not loaded") for k in keys))
                 for module, keys in modules.items()), tuple(tied)
