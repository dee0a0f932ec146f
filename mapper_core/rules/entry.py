"""The public ``load_rules`` and ``parse_rules``: :mod:`.load`'s, with their arguments checked first
(:mod:`..arguments`), so a wrong kind of argument is named rather than failing deep inside."""
from __future__ import annotations

from functools import wraps
from pathlib import Path
from typing import Any, Mapping

from .. import arguments
from . import load
from .ruleset import RuleSet


@wraps(load.load_rules)
def load_rules(path: str | Path, *, transforms: Mapping[str, Any] | None = None) -> RuleSet:
    if isinstance(path, Mapping):
        raise arguments.refuse("load_rules", "path", path, "a rules file's path",
                               "for rules you hold as text use parse_rules(text, filename)")
    arguments.path(path, "load_rules", "path")
    _transforms(transforms, "load_rules")
    return load.load_rules(path, transforms=transforms)


@wraps(load.parse_rules)
def parse_rules(text: str, filename: str, fmt: str | None = None, *,
                transforms: Mapping[str, Any] | None = None) -> RuleSet:
    if isinstance(text, (bytes, bytearray)):
        raise arguments.refuse("parse_rules", "text", text, "the rules as str", "decode the bytes (e.g. "
                               "data.decode('utf-8')), or give the file's path to load_rules(path)")
    arguments.instance(text, str, "parse_rules", "text", "the rules as str")
    arguments.instance(filename, str, "parse_rules", "filename", "a str naming the rules in messages")
    if fmt is not None:
        arguments.instance(fmt, str, "parse_rules", "fmt", "'yaml', 'json' or None (from the file name)")
    _transforms(transforms, "parse_rules")
    return load.parse_rules(text, filename, fmt, transforms=transforms)


def _transforms(value: Any, function: str) -> None:
    if value is not None:
        arguments.mapping(value, function, "transforms", "None or a mapping of transform name → TransformSpec",
                          "mapper_core.plugins.plugin_transforms() gives the plugins' transforms")
