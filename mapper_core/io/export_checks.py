"""An export that would write nothing: refused, with the likely reason (a wrapper's key prefix).

A Lightning checkpoint's keys start with ``model.``; rules written for the bare network produce
none of them, so the export plan is empty and the output would hold only what ``--unmatched
keep`` passes through under the target's own names: a file in the wrong layout, written with
exit 0. It is refused like a conversion that would write 0 tensors.
"""
from __future__ import annotations

from typing import Mapping

from ..errors import PlanError
from ..plan.prefix_hint import shared_prefix
from ..plan.text import shown
from ..specs import TensorSpec


def refuse_nothing_exported(plan, target_specs: Mapping[str, TensorSpec], source: str,
                            source_specs: Mapping[str, TensorSpec] | None = None, specs_origin: str | None = None) -> None:
    """Raise PlanError when ``plan`` (an ExportPlan) exports no tensor of a non-empty ``target_specs``."""
    if plan.entries or not target_specs:
        return
    keys = list(target_specs)
    first = ", ".join(f"'{shown(k)}'" for k in keys[:3]) + (" ..." if len(keys) > 3 else "")
    hint = "compare the rules' targets with the keys `mapper inspect` lists"
    prefix = shared_prefix(keys)
    specs_prefix = shared_prefix(list(source_specs)) if source_specs else None
    if specs_prefix is not None:
        hint = (f"every key of the source-layout file {specs_origin or ''} starts with '{specs_prefix}' (a Lightning "
                f"or DDP wrapper's name), which the rules do not expect: write it without the prefix first (mapper "
                f"convert SPECS bare.safetensors --strip-prefix {specs_prefix}) and pass that as --source-specs")
    elif prefix is not None:
        hint = (f"every key starts with '{prefix}' (a Lightning or DDP wrapper's name?): --strip-prefix {prefix} reads "
                "a torch checkpoint without it; another format's keys are read as stored (convert it without the "
                "prefix first)")
    raise PlanError(f"{source}: the export would write 0 tensors: no rule of the rules '{plan.rules_name}' produces "
                    f"any of its {len(keys):,} keys ({first}); nothing was written. {hint[0].upper()}{hint[1:]}", plan)
