"""Hooks of the demo plugin: contributes the rule set `rename` (addressed as `demo:rename`)."""
from __future__ import annotations

from importlib.resources import files

from mapper_core.hookspecs import hookimpl
from mapper_core.registry import RuleSetSource


@hookimpl
def mapper_rule_sets() -> list[RuleSetSource]:
    return [
        RuleSetSource(
            name="rename",
            description="old.N.* → new.layers.N.*; the head is left behind",
            path=files(__package__) / "rules" / "rename.yaml",
        )
    ]
