"""What ``torch.onnx.export`` (the TorchScript-based exporter) does to a module's parameter names.

It names an initializer after the parameter it holds, with two exceptions:

- **Folded constants.** With ``do_constant_folding=True`` (its default) it computes what it can
  ahead of time and stores the result as a new initializer named ``onnx::Op_N``: a model exported
  in eval mode (the default) has each BatchNorm fused into the convolution before it (both
  parameters gone, a new weight and bias in their place), and a weight a ``MatMul`` uses
  transposed is stored transposed. These are not the module's parameters under other names, so
  no rule can give them ``state_dict`` names: :func:`folding_note` says so and what to do.
- **Equal initializers stored once.** Two parameters holding equal values (a fresh BatchNorm's
  ``running_var`` and ``weight``, all ones; zero biases) are stored once, and an ``Identity`` node
  gives the other its name. :func:`identity_copies` finds those names, so they are read too.
"""
from __future__ import annotations

from pathlib import Path

import onnx

FOLDED_PREFIX = "onnx::"
_SHOWN = 3


def identity_copies(graph: onnx.GraphProto, initializers: set[str]) -> dict[str, str]:
    """Names the main graph's ``Identity`` nodes give an initializer (or such a name) → the
    initializer holding the values, for names that are not initializers themselves."""
    copies: dict[str, str] = {}
    for node in graph.node:
        if node.op_type != "Identity" or len(node.input) != 1 or len(node.output) != 1:
            continue
        source, name = node.input[0], node.output[0]
        source = copies.get(source, source)
        if source in initializers and name and name not in initializers and name not in copies:
            copies[name] = source
    return copies


def folding_note(path: Path, model: onnx.ModelProto, keys: list[str]) -> str | None:
    """Why ``keys`` named ``onnx::...`` in a model torch exported have no parameter names, and what
    to do; None when there are none (or another producer made the model)."""
    folded = [k for k in keys if k.startswith(FOLDED_PREFIX)]
    if not folded or model.producer_name != "pytorch":
        return None
    ops = {n.op_type for n in model.graph.node}
    fused = "Conv" in ops and "BatchNormalization" not in ops and any(k.startswith("onnx::Conv_") for k in folded)
    how = ("each BatchNorm fused into the convolution before it, as an export in eval mode does"
           if fused else "e.g. a BatchNorm fused into a convolution, a weight stored transposed")
    shown = ", ".join(f"'{k}'" for k in folded[:_SHOWN]) + (", ..." if len(folded) > _SHOWN else "")
    return (f"{path}: {len(folded)} of {len(keys)} initializers ({shown}) are constants torch.onnx.export "
            f"computed with do_constant_folding=True, its default ({how}): they are not the module's "
            "parameters, so no rule gives them state_dict names, and the rule set onnx:torch-export leaves "
            "them behind. To read every parameter under its state_dict name, export the model again with "
            "torch.onnx.export(..., do_constant_folding=False)")
