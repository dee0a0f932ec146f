"""mapper export SRC DST --rules R: target-layout weights back into the source layout (safetensors)."""
from __future__ import annotations

import argparse

from .options import (add_destination, add_formats, add_json, add_reader, add_rules, add_source, add_unmatched,
                      add_write, reader_options)
from .write import leftover_report, progress, reading, refuse_existing, result_lines, shard_size, write

HELP = "map target-layout weights (e.g. a fine-tuned model) back to the source layout with the same rules"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source(p, "checkpoint in the TARGET layout (what the rules produce)")
    add_destination(p, "output in the SOURCE layout: .safetensors file, *.safetensors.index.json (sharded), "
                       "or an existing folder (model.safetensors inside), as for `mapper convert`")
    add_rules(p, required=True)
    p.add_argument("--source-specs", metavar="FILE",
                   help="the original source checkpoint or spec file (headers only): plans exactly, "
                        "for rules whose match or transform cannot be read backwards on their own")
    add_unmatched(p, "target keys no rule produces (a fine-tuned model's new layers)",
                  "default: keep when the rules file says 'unmatched: keep', else drop")
    add_formats(p)
    add_reader(p)
    add_write(p)
    add_json(p, "the export plan and what was written")


def run(args: argparse.Namespace, ctx) -> int:
    from ..io.export import as_convert_plan, plan_export, refuse_left_behind, refuse_problems, unmatched_policy
    from ..io.export_checks import refuse_nothing_exported

    max_shard_size = shard_size(args)
    refuse_existing(args)  # before the source is read: that may take long
    ruleset = ctx.load_rules(args.rules)
    policy = unmatched_policy(ruleset, args.unmatched)
    options = reader_options(args)
    source_specs = source_aliases = None
    if args.source_specs:
        specs_options = {k: v for k, v in options.items() if k not in ("unwrap", "strip_prefix")}  # SRC's alone
        with ctx.open_reader(args.source_specs, None, **specs_options) as reader:
            source_specs = reader.specs()
            source_aliases = reader.aliases() if hasattr(reader, "aliases") else {}  # tied keys come back tied
    with progress(ctx, quiet=args.quiet) as shown:
        reading(shown, args.source)
        with ctx.open_reader(args.source, args.format, source=True, **options) as reader:
            specs = reader.specs()
            plan = plan_export(ruleset, specs, source_specs, source_aliases,
                               reader.aliases() if hasattr(reader, "aliases") else {})  # its tied keys: not left behind
            if args.json and (plan.problems or (plan.left_behind and policy == "error")):
                ctx.print_json(plan.to_dict(policy))  # the refusal below names them too; JSON readers get the list
            refuse_problems(plan)
            refuse_nothing_exported(plan, specs, args.source, source_specs, args.source_specs)
            refuse_left_behind(plan, policy)
            # Written by convert's machinery: same destination rules, atomic streamed write,
            # tied weights stored once (metadata 'mapper.aliases'), same 'mapper.*' metadata.
            result, left = write(ctx, args, reader, as_convert_plan(plan, specs, args.source, ruleset.origin, policy),
                           shown, max_shard_size=max_shard_size, rules_sha256=ruleset.sha256)
    if args.json:
        ctx.print_json({**plan.to_dict(policy), "written": {**result.to_dict(),
                                                            "earlier_output": leftover_report(ctx, left)}})
        return 0
    from ..io.inspection import counted
    from ..plan.text import shown

    ctx.print(f"exported {counted(len(plan.entries), 'tensor')} to {result.destination} (rules '{plan.rules_name}', "
              f"inverted from {plan.method})")
    if plan.restored:
        pairs = ", ".join(f"{shown(k)} = {shown(same)}" for k, same in plan.restored[:8])
        more = " ..." if len(plan.restored) > 8 else ""
        ctx.print(f"  restored {counted(len(plan.restored), 'tied key')} the rules do not export, as --source-specs "
                  f"ties them to exported keys: {pairs}{more}")
    if plan.tied:
        pairs = ", ".join(f"{shown(k)} = {shown(same)}" for k, same in plan.tied[:8])
        more = " ..." if len(plan.tied) > 8 else ""
        ctx.print(f"  {counted(len(plan.tied), 'tied target key')} not left behind, as {args.source} holds it as one "
                  f"tensor with an exported key, which goes back: {pairs}{more}")
    if result.aliases:
        ctx.print(f"  {counted(result.aliases, 'tied key')} stored once (metadata 'mapper.aliases')")
    for line in result_lines(result, left):
        ctx.print(line)
    for line in left_behind_lines(plan, policy):
        ctx.print(line)
    leftover_report(ctx, left)
    return 0


def left_behind_lines(plan, policy: str, shown: int = 8) -> list[str]:
    """The target keys export did not map back, grouped by reason (no rule, declared new, skipped on a
    shape mismatch) with counts: one line when no rule produces any of them, else a line per reason."""
    from ..io.export import LEFT_BEHIND_REASONS, NO_RULE
    from ..io.inspection import counted

    if not plan.left_behind:
        return []
    groups: dict[str, list[str]] = {}
    for key in plan.left_behind:  # sorted; the groups keep that order within themselves
        groups.setdefault(plan.reason(key), []).append(key)

    def names(keys: list[str]) -> str:
        return ", ".join(keys[:shown]) + (" ..." if len(keys) > shown else "")

    kept = policy == "keep"
    verb, how = ("kept", ", under their own names") if kept else ("left behind", " (--unmatched keep writes them)")
    total = counted(len(plan.left_behind), "target key")
    if list(groups) == [NO_RULE]:  # the usual case keeps its one line
        return [f"{verb} {total} {LEFT_BEHIND_REASONS[NO_RULE]}{how}: {names(groups[NO_RULE])}"]
    order = [code for code in LEFT_BEHIND_REASONS if code in groups]
    return [f"{verb} {total}{how}:"] + [
        f"  {counted(len(groups[code]), 'key')} {LEFT_BEHIND_REASONS[code]}: {names(groups[code])}" for code in order]
