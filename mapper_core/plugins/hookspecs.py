"""The plugin hooks. A plugin is a module with functions marked ``@hookimpl`` named like these.

Every hook takes no arguments and returns a list of named values (or None for nothing).
All hooks collect from every plugin; the host checks that names are unique across plugins.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from ..io.formats.base import Format
    from .registry import ModelFactory, RuleSetSource, TransformSpec

PROJECT = "mapper_core"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def mapper_rule_sets() -> list[RuleSetSource]:
    """Named rule sets, addressable as ``plugin:name`` wherever a rules path is accepted.

    Contribute names and where the rules live; the file is read only when the rule set is used.

    :return: rule set sources, each a :class:`mapper_core.plugins.RuleSetSource`.
    """


@hookspec
def mapper_models() -> list[ModelFactory]:
    """Named model builders, so a target layout can be built by name.

    Do not import torch here: import it inside the factory's ``build`` callable.

    :return: model factories, each a :class:`mapper_core.plugins.ModelFactory`.
    """


@hookspec
def mapper_formats() -> list[Format]:
    """Checkpoint formats that can be read (built-in formats come through this hook too).

    :return: formats, each a :class:`mapper_core.plugins.Format`.
    """


@hookspec
def mapper_transforms() -> list[TransformSpec]:
    """Named tensor transforms that rules may apply to a tensor on its way to the target.

    :return: transforms, each a :class:`mapper_core.plugins.TransformSpec`.
    """
