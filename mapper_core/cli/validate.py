"""mapper validate RULES: check a rules file against the schema and the semantic checks."""
from __future__ import annotations

import argparse

from ..errors import RulesError
from .options import RULES_HELP, add_json

HELP = "check a rules file (or plugin:name rule set); lists every problem with its line"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("rules", metavar="RULES", help=RULES_HELP)  # the one input, so positional
    add_json(p, "the result")


def run(args: argparse.Namespace, ctx) -> int:
    try:
        rs = ctx.load_rules(args.rules)
    except RulesError as exc:
        if not args.json:
            raise
        ctx.print_json({"valid": False, "rules": args.rules, "problems": [
            {"file": p.file, "line": p.line, "path": p.path, "message": p.message} for p in exc.problems
        ]})
        return exc.exit_code
    counts = {
        "rules": len(rs.rules), "skip": len(rs.skip),
        "freeze_groups": len(rs.freeze), "param_groups": len(rs.param_groups),
    }
    warnings = [{"file": w.file, "line": w.line, "path": w.path, "message": w.message} for w in rs.warnings]
    if args.json:
        ctx.print_json({"valid": True, "rules": args.rules, "name": rs.name, "counts": counts, "problems": [],
                        "warnings": warnings})
    else:
        for w in rs.warnings:
            ctx.warn(str(w))
        ctx.print(
            f"{rs.origin or args.rules}: valid rules '{rs.name}' (version {rs.version}): " + ", ".join(
                f"{counts[key]:,} {noun}{'' if counts[key] == 1 else 's'}" for key, noun in (
                    ("rules", "rule"), ("skip", "skip pattern"), ("freeze_groups", "freeze group"),
                    ("param_groups", "param group")))
        )
    return 0
