"""Progressive unfreezing declared in the rules file's ``schedule:``, applied to a running optimizer.

    schedule:
      - {epoch: 10, unfreeze: pretrained_conv, lr_scale: 0.1}

At the start of epoch 10, :class:`UnfreezeScheduler` unfreezes the freeze group
``pretrained_conv`` (parameters and BatchNorm statistics, see :mod:`.freeze`) and adds
the newly trainable parameters to the EXISTING optimizer as a parameter group named after
the freeze group, at 0.1 × the optimizer's base learning rate. Other groups keep their
optimizer state (Adam moments), which rebuilding the optimizer would throw away.

The added parameters keep the options of the ``param_groups`` entry the rules assign them to
(weight decay, ...); a step without ``lr`` or ``lr_scale`` uses that entry's ``lr`` too (the base
rate when it has none), so one optimizer group is added per such entry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import BadInputError
from ..rules.ruleset import RuleSet, ScheduleStep
from .apply import frozen_names, param_group_of, parameter_names
from .freeze import unfreeze

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class Unfrozen:
    """One applied schedule step: the group, the learning rate used, and the parameters added."""

    epoch: int
    group: str
    lr: float
    added: tuple[str, ...]  # parameter names added to the optimizer (none already in it)


class UnfreezeScheduler:
    """Apply a rule set's ``schedule`` at epoch starts: ``scheduler.step(epoch)`` before each epoch.

    ``base_lr`` defaults to the optimizer's constructor learning rate (``optimizer.defaults["lr"]``).
    Steps whose epoch has passed are applied on the next call, in epoch order, so resuming or
    skipping epochs never misses one; each step is applied once.
    """

    def __init__(self, model: "nn.Module", optimizer: "torch.optim.Optimizer", ruleset: RuleSet,
                 base_lr: float | None = None, overrides: Mapping[str, Mapping[str, Any]] | None = None):
        groups = {g.name for g in ruleset.freeze}
        for s in ruleset.schedule:
            if s.unfreeze not in groups:
                _unknown_group(ruleset, s)  # a RuleSet built in code skipped the file checks
        if ruleset.schedule:  # a pattern of a scheduled group that matches nothing fails now, not epochs later
            frozen_names(model, ruleset, sorted({s.unfreeze for s in ruleset.schedule}))
        self.model = model
        self.optimizer = optimizer
        self.ruleset = ruleset
        self.base_lr = float(optimizer.defaults["lr"] if base_lr is None else base_lr)
        self.overrides = {k: dict(v) for k, v in (overrides or {}).items()}  # as given to param_groups()
        # stable order: by epoch, then file order
        self.steps: tuple[ScheduleStep, ...] = tuple(sorted(ruleset.schedule, key=lambda s: s.epoch))
        self.position = 0  # how many of self.steps were applied
        self.history: list[Unfrozen] = []

    def step(self, epoch: int) -> list[Unfrozen]:
        """Apply every pending step whose epoch is <= ``epoch``; returns what was applied."""
        applied = []
        while self.position < len(self.steps) and self.steps[self.position].epoch <= epoch:
            s = self.steps[self.position]
            unfreeze(self.model, self.ruleset, [s.unfreeze])
            for lr, added in self._add_groups(s):
                done = Unfrozen(s.epoch, s.unfreeze, lr, added)
                self.history.append(done)
                applied.append(done)
            self.position += 1
        return applied

    on_epoch_start = step

    def _add_groups(self, s: ScheduleStep) -> list[tuple[float, tuple[str, ...]]]:
        """One optimizer group per rules param group among the newly trainable parameters: (lr, names)."""
        present = {id(p) for g in self.optimizer.param_groups for p in g["params"]}
        params = dict(self.model.named_parameters())
        names = [n for n in frozen_names(self.model, self.ruleset, [s.unfreeze])
                 if params[n].requires_grad and id(params[n]) not in present]
        aliases = parameter_names(self.model)
        parts: dict[str | None, list[str]] = {}
        for n in names:
            found = param_group_of(self.ruleset, aliases[n])
            parts.setdefault(found.name if found else None, []).append(n)
        groups = {g.name: g for g in self.ruleset.param_groups}
        added = []
        for part, members in parts.items():
            options = {**groups[part].options, **self.overrides.get(part, {})} if part is not None else {}
            explicit = s.lr is not None or s.lr_scale is not None
            lr = float(s.learning_rate(self.base_lr) if explicit or "lr" not in options else options["lr"])
            self.optimizer.add_param_group({**options, "params": [params[n] for n in members], "lr": lr,
                                            "name": s.unfreeze})
            added.append((lr, tuple(members)))
        return added or [(s.learning_rate(self.base_lr), ())]

    def state_dict(self) -> dict[str, Any]:
        """The position in the schedule (JSON-safe); the model and optimizer hold the rest."""
        return {"position": self.position, "base_lr": self.base_lr,
                "steps": [[s.epoch, s.unfreeze] for s in self.steps]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the position only: it does not touch the model or the optimizer, whose
        unfrozen groups come back with them (see :mod:`.state`)."""
        steps = [[s.epoch, s.unfreeze] for s in self.steps]
        saved = [list(x) for x in state.get("steps", [])]
        position = state.get("position")
        if saved != steps or not isinstance(position, int) or not 0 <= position <= len(steps):
            raise BadInputError(
                f"saved schedule state {state!r} does not fit the schedule of rules "
                f"{self.ruleset.origin or self.ruleset.name} ({steps}); resume with the rules file used for training")
        self.position = position
        self.base_lr = float(state.get("base_lr", self.base_lr))


def _unknown_group(ruleset: RuleSet, step: ScheduleStep) -> None:
    known = ", ".join(g.name for g in ruleset.freeze) or "none"
    raise BadInputError(f"rules {ruleset.origin or ruleset.name}: schedule step at epoch {step.epoch} unfreezes "
                        f"'{step.unfreeze}', which is not a freeze group (groups: {known}); fix the rules")
