"""A suggestion as a rules file: YAML with the evidence as comments, or JSON (which has no comments:
the evidence is in the YAML form and in `mapper suggest --json`)."""
from __future__ import annotations

import json
import re
import textwrap
from typing import Any

from ..plan.text import shown
from .collapse import Rule
from .fit import Steps
from .patterns import Pattern

_PLAIN = re.compile(r"[ -~]*")  # printable ASCII: safe inside single quotes


def quote(text: str) -> str:
    """A YAML scalar for ``text``: single-quoted when printable, else JSON's double quotes."""
    if _PLAIN.fullmatch(text):
        return "'" + text.replace("'", "''") + "'"
    return json.dumps(text)


def comment(text: str, indent: str) -> list[str]:
    """``text`` as YAML comment lines (control characters escaped, wrapped at 100 columns)."""
    return [f"{indent}# {line}" for line in textwrap.wrap(shown(text), 100 - len(indent) - 2,
                                                           break_on_hyphens=False, break_long_words=False)]


def steps_list(steps: Steps) -> list[dict[str, Any]]:
    return [{name: dict(params)} for name, params in steps]


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_yaml(header: list[str], name: str, description: str, rules: list[tuple[Rule, str]],
                skips: list[Pattern], new: list[Pattern]) -> str:
    """The rules file: ``rules`` (each with its evidence), ``skip`` and ``new`` (each with its reason)."""
    lines = [line for h in header for line in comment(h, "")]
    lines += ["version: 1", f"name: {quote(name)}", f"description: {quote(description)}"]
    lines.append("rules:" if rules else "rules: []")
    for rule, evidence in rules:
        lines += comment(evidence, "  ")
        lines.append(f"  - match: {quote(rule.match)}")
        lines.append(f"    target: {quote(rule.target)}")
        if rule.tables:
            lines.append("    tables:")
            for table, entries in rule.tables:
                lines.append(f"      {table}: {_flow(dict(entries))}")
        if rule.steps:
            lines.append("    transform:")
            lines += [f"      - {name}: {_flow(dict(params))}" for name, params in rule.steps]
    for section, patterns in (("skip", skips), ("new", new)):
        if patterns:
            lines.append(f"{section}:")
            for p in patterns:
                lines += comment(f"{len(p.keys)} key{'s' if len(p.keys) != 1 else ''}: {p.reason}", "  ")
                lines.append(f"  - {quote(p.pattern)}")
    lines.append("unmatched: error  # a source key no rule or skip pattern takes fails the plan")
    return "\n".join(lines) + "\n"


def render_json(name: str, description: str, rules: list[Rule], skips: list[Pattern], new: list[Pattern]) -> str:
    """The same rules file as JSON, without the evidence."""
    data: dict[str, Any] = {"version": 1, "name": name, "description": description, "rules": []}
    for rule in rules:
        entry: dict[str, Any] = {"match": rule.match, "target": rule.target}
        if rule.tables:
            entry["tables"] = {table: dict(entries) for table, entries in rule.tables}
        if rule.steps:
            entry["transform"] = steps_list(rule.steps)
        data["rules"].append(entry)
    for section, patterns in (("skip", skips), ("new", new)):
        if patterns:
            data[section] = [p.pattern for p in patterns]
    data["unmatched"] = "error"
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
