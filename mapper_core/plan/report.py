"""Render a Plan as a readable text report. The JSON form is ``Plan.to_dict()``: the same value."""
from __future__ import annotations

from collections import defaultdict

from .plan import Plan
from ..rules.ruleset import RuleSet
from ..specs import format_shape


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def render_text(plan: Plan, ruleset: RuleSet | None = None, strict: bool = False) -> str:
    """The human report: errors first, then one section per rule, then what was left, then the summary.

    With ``strict``, unmatched and uninitialized keys make the result a failure, as ``--strict`` does.
    """
    lines: list[str] = []
    out = lines.append
    out(f"Plan for rules '{plan.rules_name}'" + (f" ({plan.rules_origin})" if plan.rules_origin else ""))
    out(f"  source: {plan.source_origin or '(in memory)'}: {plan.source_count} keys")
    if plan.target_count is not None:
        out(f"  target: {plan.target_origin or '(in memory)'}: {plan.target_count} keys")

    if plan.collisions or plan.mismatched:
        out("")
        shape_skips = sum(1 for m in plan.mismatched if m.action == "skip")
        out(f"PROBLEMS ({len(plan.errors)} error{'s' if len(plan.errors) != 1 else ''}"
            + (f", {shape_skips} skipped on shape mismatch)" if shape_skips else ")"))
        for c in plan.collisions:
            rules = ", ".join(str(r) for r in c.rules)
            out(f"  error: collision: {len(c.sources)} sources map to '{c.target}' (rules {rules}): "
                + ", ".join(c.sources))
        for m in plan.mismatched:
            label = "error" if m.action == "error" else "skipped"
            after = f" ({format_shape(m.out_shape)} after its transform)" if m.out_shape is not None else ""
            if m.reason:
                what = m.reason
            elif m.target_shape is None:
                what = "the target has no such key"
            else:
                what = f"shape {format_shape(m.shape)}{after} but target has {format_shape(m.target_shape)}"
            out(f"  {label}: {m.source} -> {m.target} (rule {m.rule}): {what}")

    by_rule: dict[int, list] = defaultdict(list)
    for m in plan.mapped:
        by_rule[m.rule].append(m)
    for index in sorted(by_rule):
        entries = by_rule[index]
        out("")
        if ruleset is not None and index < len(ruleset.rules):
            rule = ruleset.rules[index]
            out(f"Rule {index}: {rule.match}  ->  {rule.target}  ({len(entries)} keys)")
        else:
            out(f"Rule {index} ({len(entries)} keys)")
        width = max(len(m.source) for m in entries)
        for m in entries:
            via = ""
            if m.transform:
                steps = ", ".join(str(s) for s in m.transform)
                via = f" -> {m.result_dtype} {format_shape(m.result_shape)} via {steps}"
            out(f"  {m.source:<{width}}  ->  {m.target}  {m.dtype} {format_shape(m.shape)}{via}")

    if plan.skipped:
        out("")
        out(f"Skipped ({len(plan.skipped)})")
        width = max(len(s.source) for s in plan.skipped)
        for s in plan.skipped:
            why = f"skip pattern {s.pattern}" if s.pattern is not None else f"rule {s.rule}: shape mismatch, on_shape_mismatch: skip"
            out(f"  {s.source:<{width}}  by {why}")
    if plan.unmatched:
        out("")
        out(f"Unmatched source keys ({len(plan.unmatched)}): no rule or skip pattern takes them")
        lines.extend(f"  {k}" for k in plan.unmatched)
    if plan.uninitialized:
        out("")
        out(f"Uninitialized target keys ({len(plan.uninitialized)}): nothing fills them")
        lines.extend(f"  {k}" for k in plan.uninitialized)
    if plan.unused_rules:
        out("")
        out(f"Unused rules ({len(plan.unused_rules)}): matched no source key")
        lines.extend(f"  rule {u.rule}: {u.match}" for u in plan.unused_rules)

    s = plan.summary()
    out("")
    out("Summary")
    out(f"  source keys {s['source_keys']}: mapped {s['mapped']}, skipped {s['skipped']}, "
        f"unmatched {s['unmatched']}; consumed {_pct(s['source_consumed'])}")
    if s["target_keys"] is not None:
        out(f"  target keys {s['target_keys']}: filled {_pct(s['target_filled'])}, "
            f"uninitialized {s['uninitialized']}")
    out(f"  mismatched {s['mismatched']}, collisions {s['collisions']}, unused rules {s['unused_rules']}")
    if plan.errors:
        out("  result: ERRORS")
    elif plan.has_errors(strict=strict):
        out("  result: FAILED under --strict (unmatched or uninitialized keys)")
    else:
        out("  result: clean")
    return "\n".join(lines)
