"""explain(key): which rule or skip pattern takes a source key, and why every other candidate lost.

It re-runs the planner's decision for one key the slow, talkative way (every pattern,
``fullmatch`` then ``match``/``search`` to spot near misses), and adds what a Plan knows
about the key: whether it is in the source at all, every transform step with its shapes, a shape
mismatch, the kind check, a collision, and the exit code the plan gives for the key.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from .plan import PASS_THROUGH, Collision, KindMismatch, Mismatch, Plan
from ..rules.ruleset import Rule, RuleSet
from ..rules.transforms import TransformChainError, chain_spec
from ..specs import TensorSpec, format_shape
from .kinds import split_key
from .text import shown


@dataclass(frozen=True)
class Candidate:
    """One rule or skip pattern that has something to do with the key."""

    kind: str  # "rule" or "skip"
    index: int  # the rule's index, or the skip pattern's position in the list
    match: str
    won: bool
    reason: str
    target: str | None = None  # what a fully matching rule would render
    line: int | None = None  # of the rule or skip pattern in the rules file, when known


@dataclass(frozen=True)
class Explanation:
    """The verdict on one source key and the reasons behind it."""

    key: str
    outcome: str  # "mapped", "skipped", "unmatched", "passed through", or "non-tensor" (a value rules do not move)
    rule: int | None  # the rule that took the key (also set when a shape mismatch skipped it)
    skip_pattern: str | None  # the skip pattern that took the key
    target: str | None
    candidates: tuple[Candidate, ...]  # skip patterns first, then rules, each in order
    unrelated_rules: int  # rules that match no part of the key
    unrelated_skips: int
    rules_name: str = ""
    rules_origin: str | None = None  # the rules file, whose lines the candidates give
    in_source: bool | None = None  # None when no plan was given
    similar: tuple[str, ...] = ()  # source keys close to a key that is not in the source
    # (source key, rule) of the sources mapped to this key, when it is a target name and not a source key
    target_of: tuple[tuple[str, int], ...] = ()
    mismatch: Mismatch | None = None
    collision: Collision | None = None
    target_shape: tuple[int, ...] | None = None
    shape: tuple[int, ...] | None = None
    # every transform step: {"step": "unsqueeze(dim=2)", "in": [64, 32], "out": [64, 32, 1]}
    # ("out": None and an "error" where the step cannot apply)
    steps: tuple[dict[str, Any], ...] = ()
    kind_mismatch: KindMismatch | None = None
    kinds: tuple[str, str] | None = None  # (source module, target module) kinds when the plan checked them
    # what `mapper plan` gives for this key: 1 when its fate is an error of the plan (a shape or kind
    # mismatch under error, a collision, unmatched under `unmatched: error`), else 0
    exit_code: int = 0
    unmatched_policy: str | None = None
    # a non-tensor value the source holds under this key (a step count): the type its reader reported, and
    # what convert does with it (the caller's words, which depend on the format; a generic one without)
    non_tensor: str | None = None
    non_tensor_fate: str | None = None

    @property
    def winner(self) -> Candidate | None:
        return next((c for c in self.candidates if c.won), None)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for name in ("shape", "target_shape"):
            d[name] = None if d[name] is None else list(d[name])
        d["candidates"] = [dataclasses.asdict(c) for c in self.candidates]
        d["similar"] = list(self.similar)
        d["target_of"] = [{"source": source, "rule": rule} for source, rule in self.target_of]
        d["steps"] = [dict(step) for step in self.steps]
        d["kinds"] = None if self.kinds is None else list(self.kinds)
        if self.collision is not None:
            d["collision"] = {"target": self.collision.target, "sources": list(self.collision.sources),
                              "rules": list(self.collision.rules)}
        if self.mismatch is not None:
            d["mismatch"]["shape"] = list(self.mismatch.shape)
            d["mismatch"]["target_shape"] = None if self.mismatch.target_shape is None else list(self.mismatch.target_shape)
        return d

    def render(self) -> str:
        """The text form, for people."""
        lines = [f"key '{shown(self.key)}'"]
        if self.non_tensor is not None:
            return "\n".join(lines + [
                f"  a non-tensor value of the source ({shown(self.non_tensor)}), not a tensor: rules and skip "
                "patterns apply to tensors only",
                f"  convert {self.non_tensor_fate or 'leaves it behind'}",
                f"  exit code {self.exit_code}"])
        if self.in_source is False:
            lines.append("  not in the source checkpoint; what would happen if it were:")
            for source, rule in self.target_of:
                lines.append(f"  it is a target name: source key '{shown(source)}' maps to it "
                             f"({'passed through' if rule == PASS_THROUGH else f'rule {rule}'}); explain that key")
            if self.similar:
                lines.append("  similar source keys: " + ", ".join(self.similar))
        if self.outcome == "mapped":
            lines.append(f"  mapped by {_label(self.winner) if self.winner else f'rule {self.rule}'} -> {shown(self.target)}")
        elif self.outcome == "passed through":
            lines.append("  passed through under its own name: no rule or skip pattern takes it (unmatched: keep)")
        elif self.outcome == "skipped" and self.skip_pattern is not None:
            line = self.winner.line if self.winner is not None else None
            lines.append(f"  skipped by skip pattern {shown(self.skip_pattern)}" + (f" (line {line})" if line else ""))
        elif self.outcome == "skipped":
            lines.append(f"  skipped: rule {self.rule} takes it -> {shown(self.target)}, but the shapes differ "
                         "(on_shape_mismatch: skip)")
        else:
            fate = {"error": "an error (unmatched: error); add a rule or a skip pattern, or set unmatched: keep "
                             "or drop", "drop": "left behind (unmatched: drop)"}.get(self.unmatched_policy or "")
            lines.append("  unmatched: no rule and no skip pattern takes it" + (f"; {fate}" if fate else ""))
        if self.shape is not None:
            lines.append(f"  shape {format_shape(self.shape)}" + (
                f", target {format_shape(self.target_shape)}" if self.target_shape is not None else ""))
        if self.steps:
            chain = [format_shape(tuple(self.steps[0]["in"]))]
            for step in self.steps:
                chain.append(step["step"])
                chain.append(format_shape(tuple(step["out"])) if step["out"] is not None
                             else f"(cannot apply: {shown(step['error'])})")
            lines.append("  transform: " + " -> ".join(chain))
        if self.kind_mismatch is not None:
            k = self.kind_mismatch
            lines.append(f"  {'error' if k.action == 'error' else 'warning'}: kind mismatch: {k.source_kind} -> "
                         f"{k.target_kind}: {shown(k.detail)} (on_kind_mismatch: {k.action})")
        elif self.kinds is not None:
            lines.append(f"  kinds: {self.kinds[0]} -> {self.kinds[1]}: compatible, and the module's members "
                         "stay together")
        if self.mismatch is not None:
            m = self.mismatch
            after = f" ({format_shape(m.out_shape)} after its transform)" if m.out_shape is not None else ""
            what = (shown(m.reason) or f"the target has no key '{shown(m.target)}'" if m.reason or m.target_shape is None
                    else f"shape {format_shape(m.shape)}{after} but the target has {format_shape(m.target_shape)}")
            effect = "the plan fails" if m.action == "error" else "the key is left behind"
            if not m.target:  # an empty key: an error whatever on_shape_mismatch says
                lines.append(f"  error: empty target: {what} (the plan fails)")
            else:
                lines.append(f"  {'error' if m.action == 'error' else 'note'}: shape mismatch: {what} "
                             f"(on_shape_mismatch: {m.action}: {effect})")
        if self.collision is not None:
            others = [s for s in self.collision.sources if s != self.key]
            lines.append(f"  error: collision: '{shown(self.collision.target)}' is also the target of "
                         + ", ".join(shown(o) for o in others))
        if self.candidates:
            lines.append(f"  candidates ({shown(self.rules_origin)}):" if self.rules_origin else "  candidates:")
            labels = max(len(_label(c)) for c in self.candidates)
            width = labels + 2 + max(len(shown(c.match)) for c in self.candidates)
            for c in self.candidates:
                head = f"{_label(c):<{labels}}  {shown(c.match)}"
                lines.append(f"    {'*' if c.won else ' '} {head:<{width}}  {shown(c.reason)}")
        rest = []
        if self.unrelated_skips:
            rest.append(f"{self.unrelated_skips} skip pattern{'s' if self.unrelated_skips != 1 else ''}")
        if self.unrelated_rules:
            rest.append(f"{self.unrelated_rules} rule{'s' if self.unrelated_rules != 1 else ''}")
        if rest:
            single = len(rest) == 1 and (self.unrelated_skips + self.unrelated_rules) == 1
            lines.append(f"  {' and '.join(rest)} {'matches' if single else 'match'} no part of the key")
        why = ": the key is not in the source" if self.in_source is False else ": the plan has an error for this key"
        lines.append(f"  exit code {self.exit_code}" + (why if self.exit_code else ""))
        return "\n".join(lines)


def explain(key: str, ruleset: RuleSet, plan: Plan | None = None, non_tensor_fate: str | None = None) -> Explanation:
    """Explain what happens to source ``key`` under ``ruleset`` (and, given a plan, what the plan found).
    ``non_tensor_fate`` says what convert does with the source's non-tensor values ("leaves it behind")."""
    candidates: list[Candidate] = []
    skip_winner: int | None = None
    unrelated_skips = 0
    for pos, skip in enumerate(ruleset.skip):
        if skip.pattern.fullmatch(key):
            if skip_winner is None:
                skip_winner = pos
                candidates.append(Candidate("skip", pos, skip.match, True, "takes the key: it is left behind",
                                            line=skip.line))
            else:
                candidates.append(Candidate("skip", pos, skip.match, False,
                                            f"also matches fully, but skip pattern {skip_winner} comes first",
                                            line=skip.line))
            continue
        near = _near_miss(skip.pattern, key)
        if near is None:
            unrelated_skips += 1
        else:
            candidates.append(Candidate("skip", pos, skip.match, False, near, line=skip.line))

    rule_winner: Rule | None = None
    target = None
    unrelated_rules = 0
    for rule in ruleset.rules:
        m = rule.pattern.fullmatch(key)
        if m is None:
            near = _near_miss(rule.pattern, key)
            if near is None:
                unrelated_rules += 1
            else:
                candidates.append(Candidate("rule", rule.index, rule.match, False, near, line=rule.line))
            continue
        rendering = rule.template.trace(m)  # the planner's answer, with the reason when there is none
        rendered = rendering.key
        if skip_winner is not None:
            reason = (f"full match, but skipped: skip patterns are checked before rules "
                      f"(skip pattern {skip_winner} takes the key)")
        elif rule_winner is not None:
            reason = f"also matches fully, but rule {rule_winner.index} comes first"
        elif rendered is None:
            reason = f"full match, but {rendering.reason}"
        else:
            rule_winner, target = rule, rendered
            candidates.append(Candidate("rule", rule.index, rule.match, True, f"takes the key -> {rendered}", rendered,
                                        rule.line))
            continue
        candidates.append(Candidate("rule", rule.index, rule.match, False, reason, rendered, rule.line))

    if skip_winner is not None:
        outcome, rule_index, skip_text, target = "skipped", None, ruleset.skip[skip_winner].match, None
    elif rule_winner is not None:
        outcome, rule_index, skip_text = "mapped", rule_winner.index, None
    else:
        outcome, rule_index, skip_text = "unmatched", None, None

    extra: dict[str, Any] = {}
    if plan is not None:
        extra = _from_plan(key, plan, target)
        if extra.get("mismatch") is not None and extra["mismatch"].action == "skip":
            outcome = "skipped"
        if outcome == "unmatched" and any(m.source == key and m.rule == PASS_THROUGH for m in plan.mapped):
            outcome, target = "passed through", key
        if rule_winner is not None and rule_winner.transform and extra.get("shape") is not None:
            extra["steps"] = _steps(rule_winner, extra["shape"], extra.pop("dtype"))
        extra.pop("dtype", None)
        extra["exit_code"] = int(_is_error(key, outcome, plan, extra)
                                 or not (extra["in_source"] or "non_tensor" in extra))
        if "non_tensor" in extra:
            outcome, rule_index, skip_text, target = "non-tensor", None, None, None
            extra["non_tensor_fate"] = non_tensor_fate
    return Explanation(key, outcome, rule_index, skip_text, target, tuple(candidates), unrelated_rules,
                       unrelated_skips, rules_name=ruleset.name, rules_origin=ruleset.origin, **extra)


def _from_plan(key: str, plan: Plan, target: str | None) -> dict[str, Any]:
    """What the plan knows about ``key``: presence, shapes, mismatch, collision."""
    entry = next((m for m in plan.mapped if m.source == key), None)
    in_source = entry is not None or key in plan.unmatched or any(s.source == key for s in plan.skipped)
    extra: dict[str, Any] = {"in_source": in_source}
    if not in_source:
        value = next((n for n in plan.non_tensor if n.key == key), None)
        if value is not None:  # a step count, DCP's pickled bytes: in the source, but no tensor
            return {**extra, "non_tensor": value.type}
        sources = [m.source for m in plan.mapped] + [s.source for s in plan.skipped] + list(plan.unmatched)
        import difflib  # only for a key not found

        extra["similar"] = tuple(difflib.get_close_matches(key, sources, n=3, cutoff=0.6))
        extra["target_of"] = tuple((m.source, m.rule) for m in plan.mapped if m.target == key)
        return extra
    mismatch = next((m for m in plan.mismatched if m.source == key), None)
    extra["mismatch"] = mismatch
    extra["unmatched_policy"] = plan.unmatched_policy
    if entry is not None:
        extra["shape"], extra["target_shape"], extra["dtype"] = entry.shape, entry.target_shape, entry.dtype
    elif mismatch is not None:
        extra["shape"], extra["target_shape"], extra["dtype"] = mismatch.shape, mismatch.target_shape, mismatch.dtype
    target = entry.target if entry is not None else target
    if target is not None:
        extra["collision"] = next((c for c in plan.collisions if c.target == target and key in c.sources), None)
    extra["kind_mismatch"] = next((k for k in plan.kind_mismatches if k.source == key), None)
    sources, targets = plan.module_kinds
    if entry is not None and plan.target_count is not None and extra["kind_mismatch"] is None and mismatch is None:
        s_mod, t_mod = split_key(key)[0], split_key(entry.target)[0]
        if s_mod in sources and t_mod in targets:
            extra["kinds"] = (sources[s_mod], targets[t_mod])
    return extra


def _steps(rule: Rule, shape: tuple[int, ...], dtype: str) -> tuple[dict[str, Any], ...]:
    """Each transform step of ``rule`` with the shape it gets and gives, from the header alone."""
    spec, steps = TensorSpec(dtype, shape), []
    for step in rule.transform:
        entry: dict[str, Any] = {"step": str(step), "in": list(spec.shape), "out": None}
        try:
            spec = chain_spec([step], spec)
        except TransformChainError as exc:
            steps.append({**entry, "error": str(exc)})
            break
        steps.append({**entry, "out": list(spec.shape)})
    return tuple(steps)


def _is_error(key: str, outcome: str, plan: Plan, extra: dict[str, Any]) -> bool:
    """Whether the plan counts an error for this key (what `mapper plan` would exit 1 on)."""
    mismatch, kind = extra.get("mismatch"), extra.get("kind_mismatch")
    return bool((mismatch is not None and mismatch.action == "error") or extra.get("collision") is not None
                or (kind is not None and kind.action == "error")
                or (outcome == "unmatched" and extra.get("in_source") and plan.unmatched_policy == "error"))


def _near_miss(pattern: re.Pattern, key: str) -> str | None:
    """Why a pattern that does not fully match still looks related, or None when it matches nothing."""
    m = pattern.match(key)
    if m is not None and m.end() > 0:
        return f"matches a prefix only ({m.group()!r}); patterns must match the whole key"
    for m in pattern.finditer(key):
        if m.end() > m.start():
            return (f"matches {m.group()!r} at column {m.start() + 1} only; "
                    "patterns must match the whole key")
    return None


def _label(c: Candidate) -> str:
    return (f"rule {c.index}" if c.kind == "rule" else f"skip {c.index}") + (f" (line {c.line})" if c.line else "")

