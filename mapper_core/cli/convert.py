"""mapper convert SRC DST [--rules R]: write a checkpoint as safetensors, streamed and atomic."""
from __future__ import annotations

import argparse

from ..errors import BadInputError
from .options import (add_destination, add_formats, add_json, add_reader, add_rules, add_source, add_strict,
                      add_write, reader_options)
from .write import result_lines, shard_size, write

HELP = "convert a checkpoint to safetensors (with --rules: renamed and filtered by the plan), streamed and atomic"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source(p)
    add_destination(p, "output .safetensors file, *.safetensors.index.json (sharded), or an existing folder "
                       "(model.safetensors inside)")
    add_rules(p, required=False, help="rules file or plugin:name; without it keys keep their names")
    add_formats(p)
    add_reader(p)
    add_strict(p, "with --rules: also refuse (exit 1) on unmatched keys")
    add_write(p)
    add_json(p, "the result")


def run(args: argparse.Namespace, ctx) -> int:
    if args.strict and not args.rules:
        raise BadInputError("--strict only applies with --rules (a plain conversion keeps every key); "
                            "add --rules RULES or drop --strict")
    max_shard_size = shard_size(args)
    ruleset = ctx.load_rules(args.rules) if args.rules else None
    with ctx.open_reader(args.source, args.format, **reader_options(args)) as reader:
        plan = None
        if ruleset is not None:
            from ..plan.make import make_plan

            plan = make_plan(reader.specs(), ruleset, source_origin=args.source)
        result = write(ctx, args, reader, plan, max_shard_size=max_shard_size,
                       rules_sha256=ruleset.sha256 if ruleset else None, strict=args.strict)
    if args.json:
        ctx.print_json(result.to_dict())
    else:
        ctx.print(_summary(result))
    return 0


def _summary(result) -> str:
    from ..io.inspection import human_bytes

    lines = [f"wrote {result.destination}: {result.tensors} tensors, {human_bytes(result.tensor_bytes)} "
             f"({result.method})"]
    if result.rules:
        lines.append(f"  rules '{result.rules}': {result.left_behind} source keys left behind")
    if result.aliases:
        lines.append(f"  {result.aliases} aliased keys stored once (metadata 'mapper.aliases')")
    return "\n".join(lines + result_lines(result))
