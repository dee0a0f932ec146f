"""mapper explain SRC KEY --rules R: which rule takes KEY, and why every other candidate lost.

Exits with the code the plan gives for that key: 1 when its fate is an error of the plan (a
shape or kind mismatch under ``error``, a collision, an unmatched key under ``unmatched: error``)
or the key is not in the source. A non-tensor value of the source (a step count) is said to be one,
with what convert does with it (exit 0).
"""
from __future__ import annotations

import argparse

from .options import add_json, add_source
from .plan import add_plan_inputs, build_plan, warn_wrapper_prefix

# what convert does with a non-tensor value of the source (formats.md, "Non-tensor values")
DCP_FATE = ("to a DCP folder without --rules (--output-format dcp) copies it byte for byte (DCP's pickled bytes, "
            "never unpickled); any other conversion (with --rules, or to safetensors) leaves it behind")
OTHER_FATE = ("leaves it behind; to safetensors, a value JSON can hold is recorded in the output's metadata "
              "'mapper.extra'")
HELP = "explain what happens to one source key: the winning rule and why the others lost"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source(p)
    p.add_argument("key", metavar="KEY", help="the source key to explain")
    add_plan_inputs(p)
    add_json(p, "the explanation")


def run(args: argparse.Namespace, ctx) -> int:
    from ..plan.explain import explain

    ruleset, plan = build_plan(args, ctx)
    dcp = any(n.key == args.key for n in plan.non_tensor) and ctx.format_for(args.source, args.format).name == "dcp"
    result = explain(args.key, ruleset, plan, DCP_FATE if dcp else OTHER_FATE)
    if args.json:
        ctx.print_json(result.to_dict())
    else:
        ctx.print(result.render())
    if args.key in plan.unmatched:
        warn_wrapper_prefix(args, ctx, plan.unmatched, ruleset)
    return result.exit_code  # the code the plan gives for this key
