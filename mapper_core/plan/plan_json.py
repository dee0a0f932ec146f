"""The JSON text of a Plan in one pass: ``json.dumps(plan.to_dict(), separators=(",", ":"))``, faster.

A plan of a large model has one ``mapped`` entry per source key. Building a dict per entry and
then encoding it costs more than making the plan; here each entry without transform steps is
formatted straight into its text (strings through the json module's own C escaper, shapes
formatted once per distinct shape), and everything else goes through ``json.dumps`` as
before. The text is byte for byte what ``json.dumps`` of :meth:`Plan.to_dict` gives
(tests/plan/test_plan_json.py).
"""
from __future__ import annotations

import json
from typing import Any, Callable, Sequence

from .plan import Mapped, Plan, _mapped_dict

_ENTRY = '{"source":%s,"target":%s,"rule":%d,"dtype":%s,"shape":%s,"target_shape":%s,"target_dtype":%s}'


BATCH = 10_000  # mapped entries per write: a million-key plan is never one string in memory


def plan_json(plan: Plan, edit: Callable[[dict[str, Any]], None] | None = None) -> str:
    """The compact JSON text of ``plan.to_dict()``; ``edit`` may change that dict first (the CLI adds
    summary fields and the cost), as long as it leaves ``mapped`` alone."""
    pieces: list[str] = []
    write_plan_json(plan, pieces.append, edit)
    return "".join(pieces)


def write_plan_json(plan: Plan, write: Callable[[str], object],
                    edit: Callable[[dict[str, Any]], None] | None = None) -> None:
    """:func:`plan_json`, handed to ``write`` in pieces (the CLI's stdout)."""
    data = plan.to_dict(mapped=False)
    if edit is not None:
        edit(data)
    head, marker, tail = json.dumps(data, separators=(",", ":")).partition('"mapped":[]')
    if not marker:  # to_dict(mapped=False) always holds the key; a safety net, never taken
        data["mapped"] = [_mapped_dict(m) for m in plan.mapped]
        write(json.dumps(data, separators=(",", ":")))
        return
    write(head + '"mapped":[')
    mapped = plan.mapped
    for start in range(0, len(mapped), BATCH):
        write(("," if start else "") + _mapped_text(mapped[start:start + BATCH]))
    write("]" + tail)


def _mapped_text(entries: Sequence[Mapped]) -> str:
    quote = json.encoder.encode_basestring_ascii  # what json.dumps uses for str (the C one when built)
    shapes: dict[Any, str] = {None: "null"}
    dtypes: dict[Any, str] = {None: "null"}
    parts = []
    for m in entries:
        if m.transform or m.out_shape is not None:
            parts.append(json.dumps(_mapped_dict(m), separators=(",", ":")))
            continue
        shape, tshape, dtype, tdtype = m.shape, m.target_shape, m.dtype, m.target_dtype
        s = shapes.get(shape)
        if s is None:
            s = shapes[shape] = json.dumps(list(shape), separators=(",", ":"))
        t = shapes.get(tshape)
        if t is None:
            t = shapes[tshape] = json.dumps(list(tshape), separators=(",", ":"))
        d = dtypes.get(dtype)
        if d is None:
            d = dtypes[dtype] = quote(dtype)
        td = dtypes.get(tdtype)
        if td is None:
            td = dtypes[tdtype] = quote(tdtype)
        parts.append(_ENTRY % (quote(m.source), quote(m.target), m.rule, d, s, t, td))
    return ",".join(parts)
