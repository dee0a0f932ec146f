"""Stage 2, plan: source specs + a RuleSet (+ target specs) → a :class:`Plan`, from headers
alone; explain one key; render the text report. No torch, no file I/O.

    from mapper_core.plan import make_plan, render_text
    plan = make_plan(source_specs, ruleset, target_specs)
"""
from .explain import Candidate, Explanation, explain
from .make import make_plan
from .plan import Collision, Mapped, Mismatch, Plan, Skipped, UnusedRule
from .report import render_text

__all__ = ["Candidate", "Collision", "Explanation", "Mapped", "Mismatch", "Plan", "Skipped", "UnusedRule",
           "explain", "make_plan", "render_text"]
