"""What plugins contribute (the values hooks return) and the host's table of who contributed what.

Plugin authors import :class:`RuleSetSource`, :class:`ModelFactory` and :class:`TransformSpec`
from here. The host builds one :class:`Contributions` per plugin manager with :func:`collect`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import as_file
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection, Generic, Mapping, TypeVar

from ..io.formats.base import Format
from ..rules.load import load_rules

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    import pluggy

    from ..rules.ruleset import RuleSet
    from ..specs import TensorSpec

T = TypeVar("T")


def _check_name(kind: str, name: object) -> None:
    # ':' separates plugin from name in 'plugin:name', so it cannot appear in a name.
    if not isinstance(name, str) or not name or ":" in name or name != name.strip():
        raise ValueError(f"{kind} name {name!r}: expected a non-empty string without ':' or surrounding spaces")


@dataclass(frozen=True)
class RuleSetSource:
    """A named rule set: a packaged rules file (``path``) or a zero-argument ``loader``.

    Only the name and description are needed to list it; the file is read by :meth:`load`.
    """

    name: str
    description: str = ""
    path: Traversable | Path | None = None
    loader: Callable[[], "RuleSet"] | None = None

    def __post_init__(self) -> None:
        _check_name("rule set", self.name)
        if isinstance(self.path, str):
            object.__setattr__(self, "path", Path(self.path))
        if (self.path is None) == (self.loader is None):
            raise ValueError(f"rule set '{self.name}': give exactly one of path= or loader=")

    def load(self, transforms: Mapping[str, Any] | None = None) -> "RuleSet":
        """Read the rules file (or call the loader). Raises RulesError for an invalid file.

        ``transforms``: plugin transforms its ``transform:`` steps may name (see ``load_rules``).
        """
        if self.loader is not None:
            return self.loader()
        # as_file gives a real path even for a package imported from a zip.
        with as_file(self.path) as real:  # type: ignore[arg-type]
            return load_rules(real, transforms=transforms)


@dataclass(frozen=True)
class ModelFactory:
    """A named model builder. ``build(**kwargs)`` returns an ``nn.Module``; it imports torch, not the hook.

    ``input_adapter(model, inputs)`` (optional) runs the model on ``mapper verify``'s inputs (a
    list of tensors) when ``model(*inputs)`` cannot, e.g. a model with no ``forward``, or one
    that takes its inputs in another layout; its return value is ignored.
    """

    name: str
    build: Callable[..., Any]
    description: str = ""
    input_adapter: Callable[[Any, Any], Any] | None = None

    def __post_init__(self) -> None:
        _check_name("model", self.name)


@dataclass(frozen=True)
class TransformSpec:
    """A named tensor transform: ``apply(tensor, **params)`` returns the new tensor.

    ``spec(tensor_spec, **params)`` says what the transform does to dtype and shape, so plans
    can be made from headers alone; None means it keeps both. ``inverse(tensor_spec, **params)``
    (optional; given the spec the step was applied to) returns the steps that undo it exactly,
    as ``[(name, params), ...]``, or raises ``mapper_core.errors.NotInvertible``; without
    it the transform is reported as not invertible by ``mapper export``.
    """

    name: str
    apply: Callable[..., Any]
    description: str = ""
    spec: Callable[..., "TensorSpec"] | None = None
    inverse: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        _check_name("transform", self.name)


@dataclass(frozen=True)
class Contribution(Generic[T]):
    """One named value and the plugin that contributed it."""

    plugin: str
    name: str
    value: T

    @property
    def qualified(self) -> str:
        return f"{self.plugin}:{self.name}"


# hook name → (what the CLI calls it, the value type, the field of Contributions)
HOOKS: dict[str, tuple[str, type, str]] = {
    "mapper_rule_sets": ("rule set", RuleSetSource, "rule_sets"),
    "mapper_models": ("model", ModelFactory, "models"),
    "mapper_formats": ("format", Format, "formats"),
    "mapper_transforms": ("transform", TransformSpec, "transforms"),
}


@dataclass(frozen=True)
class HookFailure:
    """A hook implementation that raised, returned the wrong type, or reused a taken name.

    What it would have contributed (all of it, or just the clashing item) was left out.
    """

    plugin: str
    hook: str
    error: str


@dataclass(frozen=True)
class Contributions:
    """Everything the registered plugins contribute, with names unique across plugins."""

    rule_sets: Mapping[str, Contribution[RuleSetSource]]  # keyed by 'plugin:name'
    models: Mapping[str, Contribution[ModelFactory]]
    formats: tuple[Format, ...]  # built-in formats first
    transforms: Mapping[str, Contribution[TransformSpec]]
    format_plugins: Mapping[str, str] = field(default_factory=dict)  # format name → plugin
    failures: tuple[HookFailure, ...] = ()  # contributions left out, and why

    def by_plugin(self) -> dict[str, dict[str, list[str]]]:
        """plugin name → field name → names it contributes (rule sets by qualified name)."""
        table: dict[str, dict[str, list[str]]] = {}

        def add(plugin: str, kind: str, name: str) -> None:
            table.setdefault(plugin, {k: [] for k in ("rule_sets", "models", "formats", "transforms")})[kind].append(name)

        for qualified, c in self.rule_sets.items():
            add(c.plugin, "rule_sets", qualified)
        for c in self.models.values():
            add(c.plugin, "models", c.name)
        for f in self.formats:
            add(self.format_plugins[f.name], "formats", f.name)
        for c in self.transforms.values():
            add(c.plugin, "transforms", c.name)
        return table

    def rule_set_named(self, spec: str) -> Contribution[RuleSetSource] | None:
        """The rule set for ``plugin:name``, or for a bare ``name`` that only one plugin uses."""
        if spec in self.rule_sets:
            return self.rule_sets[spec]
        if ":" not in spec:
            found = [c for c in self.rule_sets.values() if c.name == spec]
            if len(found) == 1:
                return found[0]
        return None


def collect(pm: "pluggy.PluginManager", first: Collection[str] = ()) -> Contributions:
    """Call every hook implementation and remember who contributed what.

    ``first`` names plugins (the built-in ones) whose contributions come before all others.
    One plugin's mistake never hides the others' contributions: a hook that raises or returns
    the wrong type loses that plugin's values for that hook, and a name already taken by an
    earlier plugin loses the later value; each is recorded in ``Contributions.failures``.
    """
    gathered: dict[str, list[Contribution[Any]]] = {}
    failures: list[HookFailure] = []
    for hook_name, (label, value_type, kind) in HOOKS.items():
        impls = [i for i in getattr(pm.hook, hook_name).get_hookimpls() if not (i.wrapper or i.hookwrapper)]
        impls.sort(key=lambda i: i.plugin_name not in first)  # stable: registration order otherwise
        owners: dict[str, str] = {}
        items: list[Contribution[Any]] = []
        for impl in impls:
            plugin = impl.plugin_name
            values, error = _call(impl.function, hook_name, value_type)
            if error is not None:
                failures.append(HookFailure(plugin, hook_name, f"{error}; its {label}s were left out, fix the plugin or leave it out"))
                continue
            for value in values:
                name = value.name
                if name in owners:
                    other = owners[name]
                    who = f"plugin '{plugin}' (twice)" if other == plugin else f"plugins '{other}' and '{plugin}'"
                    failures.append(HookFailure(plugin, hook_name, (
                        f"{label} '{name}' is contributed by {who}; names must be unique, so the one from "
                        f"'{plugin}' was left out: rename one, or leave one plugin out "
                        "(uninstall it, or drop it from MAPPER_PLUGINS / --plugin)"
                    )))
                    continue
                owners[name] = plugin
                items.append(Contribution(plugin, name, value))
        gathered[kind] = items

    return Contributions(
        rule_sets={c.qualified: c for c in gathered["rule_sets"]},
        models={c.name: c for c in gathered["models"]},
        formats=tuple(c.value for c in gathered["formats"]),
        transforms={c.name: c for c in gathered["transforms"]},
        format_plugins={c.name: c.plugin for c in gathered["formats"]},
        failures=tuple(failures),
    )


def _call(function: Callable[[], Any], hook_name: str, value_type: type) -> tuple[list[Any], str | None]:
    """The values one hook implementation returns, or an error saying why none can be used."""
    try:
        result = function()
    except (Exception, SystemExit) as exc:  # someone else's code; KeyboardInterrupt still stops us
        return [], f"hook {hook_name} failed: {type(exc).__name__}: {exc}"
    if result is None:
        return [], None
    if not isinstance(result, (list, tuple)):
        return [], f"hook {hook_name} returned {type(result).__name__}; expected a list of {value_type.__name__}"
    for value in result:
        if not isinstance(value, value_type):
            return [], (
                f"hook {hook_name} returned an item of type {type(value).__name__}; expected {value_type.__name__}"
            )
    return list(result), None
