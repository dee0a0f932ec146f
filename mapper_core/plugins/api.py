"""The Python API with plugins: open checkpoints and load rules as the ``mapper`` command does.

``mapper_core.io.formats.open_checkpoint`` and ``mapper_core.rules.load_rules`` know only the
built-in formats and transform steps unless handed others (``formats=``, ``transforms=``).
These functions hand them the plugins' by default: those of :func:`default_plugin_manager`
(built once per process, on first use: built-in plugin, entry points, ``$MAPPER_PLUGINS``),
or of the manager passed as ``plugin_manager=``.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Sequence

import pluggy

from .. import arguments
from ..io.formats.base import Format, Reader, choose_format
from ..rules.ruleset import RuleSet
from ..rules.transforms import LazyTransforms
from .manager import MapperPluginManager, contributions, get_plugin_manager, resolve_rules

_default: MapperPluginManager | None = None
_lock = threading.Lock()


def default_plugin_manager() -> MapperPluginManager:
    """The process's plugin manager for the Python API, built on first call and then reused."""
    global _default
    with _lock:
        if _default is None:
            _default = get_plugin_manager()
        return _default


def plugin_formats(plugin_manager: pluggy.PluginManager | None = None) -> tuple[Format, ...]:
    """Every format: built-in ones first, then the plugins' (readers held to the reader contract)."""
    return contributions(plugin_manager or default_plugin_manager()).formats


def open_checkpoint(path: str | Path, format: str | None = None, *,
                    plugin_manager: pluggy.PluginManager | None = None,
                    formats: Sequence[Format] | None = None, **options: Any) -> Reader:
    """Open ``path`` for reading with the named ``format``, else the one that recognises it.

    ``formats``: the formats to choose from (default: the plugin manager's, built-in first).
    ``options`` are reader options (``trust_pickle``, ``unwrap``, ``strip_prefix``); formats
    they do not concern ignore them. Use the result as a context manager.
    """
    arguments.path(path, "open_checkpoint", "path")
    table = plugin_formats(plugin_manager) if formats is None else formats
    return choose_format(path, table, format).open(Path(path), **options)


def load_rules(spec: str | Path, *, plugin_manager: pluggy.PluginManager | None = None) -> RuleSet:
    """A rules file, or a rule set a plugin contributes (``plugin:name``, or a bare unambiguous name).

    ``transform:`` steps may name the plugins' transforms. Raises RulesError for an invalid
    file, BadInputError for an unknown or ambiguous name, PluginError when a plugin fails.
    """
    arguments.path(spec, "load_rules", "spec", "a rules file's path or a plugin's rule set name")
    return resolve_rules(str(spec), plugin_manager or default_plugin_manager())


def plugin_transforms(plugin_manager: pluggy.PluginManager | None = None) -> LazyTransforms:
    """The plugins' transforms, for ``mapper_core.rules.load_rules(path, transforms=...)``."""
    pm = plugin_manager or default_plugin_manager()
    return LazyTransforms(lambda: contributions(pm).transforms)
