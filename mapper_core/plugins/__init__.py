"""The plugin system: hook specifications, the manager, and the values plugins contribute.

For plugin authors, everything is importable from here::

    from mapper_core.plugins import hookimpl, RuleSetSource, ModelFactory, TransformSpec, Format

For hosts: :func:`get_plugin_manager`, :func:`contributions`, :func:`resolve_rules`.
Nothing is loaded at import time.
"""
from ..io.formats.base import Format
from .hookspecs import hookimpl, hookspec
from .manager import (BUILTIN, BUILTIN_PLUGINS, CLI, ENTRY_POINT, ENV, ENTRY_POINT_GROUP, ENV_VAR, MapperPluginManager, PluginInfo,
                      PluginLoadFailure, contributions, get_plugin_manager, resolve_rules)
from .registry import Contribution, Contributions, HookFailure, ModelFactory, RuleSetSource, TransformSpec

__all__ = ["BUILTIN", "BUILTIN_PLUGINS", "CLI", "ENTRY_POINT", "ENV", "ENTRY_POINT_GROUP", "ENV_VAR", "Contribution", "Contributions", "Format",
           "HookFailure", "MapperPluginManager", "ModelFactory", "PluginInfo", "PluginLoadFailure",
           "RuleSetSource", "TransformSpec", "contributions", "get_plugin_manager", "hookimpl", "hookspec",
           "resolve_rules"]
