"""mapper plan SRC --rules R [--target T]: what would happen to every key, from headers alone."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import BadInputError
from .options import (add_formats, add_json, add_reader, add_rules, add_source, add_strict, add_target, add_workers,
                      add_unmatched, reader_options, refuse_blank_target, refuse_strict_without_target,
                      target_options)

LINES_PER_WRITE = 100  # of the text report; each of its long lists is one line
HELP = "plan a mapping from checkpoint headers: mapped, skipped, unmatched, uninitialized, conflicts"


def add_plan_inputs(p: argparse.ArgumentParser) -> None:
    """What `plan` and `explain` read, after SRC (and explain's KEY): the rules and the target."""
    add_rules(p, required=True)
    add_target(p)
    add_unmatched(p)
    add_formats(p, target=True)
    add_reader(p)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source(p)
    add_plan_inputs(p)
    add_strict(p, "with --target: also fail (exit 1) on uninitialized target keys the rules do not declare new:")
    p.add_argument("--cost", action="store_true",
                   help="also what convert would cost, from headers: bytes read and written, shards per worker, "
                        "peak memory per worker, the largest tensor")
    add_workers(p, "with --cost: workers to assign shards to")
    p.add_argument("--max-shard-size", metavar="SIZE", help="with --cost: the shard size convert would use")
    add_json(p, "the plan")


def parse_model_args(items: list[str]) -> dict:
    """``["embedding_dim=1024", "name=x"]`` → ``{"embedding_dim": 1024, "name": "x"}`` (JSON values, else text)."""
    kwargs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise BadInputError(f"--model-arg {item!r}: expected KEY=VALUE with KEY a Python identifier, "
                                "e.g. --model-arg embedding_dim=1024")
        try:
            kwargs[key] = json.loads(value)
        except ValueError:
            kwargs[key] = value
    return kwargs


def load_target(args: argparse.Namespace, ctx, options: dict):
    """``--target``'s specs and, for a ``model:NAME``, its module types: (None, None) without one.
    ``options`` are SRC's reader options; the target takes its own unwrap and prefix options."""
    is_model = bool(args.target) and args.target.startswith("model:") and not Path(args.target).exists()
    if args.model_arg and not is_model:
        raise BadInputError("--model-arg only applies to a --target model:NAME; drop it or name a model target")
    for flag in ("target_unwrap", "target_strip_prefix"):
        if getattr(args, flag, None) is not None and (not args.target or is_model):
            name = "--" + flag.replace("_", "-")
            raise BadInputError(f"{name} only applies to a --target checkpoint file (a torch one); "
                                + (f"a model target's keys are its own: drop {name}" if is_model
                                   else f"add --target T or drop {name}"))
    if is_model:
        return ctx.model_target(args.target[len("model:"):], parse_model_args(args.model_arg))
    if args.target:
        with ctx.open_reader(
                args.target, args.target_format, target=True, **target_options(args, options)) as reader:
            return reader.specs(), None
    return None, None


def warn_other_weights(ctx, reader, source: str) -> None:
    """Say what the unwrap rule's choice left beside the state dict that may be weights too."""
    others = getattr(reader, "other_weights", None)
    if not others:
        return
    shown = ", ".join(f"'{k}' ({n} tensor{'s' if n != 1 else ''})" for k, n in others.items())
    one = len(others) == 1
    ctx.warn(f"{source}: took the state dict at '{reader.unwrap_path}'; beside it, {shown} may be weights too "
             f"(an EMA copy?) and {'is' if one else 'are'} left behind: --unwrap {next(iter(others))} takes "
             f"{'it' if one else 'one'} instead")


def plan_for_reader(args: argparse.Namespace, reader, ruleset, target, ctx=None):
    """The plan for an open source ``reader``, with every check ``target`` (specs, module types) allows;
    with ``ctx``, a warning for each pair of tied target weights filled from two different sources."""
    from ..io.formats.base import non_tensors
    from ..plan.make import make_plan

    target_specs, module_types = target
    plan = make_plan(reader.specs(), ruleset, target_specs, source_origin=args.source, target_origin=args.target,
                     unmatched=args.unmatched, non_tensor=non_tensors(reader), target_module_types=module_types,
                     allow_expansion=getattr(args, "allow_expansion", False),
                     target_ties=ctx.tied_targets if ctx is not None else ())
    if ctx is not None:
        warn_other_weights(ctx, reader, args.source)
    if ctx is not None and ctx.tied_targets:
        from ..plan.tied_check import tied_conflicts

        aliases = reader.aliases() if hasattr(reader, "aliases") else {}
        for message in tied_conflicts(plan, ctx.tied_targets, aliases, ctx.tied_model):
            ctx.warn(message)
    return plan


def source_reading(reader, args: argparse.Namespace) -> dict:
    """How a torch source's keys were found: where its state dict was (``unwrap_path``), the prefix
    stripped (``stripped_prefix``) and whether the reader chose it (``automatic``); {} for other formats."""
    if getattr(reader, "unwrap_path", None) is None:
        return {}
    return {"unwrap_path": reader.unwrap_path, "stripped_prefix": reader.stripped_prefix or "",
            "automatic": getattr(args, "strip_prefix", None) is None}


def stripped_note(reading: dict) -> str:
    """What the header says of a prefix the reader stripped by itself (the user did not ask)."""
    prefix = reading.get("stripped_prefix")
    if not prefix or not reading.get("automatic"):
        return ""
    return f" (the '{prefix}' prefix of DistributedDataParallel stripped; --strip-prefix '' keeps it)"


def build_plan(args: argparse.Namespace, ctx, cost: bool = False, refuse_unwritable: bool = False):
    """Rules + source (+ target) specs → (RuleSet, Plan), and with ``cost`` the conversion's Cost.
    Reads headers only. ``refuse_unwritable``: refuse a plan that writes a key whose bytes the reader
    refuses (a meta tensor, a dtype safetensors cannot store), as convert would."""
    refuse_blank_target(args)
    ruleset = ctx.load_rules(args.rules)
    for warning in ruleset.warnings:  # the rules are valid; what looks like a mistake (validate says it too)
        ctx.warn(str(warning))
    options = reader_options(args)
    with ctx.open_reader(args.source, args.format, source=True, **options) as reader:
        ctx.source_reading = source_reading(reader, args)
        target = load_target(args, ctx, options)
        plan = plan_for_reader(args, reader, ruleset, target, ctx)
        if refuse_unwritable and (getattr(reader, "meta_keys", None) or getattr(reader, "unstorable_keys", None)):
            from ..io.formats.torch_checks import refuse_unwritable as refuse

            refuse(reader, plan)
        if cost:
            from ..io.cost import conversion_cost
            from ..io.formats.shards import parse_size

            size = parse_size(args.max_shard_size) if args.max_shard_size else None
            return ruleset, plan, conversion_cost(reader, plan, args.workers, size)
    return ruleset, plan


def run(args: argparse.Namespace, ctx) -> int:
    from ..plan.report import report_lines

    if (args.workers != 1 or args.max_shard_size) and not args.cost:
        raise BadInputError("--workers and --max-shard-size only apply with --cost; add --cost or drop them")
    refuse_strict_without_target(args)
    built = build_plan(args, ctx, cost=args.cost, refuse_unwritable=True)
    ruleset, plan = built[0], built[1]
    if args.json:
        def edit(data: dict) -> None:
            if ctx.source_reading:  # a torch source: where its keys came from, as inspect --json says
                data["unwrap_path"] = ctx.source_reading["unwrap_path"]
                data["stripped_prefix"] = ctx.source_reading["stripped_prefix"]
            data["summary"]["strict"] = args.strict
            data["summary"]["failed"] = plan.has_errors(strict=args.strict)
            if args.cost:
                data["cost"] = built[2].to_dict()

        if ctx.json_indent is None:  # the usual, compact form: the mapped entries go straight to text
            from ..plan.plan_json import write_plan_json

            write_plan_json(plan, ctx.out.write, edit)
            ctx.print()
        else:
            data = plan.to_dict()
            edit(data)
            ctx.print_json(data)
    else:
        lines = report_lines(plan, ruleset, strict=args.strict)  # ctx.print(render_text(...)), a part at a time
        note = stripped_note(ctx.source_reading)
        if note:  # the header's "  source: FILE: N keys" line
            i = next(i for i, line in enumerate(lines) if line.startswith("  source: "))
            lines[i] += note
        for start in range(0, len(lines), LINES_PER_WRITE):
            ctx.out.write("\n".join(lines[start:start + LINES_PER_WRITE]) + "\n")
        if args.cost:
            from ..io.cost import render_cost

            ctx.print(render_cost(built[2]))
    warn_wrapper_prefix(args, ctx, plan.unmatched, ruleset)
    warn_target_prefix(args, ctx, plan)
    if plan.target_count is not None and (ruleset.freeze or ruleset.param_groups):
        from ..plan.group_check import idle_group_patterns, plan_target_keys

        for message in idle_group_patterns(ruleset, plan_target_keys(plan)):
            ctx.warn(message)
    if plan.has_errors(strict=args.strict) and not plan.errors:
        from ..io.inspection import counted

        ctx.error(f"--strict: {counted(len(plan.uninitialized), 'uninitialized target key')}; add rules that fill them, "
                  "declare them as new layers (new: in the rules), or drop --strict")
    return 1 if plan.has_errors(strict=args.strict) else 0


def warn_wrapper_prefix(args: argparse.Namespace, ctx, unmatched, ruleset) -> None:
    """When every unmatched key carries one prefix the rules would take them without, say --strip-prefix;
    when the rules expect the prefix the reader stripped by itself, say that."""
    if not unmatched or getattr(args, "strip_prefix", None) is not None:
        return
    from ..plan.prefix_hint import restored_prefix_hint, strip_prefix_hint

    stripped = ctx.source_reading.get("stripped_prefix", "")
    if restored_prefix_hint(unmatched, ruleset, stripped):
        ctx.warn(f"{args.source}: the reader stripped the '{stripped}' prefix of DistributedDataParallel from every "
                 f"key ('{stripped}{unmatched[0]}' is planned as '{unmatched[0]}'), and the rules' patterns begin with "
                 f"it; write the patterns without '{stripped.replace('.', chr(92) + '.')}', or pass --strip-prefix '' "
                 "to plan the keys as stored")
        return

    prefix = strip_prefix_hint(unmatched, ruleset)
    if not prefix:
        return
    fix = f"add --strip-prefix {prefix}"
    if "strip_prefix" not in ctx.format_for(args.source, args.format).options:  # keys are read as stored
        fix = f"begin the rules' patterns with '{prefix.replace('.', chr(92) + '.')}'"
    ctx.warn(f"every unmatched key starts with '{prefix}' and the rules take them without it (a wrapper's "
             f"name: Lightning's 'model.', DDP's 'module.'); {fix}")


def warn_target_prefix(args: argparse.Namespace, ctx, plan) -> None:
    """When every target key nothing fills carries a prefix the planned targets lack (Lightning's
    ``model.``), say --target-strip-prefix."""
    if plan.target_count is None or getattr(args, "target_strip_prefix", None) is not None:
        return
    from ..plan.prefix_hint import target_prefix_hint

    missing = [m.target for m in plan.mismatched if m.target_shape is None]
    prefix = target_prefix_hint(missing, plan.uninitialized)
    if not prefix:
        return
    fix = f"add --target-strip-prefix {prefix}"
    if not args.target.startswith("model:") and "strip_prefix" not in ctx.format_for(args.target, args.target_format).options:
        fix = f"begin the rules' templates with '{prefix}'"
    ctx.warn(f"{args.target}: every target key nothing fills starts with '{prefix}', and the plan's targets are "
             f"found under it ('{missing[0]}' is '{prefix}{missing[0]}' there); {fix}")
