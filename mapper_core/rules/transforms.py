"""Transform steps that a rule applies on the way from source to target, as header math.

A rule's ``transform:`` list becomes a tuple of :class:`Step` values. Every step kind knows
what it does to a header (:meth:`Transform.spec`, so plans are made from headers alone) and
its inverse given the spec it was applied to (or why there is none). What a step does to a
tensor is the torch side's business: :func:`mapper_core.io.tensor_ops.apply_chain`.

Built-in steps: reshape, unsqueeze, squeeze, transpose, permute, inflate, narrow, pad,
cast, scale. Plugins add more through the ``mapper_transforms`` hook
(:class:`mapper_core.plugins.registry.TransformSpec`). Inverses are exact (bit for bit) on a round
trip; ``pad`` and ``inflate`` with ``mode: center`` are left inverses: exporting drops
whatever ended up in the entries they added.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from ..errors import NotInvertible, StepError
from ..specs import TensorSpec
from .steps import BUILTIN, Transform, is_widening

__all__ = ["BUILTIN", "LazyTransforms", "NotInvertible", "PluginTransform", "Step", "StepError", "Transform",
           "TransformChainError", "chain_peak", "chain_spec", "from_spec", "inverse_chain", "is_header_only", "is_widening",
           "known", "make_step", "transform_of"]


class PluginTransform(Protocol):
    """What this layer needs of a plugin's transform (``mapper_core.plugins.TransformSpec``
    has this shape; rules/ sits below plugins/ and does not import it)."""

    name: str
    description: str
    apply: Callable[..., Any]
    spec: Callable[..., TensorSpec] | None
    inverse: Callable[..., Any] | None


@dataclass(frozen=True)
class Step:
    """One step of a rule's ``transform:`` list: a transform name, its params, where it was written."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    impl: Transform | None = field(default=None, compare=False, repr=False)
    line: int | None = field(default=None, compare=False)

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in self.params.items())
        return f"{self.name}({args})"

    def to_dict(self) -> dict[str, Any]:
        return {self.name: dict(self.params)}


class TransformChainError(ValueError):
    """A step of a chain failed; ``index`` is the step's position (0-based) in the rule's list."""

    def __init__(self, index: int, step: Step, message: str):
        super().__init__(f"transform step {index + 1} ({step}): {message}")
        self.index, self.step, self.reason = index, step, message


def from_spec(spec: PluginTransform, plugin: str) -> Transform:
    """A plugin's :class:`~mapper_core.plugins.TransformSpec` as a :class:`Transform`."""
    def header(s: TensorSpec, p: Mapping[str, Any]) -> TensorSpec:
        if spec.spec is None:
            return s
        out = spec.spec(s, **p)
        if not isinstance(out, TensorSpec):
            raise StepError(f"plugin '{plugin}': transform '{spec.name}' spec() returned "
                            f"{type(out).__name__}, expected a TensorSpec")
        return out

    inverse = None
    if getattr(spec, "inverse", None) is not None:
        inverse = lambda s, p: [(n, dict(q)) for n, q in spec.inverse(s, **p)]  # noqa: E731
    return Transform(spec.name, spec.description, header, inverse, plugin=plugin,
                     apply=lambda t, p: spec.apply(t, **p))


def known(plugin_transforms: Mapping[str, Any] | None = None) -> dict[str, Transform]:
    """Built-ins plus plugin transforms (values: TransformSpec or Contribution of one)."""
    table = dict(BUILTIN)
    for name, value in (plugin_transforms or {}).items():
        if name in table:
            continue  # the host refuses duplicate names; built-ins are contributed as themselves
        spec = getattr(value, "value", value)
        table[name] = from_spec(spec, getattr(value, "plugin", "plugin"))
    return table


def make_step(name: str, params: Mapping[str, Any] | None = None, *,
              transforms: Mapping[str, Transform] | None = None, line: int | None = None) -> Step:
    """A resolved step; KeyError naming the known steps when ``name`` is unknown."""
    table = transforms if transforms is not None else BUILTIN
    if name not in table:
        raise KeyError(f"unknown transform step '{name}'; known steps: {', '.join(sorted(table))}")
    return Step(name, dict(params or {}), table[name], line)


def transform_of(step: Step) -> Transform:
    """The step kind behind ``step`` (built-in when the step was made without one)."""
    if step.impl is not None:
        return step.impl
    return make_step(step.name, step.params).impl  # type: ignore[return-value]


def chain_spec(steps: Sequence[Step], spec: TensorSpec) -> TensorSpec:
    """The spec after every step, from headers alone; TransformChainError names the failing step."""
    for i, step in enumerate(steps):
        try:
            spec = transform_of(step).spec(spec, step.params)
        except (StepError, KeyError, TypeError) as exc:
            raise TransformChainError(i, step, str(exc).strip("'\"")) from None
    return spec


def chain_peak(steps: Sequence[Step], spec: TensorSpec) -> TensorSpec:
    """The largest spec (in bytes) a valid chain makes on the way, the input included: a step that
    pads a tensor to a gigabyte allocates it even if a later step narrows it back."""
    peak = spec
    for step in steps:
        spec = transform_of(step).spec(spec, step.params)
        if spec.nbytes > peak.nbytes:
            peak = spec
    return peak


def is_header_only(steps: Sequence[Step]) -> bool:
    """True when a contiguous tensor's bytes are unchanged by the chain (only its shape changes)."""
    return all(transform_of(s).header_only for s in steps)


def inverse_chain(steps: Sequence[Step], spec: TensorSpec) -> tuple[Step, ...]:
    """The steps that undo ``steps`` applied to a tensor of ``spec``, in the order to apply them.

    Raises TransformChainError (reason: not invertible) naming the first step without an exact inverse.
    """
    specs = [spec]
    for step in steps:
        specs.append(chain_spec([step], specs[-1]))
    undo: list[Step] = []
    for i in reversed(range(len(steps))):
        step, impl = steps[i], transform_of(steps[i])
        if impl.inverse is None:
            raise TransformChainError(i, step, f"not invertible: transform '{step.name}' "
                                               f"(from plugin '{impl.plugin}') declares no inverse")
        try:
            pairs = impl.inverse(specs[i], step.params)
        except NotInvertible as exc:
            raise TransformChainError(i, step, f"not invertible: {exc}") from None
        undo.extend(make_step(n, q, transforms={**BUILTIN, step.name: impl}) for n, q in pairs)
    return tuple(undo)


class LazyTransforms(Mapping):
    """Plugin transforms looked up on first use (so plain rules files start no plugins)."""

    def __init__(self, load: Callable[[], Mapping[str, Any]]):
        self._load, self._table = load, None

    def _get(self) -> Mapping[str, Any]:
        if self._table is None:
            self._table = dict(self._load())
        return self._table

    def __getitem__(self, name: str) -> Any:
        return self._get()[name]

    def __iter__(self):
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())
