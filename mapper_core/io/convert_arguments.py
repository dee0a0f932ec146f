"""convert()'s arguments checked before anything is opened (:mod:`..arguments`): a rules path passed
as ``plan``, a path as ``reader``, an empty ``dst`` (which would mean the current folder) are named."""
from __future__ import annotations

from typing import Any

from .. import arguments
from ..plan.plan import Plan
from ..rules.ruleset import RuleSet


def check_convert_arguments(src: Any, dst: Any, plan: Any, rules: Any, reader: Any, target_specs: Any) -> None:
    """ArgumentTypeError for an argument of the wrong kind, naming it and what to pass instead."""
    arguments.path(src, "convert", "src")
    arguments.path(dst, "convert", "dst")
    if plan is not None:
        arguments.instance(plan, Plan, "convert", "plan", "a Plan (make_plan(...)) or None",
                           "a rules file goes in rules=load_rules(path)")
    if rules is not None:
        arguments.instance(rules, RuleSet, "convert", "rules", "a RuleSet or None", "load it first: load_rules(path)")
    if reader is not None and (isinstance(reader, arguments.PathLike) or not hasattr(reader, "specs")):
        raise arguments.refuse("convert", "reader", reader, "an open Reader or None (then src is opened)",
                               "open_checkpoint(path) gives one; or leave reader=None")
    if target_specs is not None:
        arguments.mapping(target_specs, "convert", "target_specs", "a mapping of key → TensorSpec or None",
                          "module_specs(model) or open_checkpoint(path).specs() give one")
