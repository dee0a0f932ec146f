"""mapper plugins [--json]: every plugin, how it was loaded, what it contributes; load failures too."""
from __future__ import annotations

import argparse

from ..errors import BadInputError
from .options import add_json

HELP = "list plugins, how each was loaded and what it contributes (exit 2 if any failed to load or a hook failed)"

LABELS = {"rule_sets": "rule sets", "models": "models", "formats": "formats", "transforms": "transforms"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_json(p, "the list")


def describe(pm) -> dict:
    """The report as plain data; the text and JSON forms render this same value."""
    from ..plugins import PluginInfo, contributions

    table = contributions(pm).by_plugin()
    plugins = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # a blocked name
            continue
        info = pm.mapper_plugin_info.get(name) or PluginInfo(name, getattr(plugin, "__name__", repr(plugin)), "registered")
        empty = {kind: [] for kind in LABELS}
        plugins.append({
            "name": name,
            "module": info.module,
            "source": info.source,
            "distribution": info.distribution,
            "version": info.version,
            "hooks": sorted(hc.name for hc in pm.get_hookcallers(plugin) or ()),
            "contributes": table.get(name, empty),
        })
    failures = [
        {"name": f.name, "source": f.source, "module": f.module, "error": f.error, "traceback": f.traceback}
        for f in pm.mapper_load_errors if f.hook is None
    ]
    hook_failures = [
        {"name": f.name, "source": f.source, "module": f.module, "hook": f.hook, "error": f.error,
         "traceback": f.traceback}
        for f in pm.mapper_load_errors if f.hook is not None
    ]
    return {"plugins": plugins, "failures": failures, "hook_failures": hook_failures}


def run(args: argparse.Namespace, ctx) -> int:
    report = describe(ctx.plugin_manager)
    if args.json:
        ctx.print_json(report)
    else:
        for p in report["plugins"]:
            dist = f" [{p['distribution']} {p['version']}]" if p["distribution"] else ""
            ctx.print(f"{p['name']}  ({p['source']}; module {p['module']}){dist}")
            lines = [f"  {LABELS[k]}: {', '.join(v)}" for k, v in p["contributes"].items() if v]
            for line in lines or ["  (contributes nothing)"]:
                ctx.print(line)
        if report["failures"]:
            ctx.print("failed to load (left out entirely):")
            for f in report["failures"]:
                ctx.print(f"  {f['name']}  ({f['source']}): {f['error']}")
        if report["hook_failures"]:
            ctx.print("hook failed (the plugin is loaded; what is named here was left out):")
            for f in report["hook_failures"]:
                ctx.print(f"  {f['name']}  ({f['hook']}): {f['error']}")
    return BadInputError.exit_code if report["failures"] or report["hook_failures"] else 0
