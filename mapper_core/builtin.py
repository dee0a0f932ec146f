"""The built-in plugin: mapper-core's own formats, contributed through the same hooks as any plugin."""
from __future__ import annotations

from .formats.base import Format
from .hookspecs import hookimpl
from .registry import TransformSpec


@hookimpl
def mapper_formats() -> list[Format]:
    # Imported here so that listing plugins does not import the format modules.
    from .formats import builtin_formats

    return list(builtin_formats())


@hookimpl
def mapper_transforms() -> list[TransformSpec]:
    # The rules loader uses the same Transform objects directly; listing them here makes
    # `mapper plugins` show them and stops a plugin from taking a built-in step's name.
    from .transforms import builtin_specs

    return builtin_specs()
