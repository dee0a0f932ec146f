"""``suggest``: pair two models and write the rules file that maps one into the other, checked by
planning it. From headers (and module type names) alone; no torch."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

from ..errors import BadInputError, MapperError
from ..plan.make import make_plan, tied_partners
from ..plan.plan import Plan
from ..rules.load import parse_rules
from ..specs import TensorSpec
from .collapse import Rule, collapse
from .order import advice
from .pairing import Pairing, pair_models
from .patterns import Pattern, left_patterns
from .render import render_json, render_yaml, steps_list
from .weak import ADVICE as WEAK_ADVICE

_ROUNDS = 3  # planning rounds; each turns the keys a rule sent astray into literal rules


@dataclass(frozen=True)
class Suggestion:
    """The pairing, the rules that express it, the rules file, and the plan made from that file."""

    pairing: Pairing
    rules: tuple[Rule, ...]
    skips: tuple[Pattern, ...]
    new: tuple[Pattern, ...]
    text: str
    plan: Plan
    source_name: str
    target_name: str
    json_text: str = ""  # the rules file as JSON (no evidence: JSON has no comments)
    # (target key, the filled key it is one tensor with in the target model): filled through the tie, not new
    tied_filled: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        rule_of = {p.source: i for i, r in enumerate(self.rules) for p in r.pairs}
        p = self.pairing
        return {
            "source": self.source_name,
            "target": self.target_name,
            "pairs": [{"source": x.source, "target": x.target, "transform": steps_list(x.steps),
                       "confidence": x.confidence, "signals": list(x.signals), "rule": rule_of[x.source],
                       "order_only": x.order_only, "weak_names": x.weak_names} for x in p.pairs],
            "links": [{"source": x.source, "target": x.target, "modules": x.modules, "confidence": x.confidence,
                       "signals": list(x.signals), "order_only": x.order_only} for x in p.links],
            "skipped": [{"source": x.key, "reason": x.reason} for x in p.skipped],
            "new": [{"target": x.key, "reason": x.reason} for x in p.new],
            "tied_filled": [{"target": k, "tied_to": partner} for k, partner in self.tied_filled],
            "ambiguous": [{"source": a.source, "candidates": list(a.candidates), "reason": a.reason}
                          for a in p.ambiguous],
            "order_only": [{"source": o.source, "target": o.target, "candidates": list(o.candidates),
                            "reason": o.reason} for o in p.order_only],
            "weak_names": [{"source": w.source, "target": w.target, "candidates": list(w.candidates),
                            "reason": w.reason} for w in p.weak_names],
            "limited": list(p.limited),
            "summary": self.summary(),
            "rules_file": self.text,
        }

    def summary(self) -> dict[str, Any]:
        p = self.pairing
        return {"source_keys": len(p.source_specs), "target_keys": len(p.target_specs), "pairs": len(p.pairs),
                "rules": len(self.rules), "skipped": len(p.skipped), "new": len(p.new),
                "tied_filled": len(self.tied_filled),
                "ambiguous": len(p.ambiguous), "order_only": len(p.order_only), "weak_names": len(p.weak_names),
                "plan_clean": not self.plan.has_errors(strict=True)}


def suggest(source_specs: Mapping[str, TensorSpec], target_specs: Mapping[str, TensorSpec], *,
            source_types: Mapping[str, str] | None = None, target_types: Mapping[str, str] | None = None,
            source_name: str = "source", target_name: str = "target", name: str = "suggested",
            source_aliases: Mapping[str, str] | None = None,
            target_ties: Sequence[Sequence[str]] = ()) -> Suggestion:
    """Pair the models and write the rules. The file is planned against the same pair; a rule
    that sends a key elsewhere than its pair is replaced by literal rules for those keys.
    ``source_aliases``: the source checkpoint's tied keys, alias → key (its reader's ``aliases()``).
    ``target_ties``: names that are one tensor in the target model (``module_ties``, as ``make_plan``
    takes them): a name nothing fills whose partner is filled is filled through the tie, not new."""
    if not name:  # the rules file's own name: the schema wants one
        raise BadInputError("suggest: the rules' name is empty; give one (--name NAME, name= in Python)")
    pairing = pair_models(source_specs, target_specs, source_types, target_types, source_aliases)
    tied = tied_partners([x.key for x in pairing.new], {p.target for p in pairing.pairs}, target_ties)
    if tied:  # neither new nor written as `new:`: the plan fills them through the tie
        through = {k for k, _ in tied}
        pairing = replace(pairing, new=tuple(x for x in pairing.new if x.key not in through))
    wanted = {p.source: (p.target, tuple((name, dict(params)) for name, params in p.steps)) for p in pairing.pairs}
    skips = left_patterns(pairing.skipped, source_specs)
    new = left_patterns(pairing.new, target_specs)
    literal: frozenset[str] = frozenset()
    for _ in range(_ROUNDS):
        rules = collapse(pairing.pairs, list(source_specs), literal)
        text = _text(pairing, rules, skips, new, source_name, target_name, name, tied)
        ruleset = parse_rules(text, f"{name}.yaml")
        plan = make_plan(source_specs, ruleset, target_specs, source_origin=source_name,
                         target_origin=target_name, target_module_types=target_types, target_ties=target_ties)
        astray = {m.source for m in plan.mapped
                  if wanted.get(m.source) != (m.target, tuple((s.name, dict(s.params)) for s in m.transform))}
        astray |= {e.source for e in plan.errors if hasattr(e, "source")}
        astray |= {source for e in plan.errors for source in getattr(e, "sources", ())}
        if not astray:
            json_text = render_json(name, _description(source_name, target_name), rules, skips, new)
            return Suggestion(pairing, tuple(rules), tuple(skips), tuple(new), text, plan, source_name, target_name,
                              json_text, tied)
        literal = literal | astray
    raise MapperError(f"suggest: the rules for {source_name} -> {target_name} still send "
                      f"{', '.join(sorted(astray)[:5])} elsewhere after {_ROUNDS} rounds; please report this pair")


def _text(pairing: Pairing, rules: list[Rule], skips, new, source_name: str, target_name: str, name: str,
          tied: tuple[tuple[str, str], ...] = ()) -> str:
    evidence = []
    for r in rules:
        first = r.pairs[0]
        n = len(r.pairs)
        what = f"{n} pair{'s' if n != 1 else ''}"  # the signals name the containers (containers_named)
        low = min(p.confidence for p in r.pairs)
        signals = list(first.signals)
        by_order = sum(p.order_only for p in r.pairs)
        if by_order and not first.order_only:  # the first pair's evidence would not say it
            basis = next(o.basis for o in pairing.order_only)
            signals.insert(0, f"ORDER ONLY: {by_order} of {n} pairs by {basis}")
        by_weak = sum(p.weak_names for p in r.pairs)
        if by_weak and not first.weak_names:
            signals.insert(0, f"WEAK NAMES: {by_weak} of {n} pairs by names that only look alike")
        evidence.append((r, f"{what}: {'; '.join(signals)}; confidence {low:.2f}"))
    header = [f"Suggested by `mapper suggest` for {source_name} -> {target_name}.",
              f"{len(pairing.pairs)} of {len(pairing.source_specs)} source keys paired by {len(rules)} rules, "
              f"{len(pairing.skipped)} skipped; {len(pairing.new)} of {len(pairing.target_specs)} target keys new"
              + (f", {len(tied)} filled through a tie." if tied else "."),
              *(f"TIED: {k} is one tensor with {partner} in the target model: filled through the tie."
                for k, partner in tied),
              "Read the evidence, then prove the mapping with `mapper verify`."]
    for a in pairing.ambiguous:
        header.append(f"AMBIGUOUS: {a.reason.removeprefix('ambiguous: ')}")
    for o in pairing.order_only:
        header.append(f"ORDER ONLY: {o.reason.removeprefix('order only: ')}")
    if pairing.order_only:
        header.append(f"ORDER ONLY pairs: {advice(pairing.order_only)}.")
    for w in pairing.weak_names:
        header.append(f"WEAK NAMES: {w.reason.removeprefix('weak names: ')}")
    if pairing.weak_names:
        header.append(f"WEAK NAMES pairs: {WEAK_ADVICE}.")
    header.extend(f"LIMITED: {x}" for x in pairing.limited)
    return render_yaml(header, name, _description(source_name, target_name), evidence, skips, new)


def _description(source_name: str, target_name: str) -> str:
    return f"Suggested mapping from {source_name} to {target_name}."
