"""What plugins contribute (the values hooks return) and the host's table of who contributed what.

Plugin authors import :class:`RuleSetSource`, :class:`ModelFactory` and :class:`TransformSpec`
from here. The host builds one :class:`Contributions` per plugin manager with :func:`collect`.
"""
from __future__ import annotations

import inspect
import traceback
from dataclasses import dataclass, field
from importlib.resources import as_file
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection, Mapping

from ..io.formats.base import Format
from ..io.formats.guarded import guard_format
from ..rules.load import load_rules
from .scoped import Contribution, ScopedNames

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    import pluggy

    from ..rules.ruleset import RuleSet
    from ..specs import TensorSpec



def name_problem(kind: str, name: object) -> str | None:
    """Why ``name`` cannot name a contribution, or None. ':' separates plugin from name in 'plugin:name'."""
    if not isinstance(name, str) or not name or ":" in name or name != name.strip():
        return f"{kind} name {name!r}: expected a non-empty string without ':' or surrounding spaces"
    return None


@dataclass(frozen=True)
class RuleSetSource:
    """A named rule set: a packaged rules file (``path``) or a ``loader`` callable.

    Only the name and description are needed to list it; the file is read by :meth:`load`.
    ``loader()`` returns a ``RuleSet``; a loader that accepts a ``transforms`` keyword gets the
    loaded plugins' transforms, to pass on to ``parse_rules(text, name, transforms=transforms)``.
    A source with a bad name or with both (or neither) of ``path`` and ``loader`` is left out
    by the host with a message; the plugin's other rule sets still count.
    """

    name: str
    description: str = ""
    path: Traversable | Path | None = None
    loader: Callable[..., "RuleSet"] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.path, str):
            object.__setattr__(self, "path", Path(self.path))

    def problem(self) -> str | None:
        """Why the host cannot use this source, or None."""
        if (self.path is None) == (self.loader is None):
            return f"rule set {self.name!r}: give exactly one of path= or loader="
        return name_problem("rule set", self.name)

    def load(self, transforms: Mapping[str, Any] | None = None) -> "RuleSet":
        """Read the rules file (or call the loader). Raises RulesError for an invalid file.

        ``transforms``: plugin transforms its ``transform:`` steps may name (see ``load_rules``).
        """
        if self.loader is not None:
            if _accepts(self.loader, "transforms"):
                return self.loader(transforms=transforms)
            return self.loader()
        # as_file gives a real path even for a package imported from a zip.
        with as_file(self.path) as real:  # type: ignore[arg-type]
            return load_rules(real, transforms=transforms)


def _accepts(function: Callable[..., Any], keyword: str) -> bool:
    try:
        params = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature
        return False
    return any(p.name == keyword and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) or p.kind == p.VAR_KEYWORD
               for p in params)


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

    def problem(self) -> str | None:
        if not callable(self.build):
            return f"model {self.name!r}: build must be callable"
        if self.input_adapter is not None and not callable(self.input_adapter):
            return f"model {self.name!r}: input_adapter must be callable or None"
        return name_problem("model", self.name)


@dataclass(frozen=True)
class TransformSpec:
    """A named tensor transform: ``apply(tensor, **params)`` returns the new tensor.

    ``spec(tensor_spec, **params)`` says what the transform does to dtype and shape, so plans
    can be made from headers alone; None means it keeps both. It raises
    ``mapper_core.errors.StepError`` when the step cannot apply to that spec. ``inverse(tensor_spec,
    **params)`` (optional; given the spec the step was applied to) returns the steps that undo it
    exactly, as ``[(name, params), ...]``, or raises ``mapper_core.errors.NotInvertible``; without
    it the transform is reported as not invertible by ``mapper export``. ``params_schema``
    (optional) is a JSON Schema (2020-12) for the step's parameters, checked when rules are loaded.
    """

    name: str
    apply: Callable[..., Any]
    description: str = ""
    spec: Callable[..., "TensorSpec"] | None = None
    inverse: Callable[..., Any] | None = None
    params_schema: Mapping[str, Any] | None = None

    def problem(self) -> str | None:
        if not callable(self.apply) or any(f is not None and not callable(f) for f in (self.spec, self.inverse)):
            return f"transform {self.name!r}: apply, spec and inverse must be callables (spec and inverse may be None)"
        if self.params_schema is not None and not isinstance(self.params_schema, Mapping):
            return f"transform {self.name!r}: params_schema must be a JSON Schema mapping, got {type(self.params_schema).__name__}"
        return name_problem("transform", self.name)


def _format_problem(fmt: Format) -> str | None:
    if not isinstance(fmt.name, str) or not fmt.name or fmt.name != fmt.name.strip():
        return f"format name {fmt.name!r}: expected a non-empty string without surrounding spaces"
    if not callable(fmt.open) or (fmt.sniff is not None and not callable(fmt.sniff)):
        return f"format '{fmt.name}': open (and sniff, when given) must be callable"
    if isinstance(fmt.suffixes, str) or not all(isinstance(x, str) for x in fmt.suffixes):
        return f"format '{fmt.name}': suffixes must be a tuple of strings such as ('.npz',)"
    return None


# hook name → (what the CLI calls it, the value type, the field of Contributions)
HOOKS: dict[str, tuple[str, type, str]] = {
    "mapper_rule_sets": ("rule set", RuleSetSource, "rule_sets"),
    "mapper_models": ("model", ModelFactory, "models"),
    "mapper_formats": ("format", Format, "formats"),
    "mapper_transforms": ("transform", TransformSpec, "transforms"),
}


@dataclass(frozen=True)
class HookFailure:
    """A hook implementation that raised, returned the wrong type, or an entry it returned that
    cannot be used (a bad name, a format name another plugin took).

    What it would have contributed (all of it, or just that entry) was left out. ``traceback``
    holds the plugin's traceback when it raised (printed by ``mapper --debug``).
    """

    plugin: str
    hook: str
    error: str
    traceback: str = ""


@dataclass(frozen=True)
class Contributions:
    """Everything the registered plugins contribute.

    Rule sets, models and transforms are keyed by ``plugin:name``, unique by construction; each
    table also answers a bare ``name`` when it is unambiguous (see :class:`ScopedNames`).
    Formats are chosen by name and suffix, so their names are unique across plugins.
    """

    rule_sets: ScopedNames[RuleSetSource]
    models: ScopedNames[ModelFactory]
    formats: tuple[Format, ...]  # built-in formats first
    transforms: ScopedNames[TransformSpec]
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
        return self.rule_sets.get(spec)


def collect(pm: "pluggy.PluginManager", first: Collection[str] = ()) -> Contributions:
    """Call every hook implementation and remember who contributed what.

    ``first`` names plugins (the built-in ones) whose contributions come before all others.
    One plugin's mistake never hides the others' contributions: a hook that raises or returns
    the wrong type loses that plugin's values for that hook; an entry that cannot be used (a bad
    name, a name the same plugin gives twice, a format name an earlier plugin took) loses only
    that entry. Each is recorded in ``Contributions.failures``. Formats of plugins not in
    ``first`` are wrapped so their readers are held to the reader contract.
    """
    gathered: dict[str, list[Contribution[Any]]] = {}
    failures: list[HookFailure] = []
    for hook_name, (label, value_type, kind) in HOOKS.items():
        impls = [i for i in getattr(pm.hook, hook_name).get_hookimpls() if not (i.wrapper or i.hookwrapper)]
        impls.sort(key=lambda i: i.plugin_name not in first)  # stable: registration order otherwise
        owners: dict[str, str] = {}  # formats: name → plugin; the others: qualified name → plugin
        items: list[Contribution[Any]] = []
        for impl in impls:
            plugin = impl.plugin_name
            values, error, trace = _call(impl.function, hook_name, value_type)
            if error is not None:
                failures.append(HookFailure(plugin, hook_name, f"{error}; its {label}s were left out, fix the plugin "
                                                               "or leave it out", trace))
                continue
            for value in values:
                problem = _format_problem(value) if kind == "formats" else value.problem()
                key = value.name if kind == "formats" else f"{plugin}:{value.name}"
                if problem is None and key in owners:
                    other = owners[key]
                    who = f"plugin '{plugin}' (twice)" if other == plugin else f"plugins '{other}' and '{plugin}'"
                    problem = (f"{label} '{value.name}' is contributed by {who}; names must be unique, so the one from "
                               f"'{plugin}' was left out: rename one, or leave one plugin out "
                               "(uninstall it, or drop it from MAPPER_PLUGINS / --plugin)")
                if problem is not None:
                    failures.append(HookFailure(plugin, hook_name, f"{problem}; only this {label} was left out"))
                    continue
                owners[key] = plugin
                if kind == "formats" and plugin not in first:
                    value = guard_format(value, plugin)
                items.append(Contribution(plugin, value.name, value))
        gathered[kind] = items

    return Contributions(
        rule_sets=ScopedNames("rule set", gathered["rule_sets"], first),
        models=ScopedNames("model", gathered["models"], first),
        formats=tuple(c.value for c in gathered["formats"]),
        transforms=ScopedNames("transform", gathered["transforms"], first),
        format_plugins={c.name: c.plugin for c in gathered["formats"]},
        failures=tuple(failures),
    )


def _call(function: Callable[[], Any], hook_name: str, value_type: type) -> tuple[list[Any], str | None, str]:
    """The values one hook implementation returns, or an error (and traceback) saying why none can be used."""
    try:
        result = function()
    except (Exception, SystemExit) as exc:  # someone else's code; KeyboardInterrupt still stops us
        return [], f"hook {hook_name} failed: {type(exc).__name__}: {exc}", traceback.format_exc()
    if result is None:
        return [], None, ""
    if not isinstance(result, (list, tuple)):
        return [], f"hook {hook_name} returned {type(result).__name__}; expected a list of {value_type.__name__}", ""
    for value in result:
        if not isinstance(value, value_type):
            return [], (
                f"hook {hook_name} returned an item of type {type(value).__name__}; expected {value_type.__name__}"
            ), ""
    return list(result), None, ""
