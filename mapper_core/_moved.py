"""The module paths of mapper-core 0.1, kept importable for one release.

0.2 moved the flat modules into stage folders (rules/, plan/, io/, train/, plugins/). An
import of an old path, e.g. ``mapper_core.hookspecs``, gets the very module that now lives at
the new path (same objects, so ``isinstance`` and hook markers keep working) and a
DeprecationWarning naming the new path. Delete this table to drop the old paths.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import sys
import warnings
from types import ModuleType

MOVED: dict[str, str] = {
    # rules/
    "mapper_core.ruleset": "mapper_core.rules.ruleset",
    "mapper_core.template": "mapper_core.rules.template",
    "mapper_core.matcher": "mapper_core.rules.matcher",
    "mapper_core.positions": "mapper_core.rules.positions",
    "mapper_core.safe_yaml": "mapper_core.rules.safe_yaml",
    "mapper_core.schema": "mapper_core.rules.schema",
    "mapper_core.transforms": "mapper_core.rules.transforms",
    "mapper_core.builtin_steps": "mapper_core.rules.steps",
    # plan/
    "mapper_core.planner": "mapper_core.plan.make",
    "mapper_core.explain": "mapper_core.plan.explain",
    "mapper_core.report": "mapper_core.plan.report",
    # io/
    "mapper_core.formats": "mapper_core.io.formats",
    "mapper_core.atomic": "mapper_core.io.atomic",
    "mapper_core.convert": "mapper_core.io.convert",
    "mapper_core.verify": "mapper_core.io.verify",
    "mapper_core.inspect": "mapper_core.io.inspection",
    "mapper_core.export": "mapper_core.io.export",
    "mapper_core.torch_dtypes": "mapper_core.io.torch_dtypes",
    # train/
    "mapper_core.apply": "mapper_core.train.apply",
    "mapper_core.finetune": "mapper_core.train.freeze",
    "mapper_core.schedule": "mapper_core.train.schedule",
    "mapper_core.training_state": "mapper_core.train.state",
    # plugins/
    "mapper_core.hookspecs": "mapper_core.plugins.hookspecs",
    "mapper_core.registry": "mapper_core.plugins.registry",
    "mapper_core.builtin": "mapper_core.plugins.builtin",
}


def new_name(old: str) -> str | None:
    """The current path of an old module path (also of its submodules), or None."""
    if old in MOVED:
        return MOVED[old]
    parent, _, child = old.rpartition(".")
    return f"{MOVED[parent]}.{child}" if parent in MOVED else None


class MovedModules:
    """A meta path finder and loader (importlib's protocol; the abc modules cost start-up time)
    that finds an old path and hands back the module at its new path."""

    def __init__(self) -> None:
        self._real_specs: dict[str, object] = {}  # old name → the module's own spec, while loading

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        if not fullname.startswith("mapper_core.") or new_name(fullname) is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec) -> ModuleType:
        new = new_name(spec.name)
        warnings.warn(f"{spec.name} moved to {new}; the old path goes away in mapper-core 0.3",
                      DeprecationWarning, stacklevel=2)
        module = importlib.import_module(new)  # type: ignore[arg-type]
        self._real_specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # Already executed under its new name. The import system has just set the module's
        # __spec__ to the old name's; put the real one back so relative imports, reload and
        # pickling by name keep seeing the module where it lives.
        module.__spec__ = self._real_specs.pop(module.__spec__.name)


def install() -> None:
    if not any(isinstance(f, MovedModules) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedModules())
