"""The public ``make_plan``: :mod:`.make`'s, with its arguments checked first (:mod:`..arguments`),
so a path where a RuleSet belongs, or a model where specs belong, is named rather than failing deep
inside."""
from __future__ import annotations

from functools import wraps
from typing import Any

from .. import arguments
from ..rules.ruleset import RuleSet
from . import make
from .plan import Plan

SPECS = "a mapping of key → TensorSpec"
CHECKPOINT_HINT = "for a checkpoint file use open_checkpoint(path).specs() (mapper_core.io.formats)"
MODULE_HINT = "for a model use module_specs(model) (mapper_core.train.apply), or plan_for_module(specs, rules, model)"


@wraps(make.make_plan)
def make_plan(source_specs: Any, ruleset: Any, target_specs: Any = None, **options: Any) -> Plan:
    _specs(source_specs, "source_specs")
    arguments.instance(ruleset, RuleSet, "make_plan", "ruleset", "a RuleSet",
                       "load the rules file first: load_rules(path) (mapper_core.rules)")
    if target_specs is not None:
        _specs(target_specs, "target_specs")
    return make.make_plan(source_specs, ruleset, target_specs, **options)


def _specs(value: Any, argument: str) -> None:
    if isinstance(value, arguments.PathLike):
        raise arguments.refuse("make_plan", argument, value, SPECS, CHECKPOINT_HINT)
    hint = MODULE_HINT if hasattr(value, "state_dict") else CHECKPOINT_HINT
    arguments.mapping(value, "make_plan", argument, SPECS, hint)
