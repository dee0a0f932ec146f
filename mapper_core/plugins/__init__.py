"""The plugin system: hook specifications, the manager, and the values plugins contribute.

For plugin authors, everything is importable from here::

    from mapper_core.plugins import hookimpl, RuleSetSource, ModelFactory, TransformSpec, Format

Readers may subclass :class:`ReaderBase` (the reader contract: :class:`Reader`) and warn about a
file with :class:`CheckpointWarning` (the CLI shows it as ``mapper: warning: ...``).

For hosts: :func:`get_plugin_manager`, :func:`contributions`, :func:`resolve_rules`; the Python
API with plugins: :func:`open_checkpoint`, :func:`load_rules` (the :func:`default_plugin_manager`'s
plugins unless ``plugin_manager=`` is given). Nothing is loaded at import time.
"""
from ..errors import CheckpointWarning
from ..io.formats.base import Format, Reader, ReaderBase
from .api import default_plugin_manager, load_rules, open_checkpoint, plugin_formats, plugin_transforms
from .hookspecs import hookimpl, hookspec
from .manager import (BUILTIN, BUILTIN_PLUGINS, CLI, ENTRY_POINT, ENV, ENTRY_POINT_GROUP, ENV_VAR, MapperPluginManager, PluginInfo,
                      PluginLoadFailure, contributions, get_plugin_manager, resolve_rules)
from .registry import Contributions, HookFailure, ModelFactory, RuleSetSource, TransformSpec
from .scoped import Contribution, ScopedNames

__all__ = ["BUILTIN", "BUILTIN_PLUGINS", "CLI", "ENTRY_POINT", "ENV", "ENTRY_POINT_GROUP", "ENV_VAR", "CheckpointWarning",
           "Contribution", "Contributions", "Format",
           "HookFailure", "MapperPluginManager", "ModelFactory", "PluginInfo", "PluginLoadFailure", "Reader",
           "ReaderBase", "RuleSetSource", "ScopedNames", "TransformSpec", "contributions", "default_plugin_manager",
           "get_plugin_manager", "hookimpl", "hookspec", "load_rules", "open_checkpoint", "plugin_formats",
           "plugin_transforms", "resolve_rules"]
