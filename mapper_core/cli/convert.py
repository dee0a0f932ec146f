"""mapper convert SRC DST [--rules R] [--target T]: write a checkpoint as safetensors, streamed and atomic."""
from __future__ import annotations

import argparse

from ..errors import BadInputError
from ..io.formats.base import non_tensors
from ..io.output_format import OUTPUT_FORMATS
from .options import (add_destination, add_formats, add_json, add_reader, add_rules, add_source, add_strict,
                      add_target, add_unmatched, add_workers, add_write, reader_options, refuse_blank_target,
                      refuse_strict_without_target)
from .plan import (load_target, plan_for_reader, source_reading, stripped_note, warn_other_weights,
                   warn_target_prefix)
from .write import leftover_report, progress, reading, refuse_existing, result_lines, shard_size, write

HELP = "convert a checkpoint to safetensors (with --rules: renamed and filtered by the plan), streamed and atomic"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source(p)
    add_destination(p, "output .safetensors file, *.safetensors.index.json (sharded), or an existing folder "
                       "(model.safetensors inside)")
    add_rules(p, required=False, help="rules file or plugin:name; without it keys keep their names")
    add_target(p)
    add_unmatched(p)
    add_formats(p, target=True)
    add_reader(p)
    add_strict(p, "with --rules and --target: also refuse (exit 1) on uninitialized target keys")
    add_write(p)
    p.add_argument("--output-format", choices=OUTPUT_FORMATS, default=None, metavar="F",
                   help="what to write: safetensors (default) or dcp (a torch.distributed.checkpoint folder at DST)")
    add_workers(p, "write a sharded output's shards on N processes (byte-identical to 1; resumable)")
    add_json(p, "the result")


def run(args: argparse.Namespace, ctx) -> int:
    if args.strict and not args.rules:
        raise BadInputError("--strict only applies with --rules (a plain conversion keeps every key); "
                            "add --rules RULES or drop --strict")
    refuse_blank_target(args)
    refuse_strict_without_target(args)
    if args.unmatched and not args.rules:
        raise BadInputError("--unmatched only applies with --rules (a plain conversion keeps every key); "
                            "add --rules RULES or drop --unmatched")
    if args.output_format == "dcp" and args.max_shard_size:
        raise BadInputError("--max-shard-size only applies to safetensors output; a DCP folder holds one data "
                            "file per writer: drop --max-shard-size or --output-format dcp")
    max_shard_size = shard_size(args)
    refuse_existing(args)  # before the source is read: that may take long
    ruleset = ctx.load_rules(args.rules) if args.rules else None
    options = reader_options(args)
    with progress(ctx, quiet=args.quiet) as shown:
        reading(shown, args.source)
        with ctx.open_reader(args.source, args.format, source=True, **options) as reader:
            left_values = non_tensors(reader)
            stripped = stripped_note(source_reading(reader, args))
            target = load_target(args, ctx, options)
            plan = plan_for_reader(args, reader, ruleset, target, ctx) if ruleset is not None else None
            if plan is None:
                warn_other_weights(ctx, reader, args.source)
            if plan is not None:
                warn_target_prefix(args, ctx, plan)  # before a refusal that the prefix explains
            result, left = write(ctx, args, reader, plan, shown, max_shard_size=max_shard_size,
                           rules_sha256=ruleset.sha256 if ruleset else None, strict=args.strict,
                           target_specs=target[0] if plan is None else None)
    if args.json:
        data = result.to_dict()
        if plan is not None and plan.target_count is not None:
            data["uninitialized"] = list(plan.uninitialized)
            data["expected_uninitialized"] = list(plan.expected_uninitialized)  # declared new: in the rules
            data["tied_filled"] = [{"target": k, "tied_to": p} for k, p in plan.tied_filled]
        data["non_tensor"] = left_values  # not counted in left_behind, which counts tensor keys
        data["earlier_output"] = leftover_report(ctx, left)
        ctx.print_json(data)
    else:
        ctx.print(_summary(result, dcp=args.output_format == "dcp", plan=plan, left=left))
        if stripped:  # the source's keys are not those torch.load shows: say so, as plan's header does
            ctx.print(f"  source keys{stripped}")
        leftover_report(ctx, left)
    return 0


def _unfilled(plan) -> list[str]:
    """What the target keeps of its own: keys nothing fills, said after the write (--strict refuses them)."""
    from ..io.inspection import counted
    from ..plan.text import shown

    lines = []
    if plan is None or plan.target_count is None:
        return lines
    if plan.uninitialized:
        first = ", ".join(shown(k) for k in plan.uninitialized[:3])
        more = f", ... ({len(plan.uninitialized) - 3:,} more: mapper plan lists them)" if len(plan.uninitialized) > 3 else ""
        lines.append(f"  target: {counted(len(plan.uninitialized), 'key')} nothing fills (uninitialized): {first}{more}; "
                     "declare them under new: in the rules, or pass --strict to refuse")
    if plan.expected_uninitialized:
        lines.append(f"  target: {counted(len(plan.expected_uninitialized), 'key')} declared new (new: in the rules)")
    if plan.tied_filled:
        first = ", ".join(f"{shown(k)} = {shown(p)}" for k, p in plan.tied_filled[:3])
        more = f", ... ({len(plan.tied_filled) - 3:,} more: mapper plan lists them)" if len(plan.tied_filled) > 3 else ""
        lines.append(f"  target: {counted(len(plan.tied_filled), 'key')} filled through a tie (the model ties it to a "
                     f"written key), recorded as that key's alias, not stored twice: {first}{more}")
    return lines


def _summary(result, dcp: bool = False, plan=None, left=None) -> str:
    from ..io.inspection import counted, human_bytes

    lines = [f"wrote {result.destination}: {counted(result.tensors, 'tensor')}, {human_bytes(result.tensor_bytes)} "
             f"({result.method})"]
    if result.rules and result.left_behind:
        lines.append(f"  rules '{result.rules}': {counted(result.left_behind, 'source key')} left behind")
    lines += _unfilled(plan)
    if result.aliases:
        where = "both names point at the same bytes" if dcp else "metadata 'mapper.aliases'"
        lines.append(f"  {counted(result.aliases, 'aliased key')} stored once ({where})")
    lines += _non_tensor_lines(result, dcp, plan)
    if result.cloned_bytes:
        lines.append(f"  {human_bytes(result.cloned_bytes)} cloned: the output shares the source's blocks (the "
                     "filesystem copies them only when either file changes)")
    if dcp:  # a DCP folder: one data file and .metadata, not shards and an index
        from pathlib import Path

        lines.append(f"  DCP folder: {', '.join(Path(p).name for p in result.paths)}")
        if result.earlier_removed:
            lines.append(f"  removed {counted(len(result.earlier_removed), 'data file')} of the checkpoint it "
                         f"replaced (no longer named by .metadata): {', '.join(Path(p).name for p in result.earlier_removed)}")
        return "\n".join(lines + result_lines(result, left, sharded=False))
    return "\n".join(lines + result_lines(result, left))


def _non_tensor_lines(result, dcp: bool, plan) -> list[str]:
    """What became of the source's non-tensor items (a step count, optimizer settings)."""
    from ..io.inspection import counted
    from ..plan.text import shown

    def named(keys) -> str:
        more = f" and {len(keys) - 3:,} more (--json lists them)" if len(keys) > 3 else ""
        return ", ".join(shown(k) for k in keys[:3]) + more

    lines = []
    carried, left = result.non_tensors_carried, result.non_tensors_left_behind
    if carried:
        lines.append(f"  {counted(len(carried), 'non-tensor item')} carried over as DCP stored them (bytes, never "
                     f"unpickled): {named(carried)}")
    if left:
        why = ("rules move tensors only; without --rules a DCP source's are carried over" if dcp and plan is not None
               else "only a DCP source's are carried into a DCP folder" if dcp
               else "safetensors holds tensors; metadata 'mapper.extra' holds values JSON can hold, and DCP's pickled "
               "bytes are never unpickled")
        lines.append(f"  {counted(len(left), 'non-tensor item')} not written ({why}): {named(left)}")
    return lines
