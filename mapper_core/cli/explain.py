"""mapper explain SRC KEY --rules R: which rule takes KEY, and why every other candidate lost.

Exits with the code the plan gives for that key: 1 when its fate is an error of the plan (a
shape or kind mismatch under ``error``, a collision, an unmatched key under ``unmatched: error``)
or the key is not in the source.
"""
from __future__ import annotations

import argparse

from .options import add_json, add_source
from .plan import add_plan_inputs, build_plan, warn_wrapper_prefix

HELP = "explain what happens to one source key: the winning rule and why the others lost"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source(p)
    p.add_argument("key", metavar="KEY", help="the source key to explain")
    add_plan_inputs(p)
    add_json(p, "the explanation")


def run(args: argparse.Namespace, ctx) -> int:
    from ..plan.explain import explain

    ruleset, plan = build_plan(args, ctx)
    result = explain(args.key, ruleset, plan)
    if args.json:
        ctx.print_json(result.to_dict())
    else:
        ctx.print(result.render())
    if args.key in plan.unmatched:
        warn_wrapper_prefix(args, ctx, plan.unmatched, ruleset)
    return result.exit_code  # the code the plan gives for this key
