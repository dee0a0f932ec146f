"""The 0.1 module paths keep working for one release: same module objects, a DeprecationWarning."""
from __future__ import annotations

import importlib
import sys

import pytest

from mapper_core._moved import MOVED, new_name

# What plugins and the 0.1 README imported, by name (module, attribute).
DOCUMENTED = [
    ("mapper_core.hookspecs", "hookimpl"), ("mapper_core.registry", "RuleSetSource"),
    ("mapper_core.registry", "ModelFactory"), ("mapper_core.registry", "TransformSpec"),
    ("mapper_core.formats.base", "Format"), ("mapper_core.formats.base", "Reader"),
    ("mapper_core.formats", "open_checkpoint"), ("mapper_core.formats.aliases", "load_safetensors"),
    ("mapper_core.formats.torch_format", "TrustPickleWarning"), ("mapper_core.specs", "TensorSpec"),
    ("mapper_core.errors", "MapperError"), ("mapper_core.rules", "load_rules"),
    ("mapper_core.transforms", "NotInvertible"), ("mapper_core.transforms", "StepError"),
    ("mapper_core.planner", "make_plan"), ("mapper_core.report", "render_text"),
    ("mapper_core.plugins", "get_plugin_manager"), ("mapper_core.inspect", "inspect_path"),
    ("mapper_core.convert", "convert"), ("mapper_core.explain", "explain"),
    ("mapper_core.export", "plan_export"), ("mapper_core.ruleset", "RuleSet"),
]
TORCH_SIDE = {"mapper_core.apply", "mapper_core.finetune", "mapper_core.schedule", "mapper_core.training_state",
              "mapper_core.torch_dtypes"}


def _fresh_import(old: str):
    """Import ``old`` as a first import would, returning (module, the warnings it raised)."""
    for name in [n for n in sys.modules if n == old or n.startswith(old + ".")]:
        if new_name(name) is not None:
            del sys.modules[name]  # only the alias entries; the real modules stay loaded
    with pytest.warns(DeprecationWarning) as record:
        module = importlib.import_module(old)
    return module, record


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_is_the_new_module_with_a_warning(old):
    if old in TORCH_SIDE:
        pytest.importorskip("torch")
    module, record = _fresh_import(old)
    assert module is importlib.import_module(MOVED[old])
    assert module.__spec__.name == MOVED[old] == module.__name__  # relative imports and reload see the real module
    assert any(MOVED[old] in str(w.message) and "0.3" in str(w.message) for w in record)


@pytest.mark.parametrize("old, name", DOCUMENTED)
def test_documented_import_lines_still_work(old, name):
    value = getattr(importlib.import_module(old), name)
    new = new_name(old) or old
    assert value is getattr(importlib.import_module(new), name)


def test_old_submodule_of_a_moved_package_resolves():
    assert new_name("mapper_core.formats.writer") == "mapper_core.io.formats.writer"
    assert new_name("mapper_core.nothing_here") is None
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("mapper_core.nothing_here")


def test_new_paths_import_without_warnings(recwarn):
    for new in ("mapper_core.rules", "mapper_core.plan", "mapper_core.plugins", "mapper_core.io.convert",
                "mapper_core.io.formats.base", "mapper_core.cli"):
        importlib.import_module(new)
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning) and "moved to" in str(w.message)]
