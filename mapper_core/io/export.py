"""Export: map target-layout weights back to the source layout with the same rules file.

The forward plan sends each source key through a rule (and its transform steps) to a target
key. Export runs it backwards, in two ways:

- with the source specs (a spec file, a checkpoint header, or a model's state dict), the
  forward plan is made again and simply read backwards: exact for any rule;
- without them, each rule is inverted on its own: its ``match`` must be a plain sequence of
  literal text and capture groups, every group must appear in ``target`` (``{N}``,
  ``{name}``, ``{N+K}``, or ``{N|table}`` with a one-to-one table), and every transform step
  must let its input spec be worked out from its output (not ``reshape`` or ``cast``).

Either way every reconstructed source key is planned forwards again and must come back to
the same target with the same shape, so a wrong guess is an error, never a wrong file.
Tensors go through the inverted transform chain, which is bit-exact; a step without an
exact inverse (narrow, inflate with mode repeat, a narrowing cast, scale by a non-power of
two) is reported by rule, line and step, and nothing is exported.

Target keys no rule produces (a fine-tuned model's new layers) follow an ``unmatched`` policy
with convert's three names: ``drop`` leaves them behind (listed), ``keep`` writes them under
their own names, ``error`` refuses. Each such key has a reason (:data:`LEFT_BEHIND_REASONS`): no
rule produces it, the rules declare it new (``new:``), or its rule skipped it on a shape mismatch
(``on_shape_mismatch: skip``, known only from the source specs). The default is ``keep`` when the rules say
``unmatched: keep`` (such keys came over under their own names, so they go back the same way),
else ``drop``: a model with new layers exports as it is.

Tied weights of the source (``source_aliases``: a key that is the same tensor as another in the
original checkpoint, ``lm_head.weight`` as ``model.embed_tokens.weight``) come back when the rules
export one of their names and not the other (the rules skipped the head): the missing name is
restored as the same tensor (``ExportPlan.restored``), written once, as convert writes aliases.
A target key the target checkpoint holds as the same tensor as an exported one (``target_aliases``: a
tied output layer, which convert records as an alias) goes back with it (``ExportPlan.tied``), not left behind.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import PlanError
from .export_backward import Refuse, backward_spec
from .export_checks import refuse_nothing_exported
from .inspection import counted
from ..plan.plan import PASS_THROUGH, UNMATCHED_POLICIES, Mapped, Plan
from ..plan.make import make_plan
from ..plan.tied_check import tied_to_done
from ..rules.ruleset import Rule, RuleSet
from ..specs import TensorSpec, shown_shape
from ..rules.template import Inversion, TemplateNotInvertible
from ..rules.transforms import Step, TransformChainError, inverse_chain

if TYPE_CHECKING:
    import torch

SOURCE_SPECS_HOW = "--source-specs FILE; in Python, source_specs=..."  # how to give the original source's specs


# Why a target key is not exported: the codes of ExportPlan.reasons (and of `mapper export --json`)
NO_RULE, DECLARED_NEW, SHAPE_SKIP = "no_rule", "declared_new", "shape_skip"
LEFT_BEHIND_REASONS = {
    NO_RULE: "no rule produces",
    DECLARED_NEW: "declared new (new: in the rules)",
    SHAPE_SKIP: "skipped on a shape mismatch (on_shape_mismatch: skip)",
}


@dataclass(frozen=True)
class ExportEntry:
    """One target key and the source key it goes back to, with the steps that undo its rule's transform."""

    target: str
    source: str
    rule: int
    source_spec: TensorSpec
    inverse: tuple[Step, ...] = ()


@dataclass(frozen=True)
class ExportProblem:
    """A target key that cannot be exported, and why (naming the rule and step)."""

    target: str
    rule: int | None
    message: str


@dataclass(frozen=True)
class ExportPlan:
    """What export does with every target key: exported, left behind (sorted; ``reasons`` says why
    each one: a code of :data:`LEFT_BEHIND_REASONS`), or a problem."""

    rules_name: str
    entries: tuple[ExportEntry, ...]
    left_behind: tuple[str, ...]
    problems: tuple[ExportProblem, ...]
    method: str  # "source-specs" or "templates"
    reasons: Mapping[str, str] = field(default_factory=dict)  # left-behind key → NO_RULE, DECLARED_NEW, ...
    # (source key, the exported source key it is one tensor with in the source): tied weights restored
    restored: tuple[tuple[str, str], ...] = ()
    # (target key, the exported target key it is one tensor with in the target): not left behind
    tied: tuple[tuple[str, str], ...] = ()

    def reason(self, key: str) -> str:
        """Why ``key`` (one of ``left_behind``) is not exported: a code of LEFT_BEHIND_REASONS."""
        return self.reasons.get(key, NO_RULE)

    def to_dict(self, unmatched: str = "drop") -> dict[str, Any]:
        """The JSON form; the keys no rule produces are listed as ``left_behind``, or as ``kept`` under
        ``unmatched="keep"``, or as ``refused`` under ``unmatched="error"`` (the export then fails);
        ``reasons`` maps each of them to its reason code."""
        left = {"keep": "kept", "error": "refused"}.get(unmatched, "left_behind")
        return {
            "rules": self.rules_name, "method": self.method, "unmatched": unmatched,
            "exported": [{"target": e.target, "source": e.source, "rule": e.rule,
                          "dtype": e.source_spec.dtype, "shape": list(e.source_spec.shape),
                          "inverse": [s.to_dict() for s in e.inverse]} for e in self.entries],
            left: list(self.left_behind),
            "reasons": {k: self.reason(k) for k in self.left_behind},
            "problems": [{"target": p.target, "rule": p.rule, "message": p.message} for p in self.problems],
            "restored_aliases": [{"source": k, "same_as": same} for k, same in self.restored],
            "tied": [{"target": k, "same_as": same} for k, same in self.tied],
            "summary": {"exported": len(self.entries), left: len(self.left_behind),
                        "problems": len(self.problems), "restored_aliases": len(self.restored),
                        "failed": bool(self.problems) or (unmatched == "error" and bool(self.left_behind))},
        }


def plan_export(ruleset: RuleSet, target_specs: Mapping[str, TensorSpec],
                source_specs: Mapping[str, TensorSpec] | None = None,
                source_aliases: Mapping[str, str] | None = None,
                target_aliases: Mapping[str, str] | None = None) -> ExportPlan:
    """Plan the way back from target keys to source keys, from headers alone. ``source_aliases``
    (alias → stored key, a reader's ``aliases()``) are the source's tied keys, used with ``source_specs``;
    ``target_aliases`` the target checkpoint's."""
    if source_specs is not None:
        plan = _from_source_specs(ruleset, target_specs, source_specs, source_aliases or {})
    else:
        plan = _from_templates(ruleset, target_specs)
    tied = tied_to_done(plan.left_behind, [e.target for e in plan.entries], target_aliases or {})
    if not tied:
        return plan
    gone = {k for k, _ in tied}
    return dataclasses.replace(plan, left_behind=tuple(k for k in plan.left_behind if k not in gone),
                               reasons={k: v for k, v in plan.reasons.items() if k not in gone}, tied=tied)


def export_state_dict(ruleset: RuleSet, target_state: Mapping[str, "torch.Tensor"],
                      source_specs: Mapping[str, TensorSpec] | None = None,
                      unmatched: str | None = None,
                      source_aliases: Mapping[str, str] | None = None) -> dict[str, "torch.Tensor"]:
    """Target-layout tensors (e.g. a fine-tuned model's state dict) back under the source keys.

    Target keys no rule produces (new layers) are left out, kept under their own names, or
    refused, as ``unmatched`` says (:func:`unmatched_policy`). A tied key of the source
    (``source_aliases``) the rules do not export comes back as its exported partner's tensor.
    Raises PlanError naming the rule and step when a key cannot be exported exactly.
    """
    from .torch_dtypes import spec_of

    policy = unmatched_policy(ruleset, unmatched)
    specs = {k: spec_of(v, k) for k, v in target_state.items()}
    plan = plan_export(ruleset, specs, source_specs, source_aliases)
    refuse_problems(plan)
    refuse_nothing_exported(plan, specs, "the state dict", source_specs, "source_specs")
    refuse_left_behind(plan, policy)
    out = apply_export(plan, target_state)
    if policy == "keep":
        out.update((k, target_state[k]) for k in plan.left_behind)
    return out


def unmatched_policy(ruleset: RuleSet, unmatched: str | None = None) -> str:
    """What export does with target keys no rule produces: ``unmatched`` if given, else ``keep``
    when the rules say ``unmatched: keep``, else ``drop`` (never the rules' ``error``: that is
    about source keys going forwards, and new layers are what a fine-tuned model has)."""
    if unmatched is None:
        return "keep" if ruleset.unmatched == "keep" else "drop"
    if unmatched not in UNMATCHED_POLICIES:
        raise ValueError(f"unknown unmatched policy {unmatched!r}; use one of {', '.join(UNMATCHED_POLICIES)}")
    return unmatched


def refuse_left_behind(plan: ExportPlan, unmatched: str) -> None:
    """Raise PlanError when target keys no rule produces cannot be handled as ``unmatched`` says:
    any such key under ``error``; under ``keep``, one whose name an exported source key also has."""
    if not plan.left_behind or unmatched == "drop":
        return
    if unmatched == "error":
        codes = {plan.reason(k) for k in plan.left_behind}
        why = LEFT_BEHIND_REASONS[codes.pop()] if len(codes) == 1 else "the export does not produce"
        raise PlanError(
            f"cannot export with rules '{plan.rules_name}': {counted(len(plan.left_behind), 'target key')} {why}"
            f"{' (new layers?)' if why == LEFT_BEHIND_REASONS[NO_RULE] else ''}; nothing was written. Pass "
            "--unmatched drop (Python: unmatched='drop') to leave them behind, --unmatched keep to write them under "
            "their own names, or add rules for them:\n"
            + _listed([k if plan.reason(k) == NO_RULE else f"{k}: {LEFT_BEHIND_REASONS[plan.reason(k)]}"
                       for k in plan.left_behind]), plan)
    exported = {e.source for e in plan.entries} | {k for k, _ in plan.restored}
    clashes = [k for k in plan.left_behind if k in exported]
    if clashes:
        raise PlanError(
            f"cannot export with rules '{plan.rules_name}' keeping the keys no rule produces: {len(clashes)} of "
            "them have the name an exported source key gets; nothing was written. Pass --unmatched drop "
            "(Python: unmatched='drop') to leave them behind, or rename them:\n" + _listed(clashes), plan)


def _listed(lines: tuple[str, ...] | list[str], limit: int = 20) -> str:
    more = f"\n  ... and {len(lines) - limit} more" if len(lines) > limit else ""
    return "\n".join(f"  {line}" for line in lines[:limit]) + more


def apply_export(plan: ExportPlan, target: Any) -> dict[str, "torch.Tensor"]:
    """The source-keyed tensors of an ExportPlan; ``target`` is a mapping or a Reader."""
    from .tensor_ops import apply_chain

    out = {}
    for e in plan.entries:
        tensor = target[e.target] if isinstance(target, Mapping) else target.get_tensor(e.target)
        out[e.source] = apply_chain(e.inverse, tensor) if e.inverse else tensor
    out.update((key, out[same]) for key, same in plan.restored)  # tied: the very same tensor
    return out


def as_convert_plan(plan: ExportPlan, target_specs: Mapping[str, TensorSpec],
                    target_origin: str | None = None, rules_origin: str | None = None,
                    unmatched: str = "drop") -> Plan:
    """The export as a forward :class:`Plan` over the target checkpoint, for :func:`mapper_core.convert.convert`.

    Each target key is "mapped" to its source key with the inverse steps as its transform, so
    export writes through convert's machinery (destination checks, atomic streamed write,
    tied weights stored once, ``mapper.*`` metadata). Keys no rule produces are "unmatched" under
    the ``unmatched`` policy: left behind (``drop``), passed through under their own names
    (``keep``), or refused here (``error``, :func:`refuse_left_behind`).
    """
    refuse_left_behind(plan, unmatched)
    mapped = tuple(
        Mapped(source=e.target, target=e.source, rule=e.rule, dtype=target_specs[e.target].dtype,
               shape=tuple(target_specs[e.target].shape), transform=tuple(e.inverse),
               out_dtype=e.source_spec.dtype if e.inverse else None,
               out_shape=tuple(e.source_spec.shape) if e.inverse else None)
        for e in plan.entries)
    # a restored alias reads its partner's target key the same way: convert stores it once (mapper.aliases)
    by_source = {m.target: m for m in mapped}
    mapped += tuple(by_source[same]._replace(target=key) for key, same in plan.restored)
    kept = unmatched == "keep"
    if kept:
        mapped += tuple(Mapped(source=k, target=k, rule=PASS_THROUGH, dtype=target_specs[k].dtype,
                               shape=tuple(target_specs[k].shape)) for k in plan.left_behind)
    return Plan(rules_name=plan.rules_name, mapped=mapped, skipped=(),
                unmatched=() if kept else tuple(plan.left_behind), uninitialized=(), mismatched=(), collisions=(),
                unused_rules=(), source_count=len(target_specs), target_count=None, source_origin=target_origin,
                rules_origin=rules_origin, unmatched_policy=unmatched)


def refuse_problems(plan: ExportPlan) -> None:
    if plan.problems:
        raise PlanError(f"cannot export {counted(len(plan.problems), 'key')} with rules '{plan.rules_name}':\n"
                        + _listed([f"{p.target}: {p.message}" for p in plan.problems]), plan)


def _where(rule: Rule) -> str:
    return f"rule {rule.index}" + (f" (line {rule.line})" if rule.line else "")


def _invert(rule: Rule, spec: TensorSpec, target: str, entries: list, problems: list, source: str) -> None:
    try:
        undo = inverse_chain(rule.transform, spec) if rule.transform else ()
    except TransformChainError as exc:
        problems.append(ExportProblem(target, rule.index, f"{_where(rule)}: {exc}"))
        return
    entries.append(ExportEntry(target, source, rule.index, spec, undo))


def _from_source_specs(ruleset: RuleSet, target_specs: Mapping[str, TensorSpec],
                       source_specs: Mapping[str, TensorSpec], source_aliases: Mapping[str, str]) -> ExportPlan:
    forward = make_plan(source_specs, ruleset, target_specs)
    entries: list[ExportEntry] = []
    problems: list[ExportProblem] = []
    for m in forward.loadable:
        if m.target not in target_specs:
            continue  # the planned target is not in this checkpoint: nothing to export
        if m.passed_through:  # unmatched: keep sent it over under its own name, unchanged
            entries.append(ExportEntry(m.target, m.source, m.rule, source_specs[m.source]))
            continue
        _invert(ruleset.rules[m.rule], source_specs[m.source], m.target, entries, problems, m.source)
    for mm in forward.mismatched:
        if mm.target in target_specs and mm.action == "error":
            problems.append(ExportProblem(mm.target, mm.rule, (
                f"rule {mm.rule}: the source '{mm.source}' has shape {shown_shape(mm.shape)} which does not "
                f"give {shown_shape(target_specs[mm.target].shape)}" + (f": {mm.reason}" if mm.reason else ""))))
    for c in forward.collisions:
        problems.append(ExportProblem(c.target, c.rules[0], f"several source keys map to it ({', '.join(c.sources)})"))
    skipped = {mm.target for mm in forward.mismatched if mm.action == "skip"}
    planned = _planned(ruleset, target_specs, entries, problems, "source-specs", skipped)
    restored = _restored(source_aliases, source_specs, entries)
    return dataclasses.replace(planned, restored=restored) if restored else planned


def _restored(aliases: Mapping[str, str], source_specs: Mapping[str, TensorSpec],
              entries: list[ExportEntry]) -> tuple[tuple[str, str], ...]:
    """(key, exported key) for each name of a tied tensor of the source (``aliases``: alias → stored
    key) that the export does not produce while another of its names is exported: the first one
    exported, in the order the names come in ``source_specs``."""
    group: dict[str, list[str]] = {}
    stored_keys = set(aliases.values())
    for key in source_specs:  # the stored key and its aliases, in file order
        stored = aliases.get(key, key)
        if (key in aliases or key in stored_keys) and source_specs.get(stored) == source_specs[key]:
            group.setdefault(stored, []).append(key)
    exported = {e.source for e in entries}
    out = []
    for names in group.values():
        same = next((k for k in names if k in exported), None)
        if same is not None:
            out += [(k, same) for k in names if k not in exported]
    return tuple(out)


# ---------------------------------------------------------------------------- template inversion

def _inversion(rule: Rule) -> Inversion | str:
    """The rule's template read backwards, or the sentence saying why it cannot be."""
    try:
        return rule.template.invert(rule.pattern)
    except TemplateNotInvertible as exc:
        return (f"{_where(rule)} cannot be read backwards: {exc}; pass the source checkpoint or its specs "
                f"instead ({SOURCE_SPECS_HOW})")


def _from_templates(ruleset: RuleSet, target_specs: Mapping[str, TensorSpec]) -> ExportPlan:
    inversions = [(r, _inversion(r)) for r in ruleset.rules]
    guesses: dict[str, tuple[str, Rule, TensorSpec]] = {}  # source → (target, rule, source spec)
    problems: list[ExportProblem] = []
    refusals: dict[str, str] = {}
    for target, spec in target_specs.items():
        for rule, inversion in inversions:
            if isinstance(inversion, str):
                if _could_make(rule, target):
                    refusals.setdefault(target, inversion)
                continue
            source = inversion.source_of(target)
            # A non-greedy split may guess wrong: the rule itself must take the guess to this target.
            if source is None or rule.apply(source) != target:
                continue
            try:
                source_spec = backward_spec(rule, spec)
            except Refuse as exc:
                problems.append(ExportProblem(target, rule.index, f"{_where(rule)}: {exc}"))
                break
            guesses[source] = (target, rule, source_spec)
            break
    # Plan the guesses forwards: a guess counts only if the first rule that takes it is the
    # same rule and it lands on the same target with the same spec.
    forward = make_plan({s: g[2] for s, g in guesses.items()}, ruleset, target_specs)
    confirmed = {m.source: m for m in forward.loadable}
    entries: list[ExportEntry] = []
    for source, (target, rule, source_spec) in guesses.items():
        m = confirmed.get(source)
        if m is None or m.target != target or m.rule != rule.index:
            problems.append(ExportProblem(target, rule.index, (
                f"{_where(rule)}: the reconstructed source key '{source}' does not map back to '{target}' "
                f"(another rule or skip pattern takes it, or the split is ambiguous); pass the source checkpoint or its "
                f"specs ({SOURCE_SPECS_HOW})")))
            continue
        _invert(rule, source_spec, target, entries, problems, source)
    done = {e.target for e in entries} | {p.target for p in problems}
    for target, why in refusals.items():
        if target not in done:
            problems.append(ExportProblem(target, None, why))
            done.add(target)
    return _planned(ruleset, target_specs, entries, problems, "templates")


def _planned(ruleset: RuleSet, target_specs: Mapping[str, TensorSpec], entries: list, problems: list,
             method: str, shape_skipped: frozenset[str] | set[str] = frozenset()) -> ExportPlan:
    """The ExportPlan: the target keys neither exported nor a problem are left behind, sorted, each
    with its reason (a skip on shape mismatch says more than a ``new:`` pattern, so it wins)."""
    done = {e.target for e in entries} | {p.target for p in problems}
    left = tuple(sorted(k for k in target_specs if k not in done))
    new = [p.pattern.fullmatch for p in ruleset.new]
    reasons = {k: SHAPE_SKIP if k in shape_skipped else DECLARED_NEW if any(f(k) for f in new) else NO_RULE
               for k in left}
    return ExportPlan(ruleset.name, tuple(entries), left, tuple(problems), method, reasons)


def _could_make(rule: Rule, target: str) -> bool:
    """Whether the target's literal text fits the rule's template (used to blame a refused rule)."""
    literal = [p for p in rule.template.parts if isinstance(p, str)]
    return all(text in target for text in literal) and bool(literal)
