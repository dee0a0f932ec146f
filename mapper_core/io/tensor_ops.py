"""What transform steps do to tensors: the torch side of :mod:`mapper_core.rules.transforms`.

The rules layer knows each step's header math; this module applies a chain of steps to a
real tensor. Built-in steps are implemented here (:data:`BUILTIN_OPS`); a plugin's step
carries its own ``apply``. Every op returns a new tensor and never writes into its input.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch

from ..rules.transforms import Step, transform_of
from ..errors import ExpansionError, PluginError
from .torch_dtypes import NAME_TO_TORCH, spec_of

Op = Callable[[torch.Tensor, Mapping[str, Any]], torch.Tensor]


def _inflate(t: torch.Tensor, p: Mapping[str, Any]) -> torch.Tensor:
    size, mode = p["size"], p.get("mode", "repeat")
    new_axis = p.get("new_axis", True)
    d = p["dim"] % (t.dim() + 1) if new_axis else p["dim"] % t.dim()
    one = t.unsqueeze(d) if new_axis else t
    shape = list(one.shape)
    shape[d] = size
    if mode == "repeat":
        # Each of the `size` copies gets 1/size, so a temporally constant input gives the 2D response.
        return (one / size).expand(shape).contiguous()
    out = torch.zeros(shape, dtype=t.dtype)
    out.narrow(d, size // 2, 1).copy_(one)
    return out


def _pad(t: torch.Tensor, p: Mapping[str, Any]) -> torch.Tensor:
    d = p["dim"] % t.dim()
    parts = []
    for n in (p.get("before", 0), p.get("after", 0)):
        shape = list(t.shape)
        shape[d] = n
        parts.append(torch.full(shape, p.get("value", 0), dtype=t.dtype))
    return torch.cat([parts[0], t, parts[1]], dim=d)


BUILTIN_OPS: dict[str, Op] = {
    "reshape": lambda t, p: t.reshape(list(p["shape"])),
    "unsqueeze": lambda t, p: t.unsqueeze(p["dim"]),
    "squeeze": lambda t, p: t.squeeze(p["dim"]),
    "transpose": lambda t, p: t.transpose(p["dim0"], p["dim1"]).contiguous(),
    "permute": lambda t, p: t.permute(list(p["dims"])).contiguous(),
    "inflate": _inflate,
    "narrow": lambda t, p: t.narrow(p["dim"], p["start"], p["length"]).contiguous(),
    "pad": _pad,
    "cast": lambda t, p: t.to(NAME_TO_TORCH[p["dtype"]]),
    "scale": lambda t, p: t * p["factor"],
}


def op_of(step: Step) -> Op:
    """The tensor function for ``step``: the plugin's own ``apply``, else the built-in op."""
    kind = transform_of(step)
    return kind.apply if kind.apply is not None else BUILTIN_OPS[kind.name]


def apply_chain(steps: Sequence[Step], tensor: torch.Tensor) -> torch.Tensor:
    """Apply every step in order to ``tensor``.

    A plugin step's result is checked against the spec its own ``spec()`` announced, so a
    mismatch names the plugin and the step instead of surfacing later as a confusing write error.
    """
    for step in steps:
        kind = transform_of(step)
        try:
            out = op_of(step)(tensor, step.params)
        except (MemoryError, RuntimeError, OverflowError, TypeError) as exc:
            if not _out_of_memory(exc):
                raise
            made = kind.spec(spec_of(tensor), step.params)
            raise ExpansionError(
                f"transform step {step} on a {spec_of(tensor).dtype} tensor of shape {list(tensor.shape)} makes "
                f"{made.nbytes:,} bytes ({list(made.shape)}), and this machine could not allocate them "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); check the step's parameters") from None
        if kind.apply is not None:
            _check_plugin_result(kind, step, tensor, out)
        tensor = out
    return tensor


def _check_plugin_result(kind: Any, step: Step, before: torch.Tensor, after: Any) -> None:
    label = f"plugin '{kind.plugin}': transform '{kind.name}' ({step})"
    if not isinstance(after, torch.Tensor):
        raise PluginError(f"{label}: apply() returned {type(after).__name__}; expected a torch.Tensor")
    expected = kind.spec(spec_of(before), step.params)
    got = spec_of(after)
    if got != expected:
        raise PluginError(f"{label}: apply() returned {got.dtype} {list(got.shape)} but its spec() says "
                          f"{expected.dtype} {list(expected.shape)} for a {spec_of(before).dtype} "
                          f"{list(before.shape)} input; apply() and spec() must agree (fix the plugin)")


def _out_of_memory(exc: BaseException) -> bool:
    """An allocation the size of which the machine cannot give: Python's MemoryError, torch's
    allocator failing, or a size past what torch's C++ sizes can hold."""
    text = str(exc)
    return isinstance(exc, MemoryError) or "can't allocate memory" in text or "not enough memory" in text \
        or "Overflow when unpacking long" in text or "out of memory" in text.lower()
