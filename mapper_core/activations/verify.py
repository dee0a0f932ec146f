"""``verify``: load both models, run them on the same inputs, compare the paired modules."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..rules.ruleset import RuleSet
from ..specs import TensorSpec
from .compare import Runner, VerifyResult, compare_models, module_pairs, run_model
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
    return VerifyResult(result.modules, result.rtol, result.atol, tuple(input_names), len(plan.loadable), findings)
