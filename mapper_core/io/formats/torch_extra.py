"""Which non-tensor values of a torch state dict go to metadata ``mapper.extra``, within a bound.

A pickle may reach one object by reference any number of times: ``x = [x, x]`` forty times is a
1.9 KB ``torch.save`` file that ``weights_only`` loads fine, but JSON spells every reference out,
so its text would hold 2**40 lists, built by ``json.dumps`` in one C call that no signal
interrupts. And a list nested 5,000 deep is too deep for ``json.dumps`` (a RecursionError).

So every value is measured before anything encodes it, as JSON would spell it out: how many
values it holds (an object reached twice counts twice), how many characters of text (strings
and keys), how deep it nests. Each object is measured once (sizes are remembered by object and
add up without being expanded), so measuring is linear in what the pickle built, whatever the
sharing. Values that fit in what is left of the bound, in state-dict order, go to ``mapper.extra``;
one past it is left behind and named as too large. A value JSON cannot hold at all (bytes, a
non-finite float, a loop, keys of mixed types) is left behind as before, unnamed.

No torch here.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

MAX_VALUES = 1 << 17  # values in all: the pickle's own opcode budget (STEP_FLOOR), one object each at most
MAX_TEXT = 16 * 2**20  # characters of strings and keys in all
MAX_DEPTH = 100  # containers nested in one another (json.dumps recurses once per level)


@dataclass(frozen=True)
class _Size:
    values: int
    text: int
    depth: int

    def capped(self) -> "_Size":  # saturating: a 2**40 count needs no exact big number
        return _Size(min(self.values, MAX_VALUES + 1), min(self.text, MAX_TEXT + 1), min(self.depth, MAX_DEPTH + 1))


@dataclass(frozen=True)
class ExtraValues:
    """What :func:`extra_values` keeps (key → value) and leaves behind as too large (key → why)."""

    kept: dict[str, Any]
    too_large: dict[str, str]


def _leaf(value: Any) -> _Size | str:
    """A value that holds no other, or why JSON cannot hold it."""
    if value is None or isinstance(value, bool):
        return _Size(1, 0, 0)
    if isinstance(value, str):
        return _Size(1, len(value), 0)
    if isinstance(value, int):
        return _Size(1, value.bit_length() // 3 + 1, 0)  # about its digits: the text JSON spells it with
    if isinstance(value, float):
        return _Size(1, 0, 0) if math.isfinite(value) else "a non-finite number"
    return f"a {type(value).__name__}"


def _children(value: Any) -> list[Any] | None:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, (list, tuple)):
        return list(value)
    return None


def _keys(value: dict) -> _Size | str:
    """The text of a dict's keys, or why JSON (with sorted keys) cannot hold them."""
    text = 0
    for k in value:
        size = _leaf(k) if k is None or isinstance(k, (str, int, float)) else f"a key of type {type(k).__name__}"
        if isinstance(size, str):
            return size
        text += size.text
    try:
        sorted(value)
    except TypeError:
        return "keys of mixed types"
    return _Size(0, text, 0)


def _measure(root: Any, sizes: dict[int, _Size | str]) -> _Size | str:
    """``root``'s size as JSON would spell it out (capped past the bound), or why JSON cannot hold it.
    ``sizes`` remembers every object measured (by id: the objects outlive it), so a shared object is
    measured once however often it is reached. Iterative: a value 60,000 deep is no deeper for Python."""
    stack: list[tuple[Any, list[Any] | None]] = [(root, None)]  # (node, its children once entered)
    open_ids: set[int] = set()  # containers being measured: reaching one again is a loop
    while stack:
        node, kids = stack.pop()
        if kids is None:
            if id(node) in sizes:
                continue
            kids = _children(node)
            if kids is None:
                sizes[id(node)] = _leaf(node)
                continue
            open_ids.add(id(node))
            stack.append((node, kids))
            stack.extend((kid, None) for kid in kids if id(kid) not in open_ids and id(kid) not in sizes)
            continue
        open_ids.discard(id(node))
        found = _keys(node) if isinstance(node, dict) else _Size(0, 0, 0)
        if isinstance(found, _Size):
            values, text, depth = 1, found.text, 0
            for kid in kids:
                size = sizes.get(id(kid), "a loop (a value that holds itself)")
                if isinstance(size, str):
                    found = size
                    break
                values, text, depth = values + size.values, text + size.text, max(depth, size.depth)
            else:
                found = _Size(values, text, depth + 1).capped()
        sizes[id(node)] = found
    return sizes[id(root)]


def extra_values(values: dict[str, Any]) -> ExtraValues:
    """The values of ``values`` (a state dict's non-tensor items) JSON can hold within the bound, in
    order; those past what is left of it, with why; the rest (JSON cannot hold them) in neither."""
    sizes: dict[int, _Size | str] = {}
    kept: dict[str, Any] = {}
    too_large: dict[str, str] = {}
    left = _Size(MAX_VALUES, MAX_TEXT, MAX_DEPTH)
    for key, value in values.items():
        size = _measure(value, sizes)
        if isinstance(size, str):
            continue
        if size.depth > MAX_DEPTH:
            too_large[key] = f"nested more than {MAX_DEPTH} deep"
        elif size.values > left.values:
            too_large[key] = (f"more than {left.values:,} values as JSON spells them out{_of(left.values, MAX_VALUES)}: "
                              "an object the pickle shares by reference counts each time it is reached")
        elif size.text > left.text:
            too_large[key] = f"more than {left.text:,} characters of text{_of(left.text, MAX_TEXT)}"
        else:
            try:  # the final word on what JSON holds; bounded now
                json.dumps(value, allow_nan=False, sort_keys=True)
            except (TypeError, ValueError):
                continue
            kept[key] = value
            left = _Size(left.values - size.values, left.text - size.text, MAX_DEPTH)
    return ExtraValues(kept, too_large)


def _of(left: int, bound: int) -> str:
    return "" if left == bound else f" (what the values before it left of the {bound:,} in all)"
