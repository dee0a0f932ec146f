"""What convert refuses before anything is written: a plan with errors, a result that does not
fit the target, and a conversion that would write no tensor at all.

Each refusal is a :class:`~mapper_core.errors.PlanError` (exit 1) whose message lists the first
problems, says how many more there are, and what to do.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import PlanError
from .inspection import counted
from ..plan.plan import Plan
from ..plan.prefix_hint import shared_prefix
from ..plan.report import kind_text, mismatch_text
from ..plan.text import shown  # keys are data from a file: a newline or escape in one must not fake lines
from ..specs import TensorSpec, shown_shape

SHOWN = 10  # problems listed in a message; the rest are counted


def refuse_plan_errors(plan: Plan, strict: bool) -> None:
    """Raise when ``plan`` has errors (with ``strict``, uninitialized target keys too)."""
    if not plan.has_errors(strict=strict):
        return
    lines = [_error_line(e) for e in plan.errors]
    if strict:
        lines += [f"uninitialized: {shown(k)}" for k in plan.uninitialized]
    advice = "Fix the rules (see `mapper plan`)"
    if any(type(e).__name__ == "UnmatchedKey" for e in plan.errors):
        advice = ("Source keys no rule takes: add a rule or skip pattern for them, or set `unmatched: keep` "
                  "(written under their own names) or `unmatched: drop` (left behind) in the rules, "
                  "or pass --unmatched keep|drop")
    raise PlanError(f"the plan for rules '{plan.rules_name}' has {counted(len(lines), 'error')}; nothing was written. "
                    f"{advice}:\n" + _listed(lines, "mapper plan --json"), plan)


def _error_line(e: Any) -> str:
    """One plan error, worded as in `mapper plan`'s report (plan.report), with what kind it is first."""
    kind = type(e).__name__
    if kind == "Collision":
        return f"collision: {', '.join(map(shown, e.sources))} -> {shown(e.target)}"
    if kind == "Mismatch":  # a transform step that cannot apply (or a tensor past the expansion limit), or a shape
        return ("empty target: " if not e.target else "transform: " if e.reason else "shape mismatch: ") + mismatch_text(e)
    if kind == "KindMismatch":
        return f"kind mismatch: {kind_text(e)}"
    if kind == "UnmatchedKey":
        return f"unmatched: {shown(e.source)}"
    return str(e)


def _listed(lines: Sequence[str], where: str) -> str:
    shown = [f"  {line}" for line in lines[:SHOWN]]
    if len(lines) > SHOWN:
        shown.append(f"  and {len(lines) - SHOWN} more (see `{where}`)")
    return "\n".join(shown)


def refuse_misfits(written: Sequence[tuple[str, str, TensorSpec]], target_specs: Mapping[str, TensorSpec],
                   target_origin: str | None) -> None:
    """Raise when a tensor to be written (source key, written key, spec) is absent from the
    target or has another shape there: what ``load_state_dict`` would later refuse."""
    lines = []
    for source, key, spec in written:
        t = target_specs.get(key)
        if t is None:
            lines.append(f"{shown(key)} (from {shown(source)}) {shown_shape(spec.shape)}: the target has no such key")
        elif tuple(t.shape) != tuple(spec.shape):
            lines.append(f"{shown(key)} (from {shown(source)}): shape {shown_shape(spec.shape)}, the target's {shown_shape(t.shape)}")
    if lines:
        target = f"target {target_origin}" if target_origin else "the target"
        raise PlanError(f"{counted(len(lines), 'tensor')} would not fit {target}; nothing was written. Fix the rules or "
                        "their transform steps (`mapper plan --target` shows the plan):\n" +
                        _listed(lines, "mapper plan --target ... --json"))


def refuse_nothing_to_write(src: Path, specs: Mapping[str, TensorSpec], plan: Plan | None,
                            non_tensors: Mapping[str, str]) -> None:
    """A conversion that would write 0 tensors is always an error: say why."""
    others = ""
    if non_tensors:
        others = " It holds only non-tensor values: " + ", ".join(
            f"'{shown(k)}' ({t})" for k, t in list(non_tensors.items())[:5]) + (" ..." if len(non_tensors) > 5 else "")
    if not specs:
        raise PlanError(f"{src}: holds no tensors, so there is nothing to write.{others} "
                        "If the weights sit deeper in the file, choose them with --unwrap KEY.PATH")
    first = ", ".join(f"'{shown(k)}'" for k in list(specs)[:3]) + (" ..." if len(specs) > 3 else "")
    assert plan is not None  # without a plan every tensor is written
    rules = f"rules '{plan.rules_name}'" + (f" ({plan.rules_origin})" if plan.rules_origin else "")
    if not plan.mapped:
        why = (f"no rule of the {rules} matched any of the {len(specs)} source keys ({first}); "
               f"{len(plan.skipped)} skipped, {len(plan.unmatched)} unmatched")
    else:
        why = f"every key the {rules} map was left behind (shape mismatch under skip, or a collision)"
    prefix = shared_prefix(list(specs)) if not plan.mapped else None
    look = ("the keys `mapper inspect SRC` lists (a wrong prefix?)" if prefix is None else
            f"the keys: every one starts with '{prefix}' (a Lightning or DDP wrapper's name?), which --strip-prefix "
            f"{prefix} removes from a torch checkpoint's keys")
    raise PlanError(f"{src}: the conversion would write 0 tensors: {why}; nothing was written. Compare the "
                    f"rules' match patterns with {look}, and see `mapper explain SRC KEY --rules R` for one key", plan)
