"""The built-in plugin: mapper-core's own formats, contributed through the same hooks as any plugin."""
from __future__ import annotations

from .formats.base import Format
from .hookspecs import hookimpl


@hookimpl
def mapper_formats() -> list[Format]:
    # Imported here so that listing plugins does not import the format modules.
    from .formats import builtin_formats

    return list(builtin_formats())
