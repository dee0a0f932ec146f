"""Render a Plan as a readable text report. The JSON form is ``Plan.to_dict()``: the same value.

Every key goes through :func:`.text.shown`, so a key holding a newline or an ANSI escape cannot
fake a row. Lists of problems are complete, or end with "and N more (see --json)".
"""
from __future__ import annotations

from collections import defaultdict
from operator import attrgetter, itemgetter
from typing import Iterable

from .plan import PASS_THROUGH, Collision, KindMismatch, Mapped, Mismatch, Plan, UnusedRule
from ..rules.ruleset import RuleSet
from ..specs import format_shape
from .rows import END, Cache, block, key_rows, padding, shown_all
from .text import shown

_source, _pattern_rule = attrgetter("source"), attrgetter("pattern", "rule")
# a Mapped is a tuple: its fields by position (itemgetter) are quicker to get than by name
_m_source, _m_target, _m_transform, _m_dtype_shape = (itemgetter(*map(Mapped._fields.index, names)) for names in (
    ("source",), ("target",), ("transform",), ("dtype", "shape", "target_dtype")))
LIMIT = 50  # rows per list before "and N more (see --json)"
TAKERS = 5  # earlier rules named for an unused rule's keys before "and N more"
UNMATCHED_REMEDIES = ("add a rule or a skip pattern that takes them; or `unmatched: keep` in the rules "
                      "(or --unmatched keep) to pass them through under their own names; or `unmatched: drop` "
                      "(or --unmatched drop) to leave them behind")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def capped(rows: Iterable[str], limit: int | None = LIMIT, indent: str = "  ") -> list[str]:
    """``rows``, or the first ``limit`` of them and a last row "and N more (see --json)"."""
    rows = list(rows)
    if limit is None or len(rows) <= limit:
        return rows
    return rows[:limit] + [f"{indent}... and {len(rows) - limit} more (see --json)"]


def mismatch_text(m: Mismatch) -> str:
    after = f" ({format_shape(m.out_shape)} after its transform)" if m.out_shape is not None else ""
    if m.reason:
        what = shown(m.reason)
    elif m.target_shape is None:
        what = "the target has no such key"
    else:
        what = f"shape {format_shape(m.shape)}{after} but target has {format_shape(m.target_shape)}"
    where = f"{_rule(m.rule)}, line {m.line}" if m.line else _rule(m.rule)
    return f"{shown(m.source)} -> {shown(m.target)} ({where}): {what}"


def collision_text(c: Collision) -> str:
    """``collision: 2 sources map to 'T' (both by rule 0, line 3): a, b``; each source with its rule
    when they differ."""
    where = [_rule(r) + (f", line {n}" if n is not None else "") for r, n in zip(c.rules, c.lines or [None] * len(c.rules))]
    head = f"collision: {len(c.sources)} sources map to '{shown(c.target)}'"
    if len(set(where)) == 1:
        return f"{head} ({'both' if len(c.sources) == 2 else 'all'} by {where[0]}): " + ", ".join(map(shown, c.sources))
    return f"{head}: " + ", ".join(f"{shown(s)} ({w})" for s, w in zip(c.sources, where))


def kind_text(k: KindMismatch) -> str:
    return (f"{shown(k.source)} -> {shown(k.target)} ({_rule(k.rule)}): {k.source_kind} -> {k.target_kind}: "
            f"{shown(k.detail)} (on_kind_mismatch: {k.action})")


def error_lines(plan: Plan, strict: bool = False, limit: int | None = LIMIT, listed_below: bool = False
                ) -> list[str]:
    """The plan's problems as report rows ("  error: ...", "  warning: ...", "  skipped: ..."), each
    list complete or capped with "and N more (see --json)". Also for messages outside the report.
    ``listed_below``: the report lists the unmatched and uninitialized keys in sections of their
    own, so here each is one line that points there."""
    lines: list[str] = []
    lines += capped((f"  error: {collision_text(c)}" for c in plan.collisions), limit)
    errors = [m for m in plan.mismatched if m.action == "error"]
    lines += capped((f"  error: {mismatch_text(m)}" for m in errors), limit)
    kinds = [k for k in plan.kind_mismatches if k.action == "error"]
    lines += capped((f"  error: kind mismatch: {kind_text(k)}" for k in kinds), limit)
    if plan.unmatched and plan.unmatched_policy == "error":
        n = len(plan.unmatched)
        lines.append(f"  error: {n} source key{'s' if n != 1 else ''} no rule or skip pattern takes "
                     f"(unmatched: error): {UNMATCHED_REMEDIES}")
        lines += ["    (listed below, under 'Unmatched source keys')"] if listed_below else \
            capped((f"    {shown(k)}" for k in plan.unmatched), limit, indent="    ")
    if strict and plan.uninitialized:
        n = len(plan.uninitialized)
        lines.append(f"  error: {n} uninitialized target key{'s' if n != 1 else ''} under --strict: "
                     "map something into them, or declare them as new layers under `new:` in the rules")
        lines += ["    (listed below, under 'Uninitialized target keys')"] if listed_below else \
            capped((f"    {shown(k)}" for k in plan.uninitialized), limit, indent="    ")
    lines += capped((f"  warning: kind mismatch: {kind_text(k)}" for k in plan.kind_mismatches
                     if k.action != "error"), limit)
    lines += capped((f"  warning: {unused_text(u)}; {_unshadow(u)}" for u in shadowed_rules(plan)), limit)
    lines += capped((f"  skipped: {mismatch_text(m)}" for m in plan.mismatched if m.action == "skip"), limit)
    return lines


def shadowed_rules(plan: Plan) -> list[UnusedRule]:
    """Unused rules whose every key went to one earlier rule or skip pattern: the earlier one steals
    them, a warning. (Keys spread over several earlier rules is what a fallback rule at the end sees.)"""
    return [u for u in plan.unused_rules if u.reason == "shadowed" and len(u.taken_by) == 1]


def unused_text(u: UnusedRule) -> str:
    """``rule 3 (line 11): 'PATTERN': shadowed: its 12 matching keys all went to rule 2 (line 8)``."""
    head = f"{_at('rule', u.rule, u.line)}: '{shown(u.match)}'"
    if u.reason == "no_match":
        return f"{head}: matched no source key"
    shown_takers = u.taken_by[:TAKERS]
    more = f", and {len(u.taken_by) - TAKERS} more (see --json)" if len(u.taken_by) > TAKERS else ""
    if u.reason == "shadowed" and len(u.taken_by) == 1:
        return f"{head}: shadowed: {_its(u.matched)} all went to {_at(*_taker(u.taken_by[0]))}"
    went = ", ".join(f"{t.keys} to {_at(*_taker(t))}" for t in shown_takers) + more
    if u.reason == "shadowed":
        return f"{head}: shadowed: {_its(u.matched)} went to earlier ones: {went}"
    key, why = u.example
    filled = f"its template could not be filled ({shown(why)}, for '{shown(key)}')"
    if not u.taken_by:
        return f"{head}: matched {_count(u.matched, 'key')} but {filled}"
    return f"{head}: matched {_count(u.matched, 'key')}: {went.replace(' to ', ' went to ', 1)}; for {u.unfilled} {filled}"


def _taker(t) -> tuple[str, int, int | None]:
    return ("rule" if t.kind == "rule" else "skip pattern"), t.index, t.line


def _unshadow(u: UnusedRule) -> str:
    t = u.taken_by[0]
    if t.kind == "skip":
        return f"narrow skip pattern {t.index} (skip patterns are tried before every rule), or remove it"
    return f"put rule {u.rule} before rule {t.index}, or narrow rule {t.index}'s pattern"


def _its(n: int) -> str:
    return "its matching key" if n == 1 else f"its {n} matching keys"


def _at(what: str, index: int, line: int | None) -> str:
    return f"{what} {index}" + (f" (line {line})" if line is not None else "")


def first_error(plan: Plan) -> str:
    """The first of the plan's errors as one line, for a message that sends the user to `mapper plan`."""
    return error_lines(plan, limit=1)[0].strip()


def render_text(plan: Plan, ruleset: RuleSet | None = None, strict: bool = False) -> str:
    """The human report: errors first, then one section per rule, then what was left, then the summary.

    With ``strict``, uninitialized target keys (not the declared new ones) make the result a failure,
    as ``--strict`` does.
    """
    return "\n".join(report_lines(plan, ruleset, strict))


def report_lines(plan: Plan, ruleset: RuleSet | None = None, strict: bool = False) -> list[str]:
    """:func:`render_text`'s lines, to be joined by newlines; the rows of a long list are one item
    (the CLI writes them a few at a time instead of making the whole text)."""
    lines: list[str] = []
    out = lines.append
    out(f"Plan for rules '{shown(plan.rules_name)}'" + (f" ({shown(plan.rules_origin)})" if plan.rules_origin else ""))
    out(f"  source: {shown(plan.source_origin) if plan.source_origin else '(in memory)'}: {plan.source_count} key{'s' if plan.source_count != 1 else ''}")
    if plan.target_count is not None:
        out(f"  target: {shown(plan.target_origin) if plan.target_origin else '(in memory)'}: "
            f"{plan.target_count} key{'s' if plan.target_count != 1 else ''}")
    out(f"  unmatched source keys: {plan.unmatched_policy}" + {
        "error": " (the plan fails on them)", "keep": " (passed through under their own names)",
        "drop": " (left behind and listed)"}.get(plan.unmatched_policy, ""))

    errors = plan.errors  # made afresh on each use: an entry per unmatched key
    problems = error_lines(plan, strict, listed_below=True)
    if problems:
        out("")
        n_errors = len(errors) + (len(plan.uninitialized) if strict else 0)
        shape_skips = sum(1 for m in plan.mismatched if m.action == "skip")
        warnings = sum(1 for k in plan.kind_mismatches if k.action != "error") + len(shadowed_rules(plan))
        extra = (f", {shape_skips} skipped on shape mismatch" if shape_skips else "") + \
                (f", {warnings} warning{'s' if warnings != 1 else ''}" if warnings else "")
        out(f"PROBLEMS ({n_errors} error{'s' if n_errors != 1 else ''}{extra})")
        lines.extend(problems)

    by_rule: dict[int, list] = defaultdict(list)
    for m in plan.mapped:
        by_rule[m.rule].append(m)
    tails = Cache(_spec_tail)  # "  DTYPE SHAPE" and the row's end, once per distinct (dtype, shape)
    for index in sorted(i for i in by_rule if i >= 0):
        entries = by_rule[index]
        out("")
        if ruleset is not None and index < len(ruleset.rules):
            rule = ruleset.rules[index]
            out(f"Rule {index}: {shown(rule.match)}  ->  {shown(rule.target)}  ({_count(len(entries), 'key')})")
        else:
            out(f"Rule {index} ({_count(len(entries), 'key')})")
        sources = shown_all(list(map(_m_source, entries)))
        out(block(sources, padding(sources, "  ->  "), shown_all(list(map(_m_target, entries))),
                  _mapped_tails(entries, tails)))
    passed = by_rule.get(PASS_THROUGH)  # plan.passed_through, in the same order
    if passed:
        out("")
        out(f"Passed through ({len(passed)}): no rule takes them; kept under their own names (unmatched: keep)")
        out(block(shown_all(list(map(_m_source, passed))), map(tails.__getitem__, map(_m_dtype_shape, passed))))

    if plan.skipped:
        out("")
        out(f"Skipped ({len(plan.skipped)})")
        sources = shown_all(list(map(_source, plan.skipped)))
        out(block(sources, padding(sources, "  by "), map(Cache(_skip_reason).__getitem__,
                                                          map(_pattern_rule, plan.skipped))))
    if plan.unmatched:
        out("")
        fate = {"drop": "left behind (unmatched: drop)", "error": "an error (unmatched: error)"}
        out(f"Unmatched source keys ({len(plan.unmatched)}): no rule or skip pattern takes them; "
            + fate.get(plan.unmatched_policy, plan.unmatched_policy))
        out(key_rows(plan.unmatched))
    if plan.non_tensor:
        out("")
        out(f"Non-tensor values ({len(plan.non_tensor)}): not tensors, left behind")
        lines.extend(f"  {shown(n.key)}: {shown(n.type)}" for n in plan.non_tensor)
    if plan.uninitialized:
        out("")
        out(f"Uninitialized target keys ({len(plan.uninitialized)}): nothing fills them")
        out(key_rows(plan.uninitialized))
    if plan.expected_uninitialized:
        out("")
        out(f"New target keys ({len(plan.expected_uninitialized)}): nothing fills them, as the rules' "
            "`new:` patterns declare; they keep their initialisation")
        out(key_rows(plan.expected_uninitialized))
    if plan.tied_filled:
        out("")
        lines.extend(_tied_lines(plan, ruleset))
    if plan.unused_rules:
        out("")
        out(f"Unused rules ({len(plan.unused_rules)}): took no source key")
        lines.extend(f"  {unused_text(u)}" for u in plan.unused_rules)

    lines.extend(_summary(plan, strict, errors))
    return lines


def _tied_lines(plan: Plan, ruleset: RuleSet | None) -> list[str]:
    """The target keys filled through a tie: each is one tensor with a key the plan fills."""
    new = [p.pattern.fullmatch for p in ruleset.new] if ruleset is not None else []
    keys = shown_all([k for k, _ in plan.tied_filled])
    declared = [" (a `new:` pattern declares it new, but it is tied to a filled key)" if any(f(k) for f in new) else ""
                for k, _ in plan.tied_filled]
    rows = block(keys, padding(keys, "  = "), shown_all([p for _, p in plan.tied_filled]),
                 [d + END for d in declared])
    return [f"Filled through a tie ({len(plan.tied_filled)}): one tensor in the target with a key the plan "
            "fills (tied weights), so they hold its values", rows]


def _summary(plan: Plan, strict: bool, errors: tuple) -> list[str]:
    s = plan.summary()
    lines = ["", "Summary",
             f"  source keys {s['source_keys']}: mapped {s['mapped']}, skipped {s['skipped']}, "
             f"unmatched {s['unmatched']}; consumed {_pct(s['source_consumed'])}"]
    if s["passed_through"] or s["non_tensor"]:
        lines.append(f"  passed through {s['passed_through']}, non-tensor values {s['non_tensor']}")
    if s["target_keys"] is not None:
        tied = f" ({s['tied_filled']} through a tie)" if s["tied_filled"] else ""
        lines.append(f"  target keys {s['target_keys']}: filled {_pct(s['target_filled'])}{tied}, "
                     f"uninitialized {s['uninitialized']}, new (expected) {s['expected_uninitialized']}")
    lines.append(f"  mismatched {s['mismatched']}, kind mismatches {s['kind_mismatch']}"
                 + (f" ({s['kind_warnings']} warned)" if s["kind_warnings"] else "")
                 + f", collisions {s['collisions']}, unused rules {s['unused_rules']}")
    if errors:
        lines.append(f"  result: ERRORS ({len(errors)})")
    elif strict and plan.uninitialized:  # plan.has_errors(strict), errors aside
        lines.append(f"  result: FAILED under --strict ({len(plan.uninitialized)} uninitialized target keys)")
    elif s["kind_warnings"] or shadowed_rules(plan):
        n = s["kind_warnings"] + len(shadowed_rules(plan))
        lines.append(f"  result: clean, with {_count(n, 'warning')} (see PROBLEMS)")
    else:
        lines.append("  result: clean")
    return lines


def _spec_tail(dtype_shape: tuple[str, tuple[int, ...], str | None]) -> str:
    dtype, shape, target_dtype = dtype_shape
    return f"  {dtype} {format_shape(shape)}{_into(dtype, target_dtype)}{END}"


def _into(dtype: str, target_dtype: str | None) -> str:
    """`` (target F32)`` when the target holds another dtype than the tensor arrives in (a load casts it)."""
    return f" (target {target_dtype})" if target_dtype is not None and target_dtype != dtype else ""


def _mapped_tails(entries: list[Mapped], tails: Cache) -> Iterable[str]:
    """What follows each entry's target in its rule section: the source spec, and the transform's result."""
    specs = map(tails.__getitem__, map(_m_dtype_shape, entries))
    if not any(map(_m_transform, entries)):  # the usual rule: no transform steps
        return specs
    return [_spec_tail((m.dtype, m.shape, None))[:-len(END)] + _via(m) + END if m.transform else spec
            for spec, m in zip(specs, entries)]


def _via(m: Mapped) -> str:
    steps = ", ".join(str(s) for s in m.transform)
    result = (f"{m.result_dtype} {format_shape(m.out_shape)}" if m.out_shape is not None else
              "(the transform cannot apply: see the error above)")
    into = _into(m.result_dtype, m.target_dtype) if m.out_shape is not None else ""
    return f" -> {result} via {steps}{into}"


def _skip_reason(pattern_rule: tuple[str | None, int | None]) -> str:
    pattern, rule = pattern_rule
    why = (f"skip pattern {shown(pattern)}" if pattern is not None
           else f"rule {rule}: shape mismatch, on_shape_mismatch: skip")
    return why + END


def _rule(index: int) -> str:
    return "passed through" if index < 0 else f"rule {index}"


def _count(n: int, noun: str) -> str:
    """``1 key``, ``2 keys``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
