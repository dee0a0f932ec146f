"""Names scoped by plugin: ``plugin:name`` is unique by construction; a bare ``name`` works when unambiguous."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Generic, Iterable, Iterator, Mapping, TypeVar

from ..errors import BadInputError

T = TypeVar("T")


@dataclass(frozen=True)
class Contribution(Generic[T]):
    """One named value and the plugin that contributed it."""

    plugin: str
    name: str
    value: T

    @property
    def qualified(self) -> str:
        return f"{self.plugin}:{self.name}"


class ScopedNames(Mapping[str, Contribution[T]]):
    """Contributions keyed by ``plugin:name``; lookups also take a bare ``name``.

    A bare name means the built-in plugin's value when a built-in plugin has one (a plugin's
    ``transpose`` is then reached as ``plugin:transpose``), else the one value of that name;
    when several plugins use it, :meth:`resolve` lists the candidates (and ``[]`` raises KeyError).
    """

    def __init__(self, label: str, items: Iterable[Contribution[T]], builtin: Collection[str] = ()):
        self.label = label
        self._items = {c.qualified: c for c in items}
        self._builtin = tuple(builtin)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, key: str) -> Contribution[T]:
        found = self._items.get(key)
        if found is not None:
            return found
        candidates = self.candidates(key)
        if len(candidates) == 1:
            return candidates[0]
        raise KeyError(key)

    def candidates(self, name: str) -> list[Contribution[T]]:
        """What a bare ``name`` may mean: the built-in value alone if there is one, else every plugin's."""
        if ":" in name:
            return []
        found = [c for c in self._items.values() if c.name == name]
        builtin = [c for c in found if c.plugin in self._builtin]
        return builtin[:1] or found

    def resolve(self, key: str, what_to_do: str = "") -> Contribution[T]:
        """The contribution for ``plugin:name`` or an unambiguous ``name``; BadInputError otherwise."""
        try:
            return self[key]
        except KeyError:
            pass
        candidates = self.candidates(key)
        hint = f". {what_to_do}" if what_to_do else ""
        if len(candidates) > 1:
            names = ", ".join(c.qualified for c in candidates)
            raise BadInputError(f"{self.label} '{key}' is ambiguous: {len(candidates)} plugins contribute it "
                                f"({names}); write one of these qualified names{hint}") from None
        known = ", ".join(sorted(self._items)) or "none"
        raise BadInputError(f"no {self.label} named '{key}'; known: {known}{hint}") from None

    def __repr__(self) -> str:
        return f"ScopedNames({self.label!r}, {sorted(self._items)})"

