"""Argument checks for the train entry points (apply_to_module, apply_to_state_dict, freeze,
param_groups, ...): a path where a Plan, a RuleSet or a source belongs, or a model where a
module belongs, is named (:class:`~mapper_core.errors.ArgumentTypeError`), not an AttributeError."""
from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from .. import arguments
from ..plan.plan import Plan
from ..rules.ruleset import RuleSet


def check_plan(plan: Any, function: str) -> None:
    arguments.instance(plan, Plan, function, "plan", "a Plan",
                       "make one first: plan_for_module(reader.specs(), load_rules(path), model)")


def check_module(module: Any, function: str, argument: str = "module") -> None:
    arguments.instance(module, nn.Module, function, argument, "a torch.nn.Module")


def check_ruleset(ruleset: Any, function: str) -> None:
    arguments.instance(ruleset, RuleSet, function, "ruleset", "a RuleSet",
                       "load the rules file first: load_rules(path) (mapper_core.rules)")


def check_source(source: Any, function: str) -> None:
    """A source is a mapping of key → tensor, or a Reader (anything with ``get_tensor``)."""
    if isinstance(source, Mapping) or (hasattr(source, "get_tensor") and not isinstance(source, arguments.PathLike)):
        return
    raise arguments.refuse(function, "source", source, "a state dict (key → tensor) or an open Reader",
                           "open the checkpoint first: open_checkpoint(path) (mapper_core.io.formats)")


def check_groups(groups: Any, function: str) -> tuple[str, ...] | None:
    """Group names as a tuple: one name (a str) is one group; None is every group."""
    return arguments.names(groups, function)
