"""Argument checks for the public entry points (load_rules, make_plan, convert, apply_to_module,
freeze, ...): a wrong kind of argument raises :class:`~.errors.ArgumentTypeError` naming the function,
the argument, what was expected and how to get it, not an AttributeError from deep inside.

The bottom layer (imports only :mod:`.errors`): the classes to check against are passed in, so any
stage may use it. Values are only looked at, never changed.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

from .errors import ArgumentTypeError

PathLike = (str, os.PathLike)


def _got(value: Any) -> str:
    shown = repr(value)
    return f"{type(value).__name__} {shown[:60]}{'…' if len(shown) > 60 else ''}" if isinstance(
        value, (str, bytes, os.PathLike, int, float)) else type(value).__name__


def refuse(function: str, argument: str, value: Any, expected: str, hint: str = "") -> ArgumentTypeError:
    """The error for ``function(argument=value)`` when ``expected`` was wanted; ``hint`` says how to get it."""
    return ArgumentTypeError(f"{function}(): {argument} must be {expected}, got {_got(value)}"
                             + (f"; {hint}" if hint else ""))


def instance(value: Any, kind: type | tuple[type, ...], function: str, argument: str, expected: str,
             path_hint: str = "") -> None:
    """Refuse ``value`` unless it is a ``kind``; ``path_hint`` is added when a path was given instead."""
    if not isinstance(value, kind):
        raise refuse(function, argument, value, expected, path_hint if isinstance(value, PathLike) else "")


def path(value: Any, function: str, argument: str, expected: str = "a path (str or pathlib.Path)") -> None:
    """Refuse anything but a non-empty str or os.PathLike (an empty one would mean the current folder)."""
    if isinstance(value, bytes):
        raise refuse(function, argument, value, expected, "decode it to str first")
    if not isinstance(value, PathLike):
        raise refuse(function, argument, value, expected)
    if not os.fspath(value).strip():
        raise refuse(function, argument, value, f"{expected}, not an empty one", "use '.' for the current folder")


def mapping(value: Any, function: str, argument: str, expected: str, hint: str = "") -> None:
    """Refuse anything but a Mapping; ``hint`` is shown whatever was given instead."""
    if not isinstance(value, Mapping):
        raise refuse(function, argument, value, expected, hint)


def names(value: Any, function: str, argument: str = "groups") -> tuple[str, ...] | None:
    """Group names: None (all), one name as a str, or an iterable of str names; as a tuple."""
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)  # one group, not its letters
    if isinstance(value, (bytes, Mapping)) or not isinstance(value, Iterable):
        raise refuse(function, argument, value, "a group name (str), a list of names, or None for every group")
    found = tuple(value)
    for item in found:
        if not isinstance(item, str):
            raise refuse(function, argument, item, "a list of group names (str)",
                         f"one item is not a name: {found!r:.120}")
    return found
