"""The plugin manager: built-in plugins, then installed entry points, then local modules.

Nothing is loaded at import time; call :func:`get_plugin_manager`. A plugin that fails to
load is recorded in ``pm.mapper_load_errors`` and the others still load; so is a hook that
fails when contributions are collected (its values are left out, the others' still work).
"""
from __future__ import annotations

import dataclasses
import errno
import importlib
import importlib.metadata
import inspect
import os
import sys
import traceback
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pluggy

from . import hookspecs
from ..errors import BadInputError, MapperError, PluginError, called_exit
from ..rules.load import load_rules
from ..rules.ruleset import RuleSet
from ..rules.transforms import LazyTransforms
from .registry import Contributions, collect

ENTRY_POINT_GROUP = "mapper_core.plugins"
ENV_VAR = "MAPPER_PLUGINS"
BUILTIN_PLUGINS = {"mapper_core": "mapper_core.plugins.builtin"}  # plugin name → module

# How a plugin was loaded, as `mapper plugins` reports it.
BUILTIN, ENTRY_POINT, ENV, CLI = "builtin", "entry point", ENV_VAR, "--plugin"


@dataclass(frozen=True)
class PluginInfo:
    """A registered plugin: its name, module, how it was loaded, and its distribution if installed."""

    name: str
    module: str
    source: str
    distribution: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class PluginLoadFailure:
    """A plugin that could not be loaded, or (``hook`` set) one of whose hooks failed.

    Either way the other plugins, and their contributions, were loaded without it.
    """

    name: str
    source: str
    error: str
    module: str | None = None
    hook: str | None = None
    traceback: str = ""  # the plugin's own traceback, when it raised (``mapper --debug`` prints it)
    collected: bool = False  # found when the hooks were called (replaced each time they are called again)

    def __str__(self) -> str:
        where = f" (module {self.module})" if self.module and self.module != self.name else ""
        if self.hook is not None:  # ``error`` already says what was left out and what to do
            return f"plugin '{self.name}'{where} ({self.source}): {self.error}"
        return (
            f"plugin '{self.name}'{where} from {self.source} failed to load: {self.error}; "
            "the other plugins were loaded without it. Fix or reinstall it, or remove it from "
            f"{'the installed packages' if self.source == ENTRY_POINT else self.source}"
        )


class MapperPluginManager(pluggy.PluginManager):
    """A pluggy manager that also remembers how each plugin was loaded and which failed."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.mapper_load_errors: list[PluginLoadFailure] = []
        self.mapper_plugin_info: dict[str, PluginInfo] = {}


def get_plugin_manager(
    extra_plugins: Sequence[str] = (),
    *,
    entry_points: bool = True,
    env: Mapping[str, str] | None = None,
) -> MapperPluginManager:
    """A new manager with built-in plugins, entry points (if asked), then ``$MAPPER_PLUGINS`` and ``extra_plugins``."""
    env = os.environ if env is None else env
    pm = MapperPluginManager()
    for name, module in BUILTIN_PLUGINS.items():
        # A broken built-in plugin is our bug, not the user's: let it raise.
        pm.register(importlib.import_module(module), name=name)
        pm.mapper_plugin_info[name] = PluginInfo(name, module, BUILTIN)
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            _add(
                pm, ep.name, ENTRY_POINT, ep.load, module=ep.value,
                distribution=dist.metadata["Name"] if dist else None,
                version=dist.version if dist else None,
            )
    env_modules = [m.strip() for m in env.get(ENV_VAR, "").split(",") if m.strip()]
    for source, modules in ((ENV, env_modules), (CLI, extra_plugins)):
        for module in modules:
            _add(pm, module, source, lambda m=module: importlib.import_module(m), module=module)
    return pm


def _add(pm: MapperPluginManager, name: str, source: str, load: Callable[[], Any], *, module: str, **dist: Any) -> None:
    """Load and register one plugin; record a failure instead of raising."""
    def fail(error: str) -> None:
        trace = traceback.format_exc() if sys.exc_info()[0] is not None else ""
        pm.mapper_load_errors.append(PluginLoadFailure(name, source, error, module, traceback=trace))

    if pm.is_blocked(name):
        return
    try:
        plugin = load()
    except ModuleNotFoundError as exc:
        if source in (ENV, CLI) and exc.name and module.split(".")[0] == exc.name.split(".")[0]:
            return fail(_not_on_path(module))
        return fail(f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # any error in someone else's import-time code
        return fail(f"{type(exc).__name__}: {exc}")
    except SystemExit as exc:  # a plugin must not end the CLI; KeyboardInterrupt still does
        return fail(f"SystemExit: the plugin called sys.exit({exc.code!r}) while being imported")
    if pm.is_registered(plugin):
        return  # the same module reached twice (e.g. an entry point and $MAPPER_PLUGINS)
    if pm.get_plugin(name) is not None:
        other = pm.mapper_plugin_info.get(name)
        by = f"module {other.module} ({other.source})" if other else "another plugin"
        return fail(f"the plugin name '{name}' is already taken by {by}")
    try:
        pm.register(plugin, name=name)
        pm.check_pending()  # a misspelt mapper_* hook is an error, not silently ignored
    except (pluggy.PluginValidationError, ValueError) as exc:
        if pm.get_plugin(name) is plugin:
            pm.unregister(name=name)
        return fail(f"{type(exc).__name__}: {exc}")
    if not inspect.ismodule(plugin) and not pm.get_hookcallers(plugin):
        pm.unregister(name=name)  # pluggy looked for hooks on a function (or class): it contributes nothing
        return fail(_not_a_module(name, source, module, plugin))
    pm.mapper_plugin_info[name] = PluginInfo(name, getattr(plugin, "__name__", module), source, **dist)
    for attr in _unmarked_hooks(pm, plugin):
        pm.mapper_load_errors.append(PluginLoadFailure(name, source, _unmarked_message(plugin, attr), module,
                                                       hook=attr))


def _not_a_module(name: str, source: str, value: str, plugin: Any) -> str:
    """Why an entry point (or a module path) that names a function or class contributes nothing."""
    kind = "a class" if inspect.isclass(plugin) else "a function" if callable(plugin) else type(plugin).__name__
    home = value.split(":", 1)[0].strip()
    where = f"the entry point '{name} = {value}'" if source == ENTRY_POINT else f"'{value}'"
    return (f"{where} names {kind}, not a module, and it has no mapper_* hook implementations, so it would "
            f"contribute nothing; name the module that holds the @hookimpl functions"
            + (f" ({name} = {home} in the package's [project.entry-points.\"{ENTRY_POINT_GROUP}\"] table)"
               if source == ENTRY_POINT else ""))


def _unmarked_hooks(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    """Functions named like hooks (``mapper_*``) that the plugin defines without ``@hookimpl``: pluggy skips them."""
    own = getattr(plugin, "__name__", None) if inspect.ismodule(plugin) else None
    found = []
    for attr in sorted(dir(plugin)):
        if not attr.startswith("mapper_"):
            continue
        value = getattr(plugin, attr, None)
        if not inspect.isroutine(value) or (own is not None and getattr(value, "__module__", own) != own):
            continue  # an imported helper is the other module's business
        if pm.parse_hookimpl_opts(plugin, attr) is None:
            found.append(attr)
    return found


def _unmarked_message(plugin: Any, attr: str) -> str:
    where = getattr(plugin, "__name__", type(plugin).__name__)
    known = sorted(n for n in dir(hookspecs) if n.startswith("mapper_"))
    fix = ("decorate it with @hookimpl (from mapper_core.plugins import hookimpl)" if attr in known
           else f"{attr} is not a hook name either (hooks: {', '.join(known)}); rename it and decorate it with "
                "@hookimpl, or give it a name outside mapper_*")
    return f"function {attr} in {where} is not marked @hookimpl, so it is not a hook and contributes nothing; {fix}"


def _not_on_path(module: str) -> str:
    """Where Python looked for a local plugin module, and how to make it found."""
    here = Path.cwd()
    path = os.environ.get("PYTHONPATH", "")
    file = here / (module.replace(".", os.sep) + ".py")
    found = f"; {file.name} is in the current folder ({here}), which is not searched" if file.exists() else \
        f"; the current folder ({here}) is not searched"
    return (f"ModuleNotFoundError: no module named '{module}' on the Python path (PYTHONPATH={path or '(not set)'}){found}. "
            f"Run with PYTHONPATH=. (or the folder that holds it), or install the plugin")


_cache: "weakref.WeakKeyDictionary[pluggy.PluginManager, tuple[tuple, Contributions]]" = weakref.WeakKeyDictionary()


def contributions(pm: pluggy.PluginManager) -> Contributions:
    """What the registered plugins contribute; cached per manager until its plugins change.

    Hooks that failed are also recorded in ``pm.mapper_load_errors`` (with ``hook`` set), so
    `mapper plugins` reports them and exits 2 while other commands only warn.
    """
    snapshot = tuple((name, id(plugin)) for name, plugin in pm.list_name_plugin())
    cached = _cache.get(pm)
    if cached is None or cached[0] != snapshot:
        cached = (snapshot, collect(pm, first=BUILTIN_PLUGINS))
        _cache[pm] = cached
        _record_hook_failures(pm, cached[1])
    return cached[1]


def _record_hook_failures(pm: pluggy.PluginManager, found: Contributions) -> None:
    """Replace the hook failures in ``pm.mapper_load_errors`` with those of ``found``."""
    errors = getattr(pm, "mapper_load_errors", None)
    if errors is None:  # a plain pluggy manager: the failures stay on Contributions only
        return
    info = getattr(pm, "mapper_plugin_info", {})
    errors[:] = [e for e in errors if not e.collected]
    for f in found.failures:
        known = info.get(f.plugin)
        errors.append(PluginLoadFailure(
            f.plugin, known.source if known else "registered", f.error,
            known.module if known else None, hook=f.hook, traceback=f.traceback, collected=True,
        ))


def resolve_rules(spec: str, pm: pluggy.PluginManager) -> RuleSet:
    """A :class:`~mapper_core.rules.RuleSet` from a rules file path or a contributed ``plugin:name``.

    An existing file always wins, so paths containing ':' still work. A bare ``name`` is
    accepted when exactly one plugin contributes a rule set of that name.
    """
    transforms = LazyTransforms(lambda: contributions(pm).transforms)
    if Path(spec).exists():
        return load_rules(Path(spec), transforms=transforms)
    if os.path.islink(spec):  # a link to nothing: named as such, not as an unknown rule set
        try:
            os.stat(spec)
            loop = False
        except OSError as exc:
            loop = exc.errno == errno.ELOOP
        raise BadInputError(f"rules '{spec}': is a symbolic link to {os.readlink(spec)}, which " + (
            "leads back to itself (a loop of links)" if loop else "does not exist (a dangling link)")
            + "; fix the link to point to the rules file")
    table = contributions(pm).rule_sets
    if ":" not in spec and len(table.candidates(spec)) > 1:
        table.resolve(spec, "Or pass a rules file path")  # raises, listing the candidates
    found = table.get(spec)
    if found is None:
        known = ", ".join(sorted(table)) or "none"
        raise BadInputError(
            f"rules '{spec}': no such file, and no plugin contributes a rule set by that name; "
            f"known rule sets: {known}. Pass a rules file path or a name listed by `mapper rules`"
        )
    try:
        ruleset = found.value.load(transforms=transforms)
    except MapperError:
        raise  # e.g. RulesError naming the packaged file and line
    except Exception as exc:  # a plugin's own loader failed
        raise PluginError(
            f"rule set '{found.qualified}': plugin '{found.plugin}' failed to load it: {type(exc).__name__}: {exc}"
        ) from exc
    except SystemExit as exc:  # the plugin's failure, not the command's exit
        raise PluginError(f"rule set '{found.qualified}': plugin '{found.plugin}' "
                          f"{called_exit(exc, 'while loading it')}") from exc
    if not isinstance(ruleset, RuleSet):
        raise PluginError(
            f"rule set '{found.qualified}': plugin '{found.plugin}' returned {type(ruleset).__name__}; expected a RuleSet"
        )
    return dataclasses.replace(ruleset, origin=found.qualified)
