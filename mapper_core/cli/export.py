"""mapper export RULES SRC DST: target-layout weights back into the source layout (safetensors)."""
from __future__ import annotations

import argparse
import warnings

from .inspect import add_reader_arguments, reader_options

HELP = "map target-layout weights (e.g. a fine-tuned model) back to the source layout with the same rules"
EXIT_TERMINATED = 143  # 128 + SIGTERM, as `mapper convert` reports it


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("rules", metavar="RULES", help="rules file (.yaml/.yml/.json) or plugin:name")
    p.add_argument("src", metavar="SRC", help="checkpoint in the TARGET layout (what the rules produce)")
    p.add_argument("dst", metavar="DST",
                   help="output in the SOURCE layout: .safetensors file, *.safetensors.index.json (sharded), "
                        "or an existing folder (model.safetensors inside), as for `mapper convert`")
    p.add_argument("--source-specs", metavar="FILE",
                   help="the original source checkpoint or spec file (headers only): plans exactly, "
                        "for rules whose match or transform cannot be read backwards on their own")
    p.add_argument("--format", metavar="NAME", help="format of SRC by name (default: detect)")
    p.add_argument("--force", action="store_true", help="overwrite DST if it exists (never SRC itself)")
    p.add_argument("--json", action="store_true", help="print the export plan as JSON")
    add_reader_arguments(p)


def run(args: argparse.Namespace, ctx) -> int:
    from ..io.atomic import Terminated
    from ..io.convert import convert
    from ..io.export import as_convert_plan, plan_export, refuse_problems

    ruleset = ctx.load_rules(args.rules)
    options = reader_options(args)
    source_specs = None
    if args.source_specs:
        with _open(ctx, args.source_specs, None, options) as reader:
            source_specs = reader.specs()
    try:
        with _open(ctx, args.src, args.format, options) as reader:
            specs = reader.specs()
            plan = plan_export(ruleset, specs, source_specs)
            if args.json:
                ctx.print_json(plan.to_dict())
            refuse_problems(plan)
            # Written by convert's machinery: same destination rules, atomic streamed write,
            # tied weights stored once (metadata 'mapper.aliases'), same 'mapper.*' metadata.
            result = convert(args.src, args.dst, reader=reader, force=args.force,
                             plan=as_convert_plan(plan, specs, args.src, ruleset.origin),
                             rules_sha256=ruleset.sha256)
    except Terminated:
        ctx.error("terminated; nothing was written")
        return EXIT_TERMINATED
    if not args.json:
        ctx.print(f"exported {len(plan.entries)} tensors to {result.destination} (rules '{plan.rules_name}', "
                  f"inverted from {plan.method})")
        if result.aliases:
            ctx.print(f"  {result.aliases} tied keys stored once (metadata 'mapper.aliases')")
        if plan.left_behind:
            shown = ", ".join(plan.left_behind[:8]) + (" ..." if len(plan.left_behind) > 8 else "")
            ctx.print(f"left behind {len(plan.left_behind)} target keys the rules do not fill from the source: {shown}")
    return 0


def _open(ctx, path: str, format_name: str | None, options: dict):
    """Open a checkpoint; the trust-pickle warning the library raises is printed by the CLI."""
    from ..io.formats.torch_format import TrustPickleWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reader = ctx.open_reader(path, format_name, **options)
    for w in caught:
        if issubclass(w.category, TrustPickleWarning):
            ctx.warn(str(w.message))
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return reader
