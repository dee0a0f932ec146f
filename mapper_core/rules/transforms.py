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

from ..errors import MapperError, NotInvertible, PluginError, StepError, called_exit
from ..specs import TensorSpec
from .steps import BUILTIN, Transform, is_widening

__all__ = ["BUILTIN", "LazyTransforms", "NotInvertible", "PluginTransform", "Step", "StepError", "Transform",
           "TransformChainError", "ambiguous", "chain_peak", "chain_spec", "from_spec", "inverse_chain",
           "is_header_only", "is_widening", "known", "make_step", "transform_of"]


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


def from_spec(spec: PluginTransform, plugin: str, family: Mapping[str, Any] | None = None) -> Transform:
    """A plugin's :class:`~mapper_core.plugins.TransformSpec` as a :class:`Transform`.

    What the plugin's code raises is reported with the plugin's name: a ``StepError`` or other
    ``ValueError`` (and a ``TypeError``, e.g. an unexpected parameter) from ``spec()`` means the
    step cannot apply (the plan reports it for the key); anything else is a ``PluginError``.
    """
    label = f"plugin '{plugin}': transform '{spec.name}'"

    def header(s: TensorSpec, p: Mapping[str, Any]) -> TensorSpec:
        if spec.spec is None:
            return s
        out = _plugin_call(label, "spec()", spec.spec, s, **p)
        if not isinstance(out, TensorSpec):
            raise PluginError(f"{label}: spec() returned {type(out).__name__}, expected a TensorSpec")
        return out

    def apply(t: Any, p: Mapping[str, Any]) -> Any:
        before = _version(t)
        out = _plugin_call(label, "apply()", spec.apply, t, **p)
        if before is not None and _version(t) != before:
            # The input may be the source checkpoint's own memory (shared with a tied key, re-read
            # by --verify) or the caller's tensor: a step that edits it corrupts what it did not own.
            raise PluginError(f"{label}: apply() changed its input tensor in place; it must leave its input "
                              "alone and return a new tensor (e.g. `t * 2`, not `t.mul_(2)`; fix the plugin)")
        return out

    inverse = None
    if getattr(spec, "inverse", None) is not None:
        def inverse(s: TensorSpec, p: Mapping[str, Any]) -> list[tuple[str, dict]]:
            pairs = _plugin_call(label, "inverse()", spec.inverse, s, **p)
            try:
                return [(str(n), dict(q or {})) for n, q in pairs]
            except (TypeError, ValueError):
                raise PluginError(f"{label}: inverse() must return [(step name, params), ...], "
                                  f"got {pairs!r:.80}") from None
    schema = getattr(spec, "params_schema", None)
    return Transform(spec.name, spec.description, header, inverse, plugin=plugin, apply=apply,
                     params_schema=dict(schema) if schema is not None else None, family=family)


def _version(t: Any) -> int | None:
    """torch's count of in-place edits to ``t``'s memory (shared by its views); None where there is none.

    ``Tensor._version`` is not public API; it is the one place torch records an in-place edit
    without a copy of the data to compare. Without it the check is skipped."""
    version = getattr(t, "_version", None)
    return version if isinstance(version, int) else None


def _plugin_call(label: str, what: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return function(*args, **kwargs)
    except (StepError, NotInvertible, MapperError):
        raise
    except (ValueError, TypeError) as exc:
        raise StepError(f"{label}: {what}: {exc}") from exc
    except Exception as exc:  # a bug in the plugin: name it; --debug prints the cause's traceback
        raise PluginError(f"{label}: {what} failed: {type(exc).__name__}: {exc}") from exc
    except SystemExit as exc:  # the plugin's failure, not the command's exit; KeyboardInterrupt still stops us
        raise PluginError(f"{label}: {what} {called_exit(exc)}") from exc


def known(plugin_transforms: Mapping[str, Any] | None = None) -> dict[str, Transform]:
    """Built-ins plus plugin transforms (values: TransformSpec or Contribution of one).

    Keys may be ``plugin:name`` (as the host keys them) or bare names. Each plugin transform is
    reachable as ``plugin:name``, and as ``name`` when no built-in step and no other plugin uses
    it; a bare built-in name always means the built-in step.
    """
    table = dict(BUILTIN)
    family: dict[str, Transform] = {}  # filled below, once the table is complete
    bare: dict[str, list[Transform]] = {}
    for key, value in (plugin_transforms or {}).items():
        spec = getattr(value, "value", value)
        plugin = getattr(value, "plugin", None) or (key.split(":", 1)[0] if ":" in key else "plugin")
        if plugin == "mapper_core" and spec.name in BUILTIN:
            table[f"{plugin}:{spec.name}"] = BUILTIN[spec.name]
            continue
        impl = from_spec(spec, plugin, family)
        table[f"{plugin}:{spec.name}"] = impl
        if spec.name not in BUILTIN:
            bare.setdefault(spec.name, []).append(impl)
    for name, impls in bare.items():
        if len(impls) == 1:
            table[name] = impls[0]
    family.update(table)
    return table


def ambiguous(name: str, table: Mapping[str, Transform]) -> list[str]:
    """The qualified names a bare ``name`` might mean when it is not in ``table`` (several plugins use it)."""
    return sorted(k for k in table if ":" in k and k.split(":", 1)[1] == name) if ":" not in name else []


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
            # str(KeyError) adds quotes around the message; take the message itself.
            reason = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            raise TransformChainError(i, step, reason) from None
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
        # The plugin names its own step bare or qualified; either means this transform.
        own = {**(impl.family or {}), step.name: impl, impl.name: impl, f"{impl.plugin}:{impl.name}": impl}
        undo.extend(make_step(n, q, transforms={**BUILTIN, **own}) for n, q in pairs)
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
