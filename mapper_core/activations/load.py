"""Load both models for verify: the source as saved, the target through the plan."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import torch
from torch import nn

from ..errors import BadInputError, PlanError
from ..io.inspection import counted
from ..plan.plan import Plan
from ..plan.report import first_error
from ..rules.ruleset import RuleSet
from ..train.apply import apply_to_module, plan_for_module


def load_source(model: nn.Module, state: Mapping[str, torch.Tensor], origin: str) -> None:
    """The checkpoint into the source model, every key: it is the model's own layout. A key the
    model ties to another (the same Parameter under two names, ``lm_head.weight is wte.weight``)
    may be absent when the other is there: ``save_pretrained`` writes a tied weight once."""
    own = model.state_dict(keep_vars=True)
    state = {**_tied_fill(own, state), **state}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("not in the model", unexpected), ("of another shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {keys[0]})")
        raise BadInputError(f"{origin}: does not fit the source model: {'; '.join(parts)}; give the checkpoint "
                            "that model was saved from, or the right --source-model and --source-model-arg")
    model.load_state_dict(state, strict=True)


def _tied_fill(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each key of ``own`` absent from ``state`` whose tensor is the same object as a present key's
    → that key's tensor (what the model loads into both names anyway)."""
    by_object: dict[int, list[str]] = {}
    for key, value in own.items():
        by_object.setdefault(id(value), []).append(key)
    filled = {}
    for names in by_object.values():
        present = [k for k in names if k in state]
        if present and len(present) < len(names):
            filled.update({k: state[present[0]] for k in names if k not in state})
    return filled


def load_target(model: nn.Module, source: Any, specs: Mapping[str, Any], ruleset: RuleSet,
                origin: str) -> tuple[Plan, tuple[str, ...]]:
    """The plan for ``model`` and the target loaded through it. Kind-check findings do not stop
    verify (judging them with activations is its job); they are returned as text. Any other plan
    error does."""
    plan = plan_for_module(specs, ruleset, model, source_origin=origin)
    findings = tuple(f"{k.source} -> {k.target}: {k.detail}" for k in plan.kind_mismatches if k.action == "error")
    if findings:
        plan = dataclasses.replace(plan, kind_mismatches=tuple(
            dataclasses.replace(k, action="warn") for k in plan.kind_mismatches))
    if plan.errors:
        raise PlanError(f"rules '{plan.rules_name}' cannot load {origin} into the target model: "
                        f"{len(plan.errors)} error{'s' if len(plan.errors) != 1 else ''}, e.g. {first_error(plan)}; run `mapper plan` with the same "
                        "--target model to see them", plan)
    result = apply_to_module(plan, model, source)
    if result.unexpected or result.mismatched:
        raise PlanError(f"rules '{plan.rules_name}': {counted(len(result.unexpected) + len(result.mismatched), 'tensor')} "
                        "do not fit the target model", plan)
    return plan, findings
