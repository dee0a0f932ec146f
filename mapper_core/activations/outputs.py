"""The models' final outputs (what each run returned), made comparable: every tensor in the
returned value (a tensor, or tuples, lists and dicts of them) in order, with its place in it.

Two outputs are comparable when they hold tensors at the same places with the same shapes, where
shapes that differ only by sizes of 1 count as the same (a Linear's ``[2, 10]`` and a 1×1
convolution's ``[2, 10, 1, 1]``): the values are then compared one to one, as a module pair's are.
"""
from __future__ import annotations

from typing import Any

import torch

from ..specs import format_shape

Leaves = list[tuple[str, torch.Tensor]]


def leaves(output: Any, place: str = "") -> Leaves:
    """Every tensor in ``output`` with its place (``''``, ``[0]``, ``['logits']``), in order."""
    if isinstance(output, torch.Tensor):
        return [(place, output)]
    if isinstance(output, (tuple, list)):
        return [leaf for i, item in enumerate(output) for leaf in leaves(item, f"{place}[{i}]")]
    if isinstance(output, dict):
        return [leaf for k, item in output.items() for leaf in leaves(item, f"{place}[{k!r}]")]
    return []  # None, numbers, strings: nothing to compare


def describe(found: Leaves) -> str:
    """``a tensor [2, 10]``, ``2 tensors ([0] [2, 10], [1] [2, 5])`` or ``no tensor``."""
    if not found:
        return "no tensor"
    if len(found) == 1 and not found[0][0]:
        return f"a tensor {format_shape(tuple(found[0][1].shape))}"
    shown = ", ".join(f"{place or '(whole)'} {format_shape(tuple(t.shape))}" for place, t in found[:4])
    more = f", and {len(found) - 4} more" if len(found) > 4 else ""
    return f"{len(found)} tensors ({shown}{more})"


def _squeezed(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(d for d in t.shape if d != 1)


def not_comparable(a: Leaves, b: Leaves) -> str:
    """Why the two outputs cannot be compared value by value, or ``''`` when they can."""
    if not a or not b:
        which = " and ".join(n for n, x in (("the source model's", a), ("the target model's", b)) if not x)
        return f"{which} run returned no tensor"
    same = len(a) == len(b) and all(pa == pb and _squeezed(ta) == _squeezed(tb) for (pa, ta), (pb, tb) in zip(a, b))
    if same:
        return ""
    return f"the source model returns {describe(a)} and the target model {describe(b)}"


def flat(found: Leaves) -> torch.Tensor:
    """All values as one float64 vector (a copy: the caller's tensors are left as they are)."""
    return torch.cat([t.detach().reshape(-1).to(torch.float64) for _, t in found])
