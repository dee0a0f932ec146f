"""mapper export RULES SRC DST: target-layout weights back into the source layout (safetensors)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

HELP = "map target-layout weights (e.g. a fine-tuned model) back to the source layout with the same rules"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("rules", metavar="RULES", help="rules file (.yaml/.yml/.json) or plugin:name")
    p.add_argument("src", metavar="SRC", help="checkpoint in the TARGET layout (what the rules produce)")
    p.add_argument("dst", metavar="DST", help="safetensors file to write, in the SOURCE layout")
    p.add_argument("--source-specs", metavar="FILE",
                   help="the original source checkpoint or spec file (headers only): plans exactly, "
                        "for rules whose match or transform cannot be read backwards on their own")
    p.add_argument("--format", metavar="NAME", help="format of SRC by name (default: detect)")
    p.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    p.add_argument("--json", action="store_true", help="print the export plan as JSON")


def run(args: argparse.Namespace, ctx) -> int:
    from ..errors import OutputExistsError
    from ..export import apply_export, plan_export, refuse_problems

    dst = Path(args.dst)
    if dst.exists() and dst.resolve() == Path(args.src).resolve():
        raise OutputExistsError(f"{dst}: the destination is the source checkpoint; choose another path")
    if dst.exists() and not args.force:
        raise OutputExistsError(f"{dst}: already exists; pass --force to overwrite it")
    ruleset = ctx.load_rules(args.rules)
    source_specs = None
    if args.source_specs:
        with ctx.open_reader(args.source_specs) as reader:
            source_specs = reader.specs()
    with ctx.open_reader(args.src, args.format) as reader:
        plan = plan_export(ruleset, reader.specs(), source_specs)
        if args.json:
            ctx.print_json(plan.to_dict())
        refuse_problems(plan)
        tensors = apply_export(plan, reader)
        _write(tensors, dst, {"mapper_export_rules": ruleset.origin or ruleset.name, "format": "pt"})
    if not args.json:
        ctx.print(f"exported {len(plan.entries)} tensors to {dst} (rules '{plan.rules_name}', "
                  f"inverted from {plan.method})")
        if plan.left_behind:
            shown = ", ".join(plan.left_behind[:8]) + (" ..." if len(plan.left_behind) > 8 else "")
            ctx.print(f"left behind {len(plan.left_behind)} target keys the rules do not fill from the source: {shown}")
    return 0


def _write(tensors: dict, dst: Path, metadata: dict[str, str]) -> None:
    """Write next to DST, then rename: a crash never leaves a half-written DST."""
    from safetensors.torch import save_file

    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
