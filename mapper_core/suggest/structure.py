"""A model's structure from headers: modules (a key's prefix before its last dot) grouped into
containers (a module's prefix before its last dot), in model order.

``features.3.weight`` is member ``weight`` of module ``features.3``, child ``3`` of container
``features``. Modules get their kind from the kind check's signatures (:mod:`mapper_core.plan.kinds`),
or from the real module type when the model was built. No torch.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Mapping

from ..plan.kinds import classify, kind_of_type, split_key
from ..specs import TensorSpec

_DIGITS = re.compile(r"\d+")
_SPLIT_DIGITS = re.compile(r"(\d+)")
_WORDS = re.compile(r"[A-Za-z]+|\d+")


@dataclass(frozen=True)
class Module:
    """One module: its path, its members (name → spec, in order), its kind and real type if known."""

    path: str
    members: tuple[tuple[str, TensorSpec], ...]
    kind: str
    type_name: str | None
    order: int  # position of its first key in the checkpoint or state dict

    @property
    def child(self) -> str:
        return self.path.rpartition(".")[2]

    @property
    def member_names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.members)

    def spec(self, member: str) -> TensorSpec:
        return dict(self.members)[member]

    def label(self) -> str:
        """``Conv2d`` when the type is known, else the kind with the weight's shape."""
        if self.type_name:
            return self.type_name
        weight = dict(self.members).get("weight")
        return self.kind if weight is None else f"{self.kind}{list(weight.shape)}"


@dataclass(frozen=True)
class Container:
    """The modules that share a parent path, ordered (numeric children by their number)."""

    path: str
    children: tuple[Module, ...]
    order: int

    @property
    def numeric(self) -> bool:
        return all(m.child.isdigit() for m in self.children)

    @property
    def family(self) -> str:
        """The path with its numbers replaced: ``h.#.attn`` for ``h.3.attn``."""
        return _DIGITS.sub("#", self.path)

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(int(d) for d in _DIGITS.findall(self.path))

    def structure(self) -> tuple:
        """What alignment depends on: each child's name, kind, type and member specs."""
        return tuple((m.child, m.kind, m.type_name, m.members) for m in self.children)


@dataclass(frozen=True)
class Structure:
    """A whole model: its containers in model order, and its top-level keys (no dot)."""

    containers: tuple[Container, ...]
    loose: tuple[Module, ...]  # keys without a dot: modules with path ''
    specs: Mapping[str, TensorSpec]
    # the keys are in definition order: a built model's, or a state dict's that is sorted neither as
    # text nor by its numbers (a safetensors file stores its keys sorted, which says nothing about
    # the model)
    ordered: bool = False


def build_structure(specs: Mapping[str, TensorSpec], module_types: Mapping[str, str] | None = None) -> Structure:
    """Group ``specs`` (in their order) into modules and containers."""
    types = module_types or {}
    grouped: dict[str, list[tuple[str, TensorSpec]]] = {}
    first: dict[str, int] = {}
    for i, (key, spec) in enumerate(specs.items()):
        module, member = split_key(key)
        if module not in grouped:
            grouped[module], first[module] = [], i
        grouped[module].append((member, spec))
    modules = []
    for path, members in grouped.items():
        type_name = types.get(path)
        kind = kind_of_type(type_name) if type_name else "unknown"
        if kind == "unknown":
            kind = classify({m: len(s.shape) for m, s in members}).kind
        modules.append(Module(path, tuple(members), kind, type_name, first[path]))
    loose = tuple(m for m in modules if not m.path)
    by_parent: dict[str, list[Module]] = {}
    for m in modules:
        if m.path:
            by_parent.setdefault(m.path.rpartition(".")[0], []).append(m)
    containers = []
    for parent, children in by_parent.items():
        if all(c.child.isdigit() for c in children):  # a file may store them sorted as text
            children = sorted(children, key=lambda c: int(c.child))
        containers.append(Container(parent, tuple(children), min(c.order for c in children)))
    containers.sort(key=lambda c: c.order)
    keys = list(specs)
    # sorted as text, or with the numbers compared as numbers: a file's order, not the model's
    ordered = module_types is not None or not (keys == sorted(keys) or keys == sorted(keys, key=natural_key))
    if not ordered:  # keys stored sorted as text put layers.10 before layers.2: go by the numbers
        containers.sort(key=lambda c: natural_key(c.path))
        containers = [replace(c, order=i) for i, c in enumerate(containers)]
    return Structure(tuple(containers), loose, specs, ordered)


def natural_key(path: str) -> tuple:
    """``layers.2`` before ``layers.10``: the path's numbers compared as numbers."""
    return tuple(int(part) if i % 2 else part for i, part in enumerate(_SPLIT_DIGITS.split(path)))


def words(text: str) -> list[str]:
    """Lower-case words and numbers of a name: ``netcnnAud_2`` → ``['netcnnaud', '2']``."""
    return [w.lower() for w in _WORDS.findall(text)]


def trigrams(text: str) -> frozenset[str]:
    """Letter trigrams of each word of ``text`` (numbers left out): what name similarity compares."""
    return word_trigrams(words(text))


def word_trigrams(found) -> frozenset[str]:
    """Letter trigrams of each of the words ``found`` (numbers left out)."""
    grams = set()
    for w in found:
        if not w.isdigit():
            grams.update(w[i:i + 3] for i in range(max(1, len(w) - 2)))
    return frozenset(grams)


def name_similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """Dice coefficient of two trigram sets (0 when either is empty)."""
    if not a or not b:
        return 0.0
    return 2 * len(a & b) / (len(a) + len(b))
