"""The rules file's ``schedule:`` section, read as data: progressive unfreezing steps.

    schedule:
      - {epoch: 10, unfreeze: pretrained_conv, lr_scale: 0.1}

Here the section is checked (the group exists, at most one of ``lr`` / ``lr_scale``, no
group twice) and turned into :class:`~mapper_core.rules.ruleset.ScheduleStep` values.
Applying them to a running optimizer is :class:`mapper_core.train.schedule.UnfreezeScheduler`.
"""
from __future__ import annotations

from typing import Any, Callable

from .ruleset import ScheduleStep


def check_schedule(data: dict, add: Callable[..., None], usable: Callable[[tuple, Any, type], bool]) -> None:
    """Checks the schema cannot express: the group exists, at most one of lr / lr_scale, no group twice."""
    schedule = data.get("schedule")
    if not isinstance(schedule, list):
        return
    freeze = data.get("freeze")
    known = list(freeze) if isinstance(freeze, dict) else []
    seen: dict[str, int] = {}
    for i, step in enumerate(schedule):
        if not isinstance(step, dict):
            continue
        path = ("schedule", i)
        if "lr" in step and "lr_scale" in step:
            add((*path, "lr_scale"), "give either `lr` (an absolute learning rate) or `lr_scale` "
                                     "(a factor of the optimizer's base learning rate), not both; drop one")
        group = step.get("unfreeze")
        if not usable((*path, "unfreeze"), group, str):
            continue
        if group not in known:
            add((*path, "unfreeze"), f"no freeze group named '{group}' (groups under `freeze`: "
                                     f"{', '.join(known) or 'none'}); name one of them or add it under `freeze:`")
        elif group in seen:
            add((*path, "unfreeze"), f"the group '{group}' is already unfrozen by schedule step {seen[group]}; "
                                     "a group can be unfrozen once: remove one of the steps")
        else:
            seen[group] = i


def schedule_steps(data: dict, line: Callable[[tuple], int | None]) -> tuple[ScheduleStep, ...]:
    """The checked ``schedule:`` list as values (file order)."""
    return tuple(
        ScheduleStep(epoch=int(s["epoch"]), unfreeze=s["unfreeze"],
                     lr=None if s.get("lr") is None else float(s["lr"]),
                     lr_scale=None if s.get("lr_scale") is None else float(s["lr_scale"]),
                     line=line(("schedule", i)))
        for i, s in enumerate(data.get("schedule", ()))
    )
