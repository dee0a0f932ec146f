"""What transform steps do to tensors: the torch side of :mod:`mapper_core.rules.transforms`.

The rules layer knows each step's header math; this module applies a chain of steps to a
real tensor. Built-in steps are implemented here (:data:`BUILTIN_OPS`); a plugin's step
carries its own ``apply``. Every op returns a new tensor and never writes into its input.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch

from ..rules.transforms import Step, transform_of
from .torch_dtypes import NAME_TO_TORCH

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
    """Apply every step in order to ``tensor``."""
    for step in steps:
        tensor = op_of(step)(tensor, step.params)
    return tensor
