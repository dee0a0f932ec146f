"""The rules data model: frozen values built by :mod:`mapper_core.rules` from a file."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .key_pattern import KeyPattern, key_pattern
from .template import Template

ON_SHAPE_MISMATCH = ("error", "skip")
ON_KIND_MISMATCH = ("error", "warn")
UNMATCHED = ("error", "keep", "drop")


@dataclass(frozen=True)
class Rule:
    """Source regex (full match) → target template. Rules are tried in order; first wins."""

    index: int
    match: str
    target: str
    on_shape_mismatch: str = "error"
    on_kind_mismatch: str = "error"
    tables: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    line: int | None = None
    # ordered transform steps (mapper_core.transforms.Step) applied to the source tensor
    transform: tuple[Any, ...] = ()
    # matched in time linear in the key (mapper_core.rules.key_pattern); .regex is Python's
    pattern: KeyPattern = field(init=False, compare=False, repr=False)
    # compiled once with the rule's tables: renders for the planner, explains, inverts for export
    template: Template = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", key_pattern(self.match))
        object.__setattr__(self, "template", Template.parse(self.target, self.tables))

    def apply(self, key: str) -> str | None:
        """The target for ``key`` when this rule takes it, else None."""
        m = self.pattern.fullmatch(key)
        return self.template.renderer(m) if m else None


@dataclass(frozen=True)
class SkipPattern:
    """A source pattern whose keys are deliberately left behind."""

    match: str
    line: int | None = None
    pattern: KeyPattern = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", key_pattern(self.match))


@dataclass(frozen=True)
class FreezeGroup:
    """A named group of target-key patterns to freeze together."""

    name: str
    match: tuple[str, ...]
    patterns: tuple[KeyPattern, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "patterns", tuple(key_pattern(p) for p in self.match))

    def matches(self, key: str) -> bool:
        return any(p.fullmatch(key) for p in self.patterns)


@dataclass(frozen=True)
class ParamGroup:
    """An optimizer parameter group over target keys; ``options`` go to the optimizer (lr, ...)."""

    name: str
    match: tuple[str, ...] = ()
    default: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    patterns: tuple[KeyPattern, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "patterns", tuple(key_pattern(p) for p in self.match))

    def matches(self, key: str) -> bool:
        return any(p.fullmatch(key) for p in self.patterns)


@dataclass(frozen=True)
class ScheduleStep:
    """At the start of ``epoch``, unfreeze the freeze group ``unfreeze`` and train it at
    ``lr`` or ``lr_scale`` × the optimizer's base learning rate (1× when neither is given)."""

    epoch: int
    unfreeze: str
    lr: float | None = None
    lr_scale: float | None = None
    line: int | None = None

    def learning_rate(self, base_lr: float) -> float:
        if self.lr is not None:
            return self.lr
        return base_lr * (1.0 if self.lr_scale is None else self.lr_scale)


@dataclass(frozen=True)
class RuleSet:
    """A whole rules file: ordered rules, skip patterns, freeze groups, param groups."""

    name: str
    rules: tuple[Rule, ...]
    skip: tuple[SkipPattern, ...] = ()
    freeze: tuple[FreezeGroup, ...] = ()
    param_groups: tuple[ParamGroup, ...] = ()
    schedule: tuple[ScheduleStep, ...] = ()  # progressive unfreezing, in file order
    unmatched: str = "error"  # source keys no rule or skip takes: error | keep | drop
    new: tuple[SkipPattern, ...] = ()  # target-key patterns of new layers (expected uninitialized)
    description: str = ""
    version: int = 1
    origin: str | None = None  # the file (or plugin:name) it was read from
    sha256: str | None = None  # of the file's bytes, for provenance
    # what the check found suspicious in a valid file (errors.Problem: file, line, path, message)
    warnings: tuple[Any, ...] = field(default=(), compare=False)

    def freeze_group(self, name: str) -> FreezeGroup:
        for g in self.freeze:
            if g.name == name:
                return g
        known = ", ".join(g.name for g in self.freeze) or "none"
        raise KeyError(f"no freeze group '{name}' in rules {self.origin or self.name} (groups: {known})")
