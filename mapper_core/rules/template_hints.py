"""A target template written in another tool's syntax, or copied from its rule's ``match:``.

``re.sub``'s ``\\1`` and ``\\g<name>``, a shell's ``$1``; a regular expression's escapes (``\\.``,
``\\d``) and anchors (a leading ``^``, a trailing ``$``). Such a template parses (it is literal
text), so the plan would write keys holding ``\\1`` or ``layers\\.0``: no checkpoint key ever
does. The rules check refuses it, showing the template as it should be written.
"""
from __future__ import annotations

import re

_SUB_STYLE = re.compile(r"\\(?P<n>\d+)|\\g<(?P<g>\w+)>|\$(?P<d>\d+)|\$\{(?P<b>\w+)\}")
_ESCAPE = re.compile(r"\\+(?P<c>.?)", re.S)  # a backslash (or a run of them, JSON's habit) and what follows


def sub_style_reference(template: str) -> str | None:
    """The problem with a template holding ``\\1``, ``\\g<name>``, ``$1`` or ``${name}``; None if it has none."""
    found = [m.group() for m in _SUB_STYLE.finditer(template)]
    if not found:
        return None
    fixed = _SUB_STYLE.sub(lambda m: "{" + next(g for g in m.groups() if g is not None) + "}", template)
    said = ", ".join(f"'{f}'" for f in dict.fromkeys(found))
    return (f"target '{template}' holds {said}, a group reference in re.sub's or a shell's style, which a template "
            f"would write into the key as it is; templates use {{1}} (or {{name}}): write '{fixed}'")


def regex_syntax(template: str) -> str | None:
    """The problem with a template holding a backslash (``\\.``, ``\\d``), a leading ``^`` or a trailing
    ``$``: a regular expression's syntax, most likely copied from ``match:``; None if it has none."""
    escapes = [m.group() for m in _ESCAPE.finditer(template)]
    anchors = [a for a, there in (("a leading '^'", template.startswith("^")),
                                  ("a trailing '$'", template.endswith("$"))) if there]
    if not escapes and not anchors:
        return None
    said = " and ".join(", ".join(part) for part in ([f"'{e}'" for e in dict.fromkeys(escapes)], anchors) if part)
    what = ("a regular expression's escape" if escapes and not anchors else
            "a regular expression's anchor" if not escapes and len(anchors) == 1 else "a regular expression's syntax")
    # an escaped punctuation character is that character; a class (\d, \w) or a lone backslash has no text form
    fixed = _ESCAPE.sub(lambda m: m["c"] if m["c"] and not m["c"].isalnum() and not m["c"].isspace() else "\0",
                        template[1:] if template.startswith("^") else template)
    fixed = fixed[:-1] if fixed.endswith("$") else fixed
    fix = (f"write '{fixed}'" if fixed and "\0" not in fixed else
           "write the key as it should read, with {1} (or {name}) where a group's text goes")
    return (f"target '{template}' holds {said}: {what}, which a template would write into the key as it is "
            "(a template is plain text, only match: is a regular expression; no checkpoint key holds a "
            f"backslash, a leading '^' or a trailing '$'); {fix}")
