"""The JSON text of a Plan in one pass: ``json.dumps(plan.to_dict(), separators=(",", ":"))``, faster.

A plan of a large model has one ``mapped`` (or ``skipped``) entry per source key. Building a dict
per entry and then encoding it costs more than making the plan; here each entry without transform
steps, and each skipped one, is formatted straight into its text (strings through the json module's
own C escaper, the rest formatted once per distinct rule, dtypes and shapes, or skip pattern), and
everything else goes through ``json.dumps`` as before. The text is byte for byte what ``json.dumps``
of :meth:`Plan.to_dict` gives (tests/plan/test_plan_json.py).
"""
from __future__ import annotations

import json
from typing import Any, Callable, Sequence

from .plan import Mapped, Plan, Skipped, _mapped_dict

_TAIL = ',"rule":%d,"dtype":%s,"shape":%s,"target_shape":%s,"target_dtype":%s}'  # after "source" and "target"
_LISTS = '"mapped":[],"skipped":[]'  # where the two lists written as text go, in to_dict's order
BATCH = 10_000  # mapped or skipped entries per write: a million-key plan is never one string in memory


def plan_json(plan: Plan, edit: Callable[[dict[str, Any]], None] | None = None) -> str:
    """The compact JSON text of ``plan.to_dict()``; ``edit`` may change that dict first (the CLI adds
    summary fields and the cost), as long as it leaves ``mapped`` and ``skipped`` alone."""
    pieces: list[str] = []
    write_plan_json(plan, pieces.append, edit)
    return "".join(pieces)


def write_plan_json(plan: Plan, write: Callable[[str], object],
                    edit: Callable[[dict[str, Any]], None] | None = None) -> None:
    """:func:`plan_json`, handed to ``write`` in pieces (the CLI's stdout)."""
    data = plan.to_dict(mapped=False, skipped=False)
    if edit is not None:
        edit(data)
    head, marker, tail = json.dumps(data, separators=(",", ":")).partition(_LISTS)
    if not marker:  # to_dict always holds the two lists, side by side; a safety net, never taken
        data.update(mapped=[_mapped_dict(m) for m in plan.mapped], skipped=plan.to_dict(mapped=False)["skipped"])
        write(json.dumps(data, separators=(",", ":")))
        return
    write(head + '"mapped":[')
    _write_batches(plan.mapped, _mapped_text, write)
    write('],"skipped":[')
    _write_batches(plan.skipped, _skipped_text, write)
    write("]" + tail)


def _write_batches(entries: Sequence, text: Callable[[Sequence, dict], str],
                   write: Callable[[str], object]) -> None:
    """``entries`` as ``text`` formats them, comma-separated, :data:`BATCH` at a time."""
    tails: dict[tuple, str] = {}  # shared by the batches
    for start in range(0, len(entries), BATCH):
        write(("," if start else "") + text(entries[start:start + BATCH], tails))


def _mapped_text(entries: Sequence[Mapped], tails: dict[tuple, str]) -> str:
    """The entries' JSON texts, comma-separated; ``tails`` holds everything after the target, formatted
    once per (rule, dtype, shape, target shape, target dtype)."""
    quote = json.encoder.encode_basestring_ascii  # what json.dumps uses for str (the C one when built)
    parts = []
    add = parts.append
    for m in entries:
        source, target, rule, dtype, shape, tshape, tdtype, transform, _, out_shape = m  # a Mapped is a tuple
        if transform or out_shape is not None:
            add(json.dumps(_mapped_dict(m), separators=(",", ":")))
            continue
        key = (rule, dtype, shape, tshape, tdtype)
        tail = tails.get(key)
        if tail is None:
            tail = tails[key] = _TAIL % (rule, quote(dtype), _shape(shape), _shape(tshape),
                                         "null" if tdtype is None else quote(tdtype))
        add('{"source":%s,"target":%s%s' % (quote(source), quote(target), tail))
    return ",".join(parts)


def _skipped_text(entries: Sequence[Skipped], tails: dict[tuple, str]) -> str:
    """The skipped entries' JSON texts, comma-separated; ``tails`` holds everything after the source,
    formatted once per (pattern, rule)."""
    quote = json.encoder.encode_basestring_ascii
    parts = []
    add = parts.append
    for s in entries:
        key = (s.pattern, s.rule)
        tail = tails.get(key)
        if tail is None:
            tail = tails[key] = ',"pattern":%s,"rule":%s}' % (json.dumps(s.pattern), json.dumps(s.rule))
        add('{"source":%s%s' % (quote(s.source), tail))
    return ",".join(parts)


def _shape(shape: tuple[int, ...] | None) -> str:
    return "null" if shape is None else json.dumps(list(shape), separators=(",", ":"))
