"""A target template written in another tool's syntax: ``re.sub``'s ``\\1`` and ``\\g<name>``, or ``$1``.

Such a template parses (it is literal text), so the plan would write keys holding ``\\1``: no
checkpoint key ever does. The rules check refuses it, showing the same template with braces.
"""
from __future__ import annotations

import re

_SUB_STYLE = re.compile(r"\\(?P<n>\d+)|\\g<(?P<g>\w+)>|\$(?P<d>\d+)|\$\{(?P<b>\w+)\}")


def sub_style_reference(template: str) -> str | None:
    """The problem with a template holding ``\\1``, ``\\g<name>``, ``$1`` or ``${name}``; None if it has none."""
    found = [m.group() for m in _SUB_STYLE.finditer(template)]
    if not found:
        return None
    fixed = _SUB_STYLE.sub(lambda m: "{" + next(g for g in m.groups() if g is not None) + "}", template)
    said = ", ".join(f"'{f}'" for f in dict.fromkeys(found))
    return (f"target '{template}' holds {said}, a group reference in re.sub's or a shell's style, which a template "
            f"would write into the key as it is; templates use {{1}} (or {{name}}): write '{fixed}'")
