"""Export without source specs: a rule's source spec worked out from its target spec, step by step.

Each built-in transform step says what its input was from its output (``transpose`` swaps the
dims back, ``pad`` takes the padding off, ...); a plugin step is run through its own inverse. A
step that cannot say (``reshape``, ``cast``) or has no exact inverse (``narrow``) is refused with
:class:`Refuse`, and the export then asks for the source specs.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from ..rules.ruleset import Rule
from ..rules.transforms import NotInvertible, Step, TransformChainError, chain_spec, inverse_chain
from ..specs import TensorSpec


class Refuse(Exception):
    """A transform step whose input spec cannot be worked out from its output."""


def _plugin_backward(step: Step) -> Callable[[TensorSpec, Mapping[str, Any]], TensorSpec]:
    """A plugin step's input spec, guessed by applying its inverse to the output's spec.

    The guess is checked forwards afterwards (the whole chain must give the output again), so a
    step whose inverse depends on the input's shape in another way is refused, not mis-planned.
    """
    def back(out: TensorSpec, params: Mapping[str, Any]) -> TensorSpec:
        try:
            return chain_spec(inverse_chain((step,), out), out)
        except TransformChainError as exc:
            raise NotInvertible(exc.reason) from None

    return back


def backward_spec(rule: Rule, out: TensorSpec) -> TensorSpec:
    """The source spec whose transform gives ``out``, worked out step by step from the end."""
    spec = out
    for k in reversed(range(len(rule.transform))):
        step = rule.transform[k]
        back = _BACKWARD.get(step.name)
        if step.impl is not None and step.impl.plugin != "mapper_core":
            back = _plugin_backward(step) if step.impl.inverse is not None else None
        if back is None:
            raise Refuse(f"transform step {k + 1} ({step}) does not say what its input was; "
                          "pass the source specs (--source-specs) so the input shape and dtype are known")
        try:
            spec = back(spec, step.params)
        except NotInvertible as exc:
            raise Refuse(f"transform step {k + 1} ({step}): not invertible: {exc}") from None
    try:
        if chain_spec(rule.transform, spec) != out:
            raise Refuse(f"its transform does not give {out.dtype} {list(out.shape)} from any source spec")
    except TransformChainError as exc:
        raise Refuse(str(exc)) from None
    return spec


def _drop(shape: tuple, d: int) -> tuple:
    return shape[:d] + shape[d + 1:]


def _b_unsqueeze(s: TensorSpec, p: Mapping) -> TensorSpec:
    d = p["dim"] % len(s.shape)
    return TensorSpec(s.dtype, _drop(s.shape, d))


def _b_squeeze(s: TensorSpec, p: Mapping) -> TensorSpec:
    d = p["dim"] % (len(s.shape) + 1)
    return TensorSpec(s.dtype, s.shape[:d] + (1,) + s.shape[d:])


def _b_transpose(s: TensorSpec, p: Mapping) -> TensorSpec:
    shape = list(s.shape)
    a, b = p["dim0"] % len(shape), p["dim1"] % len(shape)
    shape[a], shape[b] = shape[b], shape[a]
    return TensorSpec(s.dtype, tuple(shape))


def _b_permute(s: TensorSpec, p: Mapping) -> TensorSpec:
    shape = [0] * len(s.shape)
    for i, d in enumerate(p["dims"]):
        shape[d] = s.shape[i]
    return TensorSpec(s.dtype, tuple(shape))


def _b_pad(s: TensorSpec, p: Mapping) -> TensorSpec:
    shape = list(s.shape)
    d = p["dim"] % len(shape)
    shape[d] -= p.get("before", 0) + p.get("after", 0)
    return TensorSpec(s.dtype, tuple(shape))


def _b_inflate(s: TensorSpec, p: Mapping) -> TensorSpec:
    d = p["dim"] % len(s.shape)
    shape = _drop(s.shape, d) if p.get("new_axis", True) else s.shape[:d] + (1,) + s.shape[d + 1:]
    return TensorSpec(s.dtype, shape)


def _b_narrow(s: TensorSpec, p: Mapping) -> TensorSpec:
    raise NotInvertible("narrow drops the entries outside the kept range, so they cannot be restored")


_BACKWARD = {
    "narrow": _b_narrow,
    "unsqueeze": _b_unsqueeze, "squeeze": _b_squeeze, "transpose": _b_transpose, "permute": _b_permute,
    "pad": _b_pad, "inflate": _b_inflate, "scale": lambda s, p: s,
    # reshape and cast: the input shape / dtype cannot be read off the output; source specs needed
}
