"""Stage 1, rules: read a YAML/JSON rules file with positions, check it against the schema
and the semantic checks, and build the :class:`RuleSet` value. No torch, no I/O beyond the
rules file itself.

    from mapper_core.rules import load_rules
    ruleset = load_rules("to-fcn.yaml")
"""
from .entry import load_rules, parse_rules
from .load import FORMATS, SUPPORTED_VERSION
from .ruleset import FreezeGroup, ParamGroup, Rule, RuleSet, ScheduleStep, SkipPattern
from .template import Template, TemplateError

__all__ = ["FORMATS", "SUPPORTED_VERSION", "FreezeGroup", "ParamGroup", "Rule", "RuleSet", "ScheduleStep",
           "SkipPattern", "Template", "TemplateError", "load_rules", "parse_rules"]
