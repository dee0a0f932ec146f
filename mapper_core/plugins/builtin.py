"""The built-in plugin: mapper-core's own formats, contributed through the same hooks as any plugin."""
from __future__ import annotations

from ..io.formats.base import Format
from .hookspecs import hookimpl
from ..rules.steps import BUILTIN, Transform
from .registry import TransformSpec


@hookimpl
def mapper_formats() -> list[Format]:
    # Imported here so that listing plugins does not import the format modules.
    from ..io.formats import builtin_formats

    return list(builtin_formats())


@hookimpl
def mapper_transforms() -> list[TransformSpec]:
    # The rules loader uses the same Transform objects directly; listing them here makes
    # `mapper plugins` show them and stops a plugin from taking a built-in step's name.
    return [_spec_of(t) for t in BUILTIN.values()]


def _spec_of(t: Transform) -> TransformSpec:
    def apply(tensor, **params):
        from ..io.tensor_ops import BUILTIN_OPS  # torch only when a tensor is transformed

        return BUILTIN_OPS[t.name](tensor, params)

    return TransformSpec(t.name, apply, t.description, spec=lambda s, **p: t.spec(s, p),
                         inverse=(lambda s, **p: t.inverse(s, p)) if t.inverse else None)
