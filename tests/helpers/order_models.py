"""Header-only models whose modules only the order of definition tells apart (``mapper suggest``):
``net.0``, ``net.2``, ``net.4`` of an ``nn.Sequential`` against ``out_proj``, ``in_proj``, ``hidden``."""
from __future__ import annotations

from mapper_core.specs import TensorSpec


def linear(path: str, out: int = 8, inp: int = 8) -> dict[str, TensorSpec]:
    # weight before bias, as a state dict keeps them: keys in definition order
    return {f"{path}.weight": TensorSpec("F32", (out, inp)), f"{path}.bias": TensorSpec("F32", (out,))}


def sequential() -> dict[str, TensorSpec]:
    return {**linear("net.0"), **linear("net.2"), **linear("net.4")}


def registered_out_of_order() -> dict[str, TensorSpec]:
    """The same three layers, registered in an order that is not the order they run in."""
    return {**linear("net.out_proj"), **linear("net.in_proj"), **linear("net.hidden")}
