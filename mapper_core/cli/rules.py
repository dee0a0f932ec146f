"""mapper rules [--json]: the named rule sets plugins contribute, usable wherever a rules path is."""
from __future__ import annotations

import argparse

from .options import add_json

HELP = "list the named rule sets (plugin:name) that plugins contribute"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_json(p, "the list")


def describe(pm) -> dict:
    """The rule sets as plain data; no rules file is read."""
    from ..plugins import contributions

    rows = []
    for qualified, c in sorted(contributions(pm).rule_sets.items()):
        path = c.value.path
        rows.append({
            "name": qualified,
            "plugin": c.plugin,
            "description": c.value.description,
            "origin": str(path) if path is not None else None,
        })
    return {"rule_sets": rows}


def run(args: argparse.Namespace, ctx) -> int:
    report = describe(ctx.plugin_manager)
    if args.json:
        ctx.print_json(report)
        return 0
    rows = report["rule_sets"]
    if not rows:
        ctx.print("no named rule sets; install a plugin or use --plugin MODULE (see `mapper plugins`)")
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        ctx.print(f"{r['name']:<{width}}  {r['description']}")
        ctx.print(f"{'':<{width}}  from plugin {r['plugin']}; {r['origin'] or 'built by the plugin'}")
    return 0
