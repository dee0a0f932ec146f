"""Stage 2, plan: source specs + a RuleSet (+ target specs) → a :class:`Plan`, from headers
alone; explain one key; render the text report. No torch, no file I/O.

    from mapper_core.plan import make_plan, render_text
    plan = make_plan(source_specs, ruleset, target_specs)
"""
from .explain import Candidate, Explanation, explain
from .entry import make_plan
from .plan import (PASS_THROUGH, Collision, KindMismatch, Mapped, Mismatch, NonTensor, Plan, Skipped,
                   UnmatchedKey, UnusedRule)
from .report import error_lines, render_text
from .text import shown

__all__ = ["PASS_THROUGH", "Candidate", "Collision", "Explanation", "KindMismatch", "Mapped", "Mismatch",
           "NonTensor", "Plan", "Skipped", "UnmatchedKey", "UnusedRule", "error_lines", "explain", "make_plan",
           "render_text", "shown"]
