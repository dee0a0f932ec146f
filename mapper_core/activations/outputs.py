"""The models' final outputs (what each run returned), made comparable: every tensor in the
returned value (a tensor, or tuples, lists, dicts, named tuples and dataclass instances of them)
in order, with its place in it.

Two outputs are comparable when they hold tensors at the same places with the same shapes, where
shapes that differ only by sizes of 1 count as the same (a Linear's ``[2, 10]`` and a 1×1
convolution's ``[2, 10, 1, 1]``): the values are then compared one to one, as a module pair's are.
A place is named (a dict's key, a field) or only a position (a tuple's or list's item); a name
matches the same name, and a position where the other side has no name matches the same
position: a ``(logits, hidden)`` tuple against ``Output(logits=..., hidden=...)``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import torch

from ..specs import format_shape


class Leaf(NamedTuple):
    """One tensor of an output: its place as written (``['logits']``, ``.hidden[0]``), the tensor,
    and the steps to it, each (name or None, position)."""

    place: str
    tensor: torch.Tensor
    steps: tuple[tuple[Any, int], ...]


Leaves = list[Leaf]


def leaves(output: Any) -> Leaves:
    """Every tensor in ``output`` with its place, in order. Each container is entered once, so an
    output that holds itself ends; nesting of any depth is walked without recursion."""
    found: Leaves = []
    stack: list[tuple[Any, str, tuple[tuple[Any, int], ...]]] = [(output, "", ())]
    seen: set[int] = set()
    while stack:
        node, place, steps = stack.pop()
        if isinstance(node, torch.Tensor):
            found.append(Leaf(place, node, steps))
            continue
        items = _items(node)
        if items is None or id(node) in seen:
            continue  # None, numbers, strings: nothing to compare
        seen.add(id(node))
        children = [(item, place + written, steps + ((name, i),)) for i, (name, written, item) in enumerate(items)]
        stack.extend(reversed(children))
    return found


def _items(node: Any) -> list[tuple[Any, str, Any]] | None:
    """(name or None, how the step is written, item) for each item of a container; None for a leaf."""
    if isinstance(node, dict):  # also transformers' ModelOutput, a dict and a dataclass
        return [(k, f"[{k!r}]", v) for k, v in node.items()]
    if isinstance(node, tuple) and isinstance(getattr(type(node), "_fields", None), tuple):  # a named tuple
        return [(name, f".{name}", v) for name, v in zip(type(node)._fields, node)]
    if isinstance(node, (tuple, list)):
        return [(None, f"[{i}]", v) for i, v in enumerate(node)]
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return [(f.name, f".{f.name}", getattr(node, f.name, None)) for f in dataclasses.fields(node)]
    return None


def describe(found: Leaves) -> str:
    """``a tensor [2, 10]``, ``2 tensors ([0] [2, 10], [1] [2, 5])`` or ``no tensor``."""
    if not found:
        return "no tensor"
    if len(found) == 1 and not found[0].place:
        return f"a tensor {format_shape(tuple(found[0].tensor.shape))}"
    shown = ", ".join(f"{x.place or '(whole)'} {format_shape(tuple(x.tensor.shape))}" for x in found[:4])
    more = f", and {len(found) - 4} more" if len(found) > 4 else ""
    return f"{len(found)} tensors ({shown}{more})"


def _squeezed(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(d for d in t.shape if d != 1)


def _same_place(a: Leaf, b: Leaf) -> bool:
    return len(a.steps) == len(b.steps) and all(
        name_a == name_b if name_a is not None and name_b is not None else i_a == i_b
        for (name_a, i_a), (name_b, i_b) in zip(a.steps, b.steps))


def not_comparable(a: Leaves, b: Leaves) -> str:
    """Why the two outputs cannot be compared value by value, or ``''`` when they can."""
    if not a or not b:
        which = " and ".join(n for n, x in (("the source model's", a), ("the target model's", b)) if not x)
        return f"{which} run returned no tensor"
    same = len(a) == len(b) and all(_same_place(x, y) and _squeezed(x.tensor) == _squeezed(y.tensor)
                                    for x, y in zip(a, b))
    if same:
        return ""
    return f"the source model returns {describe(a)} and the target model {describe(b)}"


def flat(found: Leaves) -> torch.Tensor:
    """All values as one float64 vector (a copy: the caller's tensors are left as they are)."""
    return torch.cat([x.tensor.detach().reshape(-1).to(torch.float64) for x in found])
