"""The one call io/, train/ and the CLI use to make a plan with every check the inputs allow.

``make_plan`` takes the unmatched policy, the source's non-tensor values and the target's
module types as keyword arguments; this passes only those the installed planner knows, so
the callers are written once against the full set.
"""
from __future__ import annotations

import inspect
from typing import Mapping

from ..plan.make import make_plan
from ..plan.plan import Plan
from ..rules.ruleset import RuleSet
from ..specs import TensorSpec

_KNOWN = set(inspect.signature(make_plan).parameters)


def plan_with_checks(source_specs: Mapping[str, TensorSpec], ruleset: RuleSet,
                     target_specs: Mapping[str, TensorSpec] | None = None, *,
                     source_origin: str | None = None, target_origin: str | None = None,
                     unmatched: str | None = None, non_tensor: Mapping[str, str] | None = None,
                     target_module_types: Mapping[str, str] | None = None) -> Plan:
    """``make_plan`` with the unmatched policy, non-tensor values and module types where given."""
    extra = {"unmatched": unmatched, "non_tensor": non_tensor, "target_module_types": target_module_types}
    extra = {k: v for k, v in extra.items() if v is not None and k in _KNOWN}
    return make_plan(source_specs, ruleset, target_specs, source_origin=source_origin,
                     target_origin=target_origin, **extra)
