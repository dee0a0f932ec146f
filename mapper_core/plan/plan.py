"""The Plan: a pure value saying what happens to every key. Built by :func:`mapper_core.plan.make_plan`.

Every tensor key of the source is in exactly one of ``mapped``, ``skipped``, ``unmatched``
(non-tensor values are in ``non_tensor``). A shape mismatch is listed in ``mismatched`` and
also stays where it belongs: under ``on_shape_mismatch: error`` in ``mapped`` (the plan has an
error), under ``skip`` in ``skipped`` (with ``rule`` set and no ``pattern``). Under the
rules' ``unmatched: keep`` policy a key no rule takes is passed through under its own name:
it is in ``mapped`` with ``rule == PASS_THROUGH`` (-1); under ``drop`` and ``error`` it is in
``unmatched`` (an error only under ``error``).
"""
from __future__ import annotations

import dataclasses
from collections import namedtuple
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

_target, _rule = attrgetter("target"), attrgetter("rule")
PASS_THROUGH = -1  # Mapped.rule of a key passed through under its own name (unmatched: keep)
UNMATCHED_POLICIES = ("error", "keep", "drop")


_MappedFields = namedtuple("_MappedFields", (
    "source", "target", "rule", "dtype", "shape",
    "target_shape",  # None when no target specs were given
    "target_dtype",  # from the target specs; a dtype difference is not a mismatch
    # The rule's transform steps (mapper_core.rules.transforms.Step) and the spec they produce;
    # out_dtype/out_shape are None when the rule has no transform.
    "transform", "out_dtype", "out_shape"), defaults=(None, None, (), None, None))


class Mapped(_MappedFields):
    """One source key the plan writes: ``Mapped(source, target, rule, dtype, shape, target_shape=None,
    target_dtype=None, transform=(), out_dtype=None, out_shape=None)``.

    An immutable value like the other entries (read-only attributes, equal only to a Mapped of the
    same fields, hashable, the same repr), but built on a tuple: a plan holds one per source key,
    and a tuple is made in one step where a frozen dataclass sets its ten fields one by one (a
    million-key plan made them in seconds). :func:`new_mapped` is the constructor without
    keyword handling, for the planner's loop.
    """

    __slots__ = ()

    # equal to a Mapped only (a plain tuple of the same values is not one); other types decide for themselves
    def __eq__(self, other: object) -> bool:
        if type(other) is Mapped:
            return tuple.__eq__(self, other)
        return False if isinstance(other, tuple) else NotImplemented

    def __ne__(self, other: object) -> bool:
        if type(other) is Mapped:
            return tuple.__ne__(self, other)
        return True if isinstance(other, tuple) else NotImplemented

    __hash__ = tuple.__hash__

    def __setattr__(self, name: str, value: object) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    @property
    def passed_through(self) -> bool:
        """True for a key no rule took, written under its own name (``unmatched: keep``)."""
        return self.rule == PASS_THROUGH

    @property
    def result_shape(self) -> tuple[int, ...]:
        """The shape written to the target: after the transforms."""
        return self.shape if self.out_shape is None else self.out_shape

    @property
    def result_dtype(self) -> str:
        return self.dtype if self.out_dtype is None else self.out_dtype


def new_mapped(fields: tuple) -> Mapped:
    """A Mapped from its ten fields in order (defaults included), without keyword handling."""
    return tuple.__new__(Mapped, fields)


@dataclass(frozen=True)
class Skipped:
    source: str
    pattern: str | None  # the skip pattern; None when a rule skipped it on shape mismatch
    rule: int | None = None


@dataclass(frozen=True)
class Mismatch:
    source: str
    target: str
    rule: int
    shape: tuple[int, ...]
    target_shape: tuple[int, ...] | None  # None: the target has no such key
    action: str  # "error" or "skip", from the rule's on_shape_mismatch
    dtype: str = ""
    target_dtype: str | None = None
    # Set when a transform step cannot apply to the source shape; says which step and why.
    reason: str = ""
    out_shape: tuple[int, ...] | None = None  # the shape after the transforms, when they applied
    line: int | None = None  # the rule's line in the rules file, when known (for messages)


@dataclass(frozen=True)
class Taker:
    """An earlier rule (``kind`` "rule") or skip pattern ("skip") that took ``keys`` of an unused rule's keys."""

    kind: str
    index: int
    line: int | None
    keys: int

    def to_dict(self) -> dict[str, Any]:
        return {self.kind: self.index, "line": self.line, "keys": self.keys}


@dataclass(frozen=True)
class Collision:
    target: str
    sources: tuple[str, ...]
    rules: tuple[int, ...]
    lines: tuple[int | None, ...] = field(default=(), compare=False)  # of those rules in the rules file, when known


@dataclass(frozen=True)
class UnusedRule:
    """A rule that took no key, and why (:mod:`.unused`): ``reason`` is ``no_match``, ``shadowed`` (every key
    it matches went to an earlier rule or skip pattern, counted in ``taken_by``) or ``unfilled`` (its template
    gave no key for ``unfilled`` of them: ``example`` is the first such key and why)."""

    rule: int
    match: str
    line: int | None = field(default=None, compare=False)
    reason: str = field(default="no_match", compare=False)
    matched: int = field(default=0, compare=False)  # source keys its pattern fully matches
    taken_by: tuple[Taker, ...] = field(default=(), compare=False)
    unfilled: int = field(default=0, compare=False)
    example: tuple[str, str] | None = field(default=None, compare=False)  # (key, why its template gave no key)

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "match": self.match, "line": self.line, "reason": self.reason,
                "matched": self.matched, "taken_by": [t.to_dict() for t in self.taken_by],
                "unfilled": self.unfilled,
                "example": None if self.example is None else {"source": self.example[0], "why": self.example[1]}}


@dataclass(frozen=True)
class UnmatchedKey:
    """An error entry: a source key no rule or skip pattern takes, under ``unmatched: error``."""

    source: str


@dataclass(frozen=True)
class NonTensor:
    """A value in the source that is not a tensor (a step counter, a config): left behind, listed."""

    key: str
    type: str  # the type name the reader reported, e.g. "int", "dict"


@dataclass(frozen=True)
class KindMismatch:
    """A mapped tensor whose source and target modules differ in kind, or that leaves its module.

    ``source_kind``/``target_kind`` are module signatures (``conv(weight[4d],bias)``) or, when the
    target is a real model, its module type (``BatchNorm2d``). ``action`` is the rule's
    ``on_kind_mismatch``: ``error`` fails the plan, ``warn`` only reports.
    """

    source: str
    target: str
    rule: int
    source_kind: str
    target_kind: str
    action: str
    detail: str


@dataclass(frozen=True)
class Plan:
    """What happens to every source key and which target keys get filled."""

    rules_name: str
    mapped: tuple[Mapped, ...]
    skipped: tuple[Skipped, ...]
    unmatched: tuple[str, ...]
    uninitialized: tuple[str, ...]
    mismatched: tuple[Mismatch, ...]
    collisions: tuple[Collision, ...]
    unused_rules: tuple[UnusedRule, ...]
    source_count: int
    target_count: int | None  # None when no target specs were given
    source_origin: str | None = None
    target_origin: str | None = None
    rules_origin: str | None = None
    rules_sha256: str | None = field(default=None, compare=False)  # of the rules file's bytes, when known
    unmatched_policy: str = "error"
    non_tensor: tuple[NonTensor, ...] = ()
    kind_mismatches: tuple[KindMismatch, ...] = ()
    # target keys nothing fills that the rules declare as new layers (`new:`): not a problem
    expected_uninitialized: tuple[str, ...] = ()
    # (target key nothing fills, the filled key it is one tensor with in the target model): tied
    # weights, filled through the tie; neither uninitialized nor new
    tied_filled: tuple[tuple[str, str], ...] = ()
    # (source module → signature, target module → type or signature) of the mapped keys' modules,
    # for explain; not part of the JSON form
    module_kinds: tuple[dict[str, str], dict[str, str]] = field(default=({}, {}), compare=False, repr=False)

    @property
    def errors(self) -> tuple[Mismatch | Collision | KindMismatch | UnmatchedKey, ...]:
        """Problems that always fail the plan: collisions, shape and kind mismatches under ``error``,
        and unmatched source keys under ``unmatched: error``."""
        unmatched = tuple(UnmatchedKey(k) for k in self.unmatched) if self.unmatched_policy == "error" else ()
        return (tuple(self.collisions) + tuple(m for m in self.mismatched if m.action == "error")
                + tuple(k for k in self.kind_mismatches if k.action == "error") + unmatched)

    def has_errors(self, strict: bool = False) -> bool:
        """True when the plan fails; ``strict`` also fails on uninitialized target keys (not on the
        ``expected_uninitialized`` ones the rules declare as new, nor on keys ``unmatched: drop`` leaves)."""
        if self.errors:
            return True
        return strict and bool(self.uninitialized)

    @property
    def passed_through(self) -> tuple[Mapped, ...]:
        """Keys written under their own names because no rule took them (``unmatched: keep``)."""
        return tuple(m for m in self.mapped if m.rule == PASS_THROUGH)

    @property
    def loadable(self) -> tuple[Mapped, ...]:
        """Mapped entries that will actually be written/loaded (no mismatch, no collision),
        passed-through keys included."""
        if not self.collisions and not self.mismatched:  # the usual, clean case
            return tuple(self.mapped)
        bad_targets = {c.target for c in self.collisions}
        bad_sources = {m.source for m in self.mismatched}
        return tuple(m for m in self.mapped if m.target not in bad_targets and m.source not in bad_sources)

    def summary(self) -> dict[str, Any]:
        consumed = len(self.mapped) + len(self.skipped)
        # distinct targets written; a set of every target costs a million-key plan a fifth of a second,
        # so only when there are target keys to fill
        filled = len(set(map(_target, self.loadable))) + len(self.tied_filled) if self.target_count else 0
        return {
            "source_keys": self.source_count,
            "target_keys": self.target_count,
            "mapped": len(self.mapped),
            "skipped": len(self.skipped),
            "unmatched": len(self.unmatched),
            "uninitialized": len(self.uninitialized),
            "mismatched": len(self.mismatched),
            "collisions": len(self.collisions),
            "unused_rules": len(self.unused_rules),
            "passed_through": list(map(_rule, self.mapped)).count(PASS_THROUGH),
            "non_tensor": len(self.non_tensor),
            "kind_mismatch": len(self.kind_mismatches),
            "kind_warnings": sum(1 for k in self.kind_mismatches if k.action != "error"),
            "expected_uninitialized": len(self.expected_uninitialized),
            "tied_filled": len(self.tied_filled),
            "unmatched_policy": self.unmatched_policy,
            "source_consumed": consumed / self.source_count if self.source_count else 1.0,
            "target_filled": (filled / self.target_count) if self.target_count else None,
            "errors": len(self.errors),
        }

    def to_dict(self, mapped: bool = True, skipped: bool = True) -> dict[str, Any]:
        """The JSON form: the keys named in DESIGN.md, plus the rules' name and origins.
        ``mapped=False`` and ``skipped=False`` leave those lists empty (:func:`.plan_json.plan_json`
        writes them as text)."""
        return {
            "rules": {"name": self.rules_name, "origin": self.rules_origin},
            "source": self.source_origin,
            "target": self.target_origin,
            "mapped": [_mapped_dict(m) for m in self.mapped] if mapped else [],
            "skipped": [{"source": s.source, "pattern": s.pattern, "rule": s.rule} for s in self.skipped]
            if skipped else [],
            "unmatched": list(self.unmatched),
            "uninitialized": list(self.uninitialized),
            "mismatched": [
                {"source": m.source, "target": m.target, "rule": m.rule, "shape": list(m.shape),
                 "target_shape": _list(m.target_shape), "action": m.action,
                 "dtype": m.dtype, "target_dtype": m.target_dtype,
                 **({"reason": m.reason} if m.reason else {}),
                 **({"out_shape": list(m.out_shape)} if m.out_shape is not None else {})}
                for m in self.mismatched
            ],
            "collisions": [
                {"target": c.target, "sources": list(c.sources), "rules": list(c.rules), "lines": list(c.lines)}
                for c in self.collisions
            ],
            "unused_rules": [u.to_dict() for u in self.unused_rules],
            "unmatched_policy": self.unmatched_policy,
            "non_tensor": [{"key": n.key, "type": n.type} for n in self.non_tensor],
            "kind_mismatch": [dataclasses.asdict(k) for k in self.kind_mismatches],
            "expected_uninitialized": list(self.expected_uninitialized),
            "tied_filled": [{"target": k, "tied_to": partner} for k, partner in self.tied_filled],
            "summary": self.summary(),
        }


def _mapped_dict(m: Mapped) -> dict[str, Any]:
    d = {"source": m.source, "target": m.target, "rule": m.rule, "dtype": m.dtype,
         "shape": list(m.shape), "target_shape": _list(m.target_shape), "target_dtype": m.target_dtype}
    if m.transform:  # only then: plans without transforms keep their JSON form
        d["transform"] = [s.to_dict() for s in m.transform]
    if m.out_shape is not None:
        d.update(out_dtype=m.result_dtype, out_shape=list(m.result_shape))
    return d


def _list(shape: tuple[int, ...] | None) -> list[int] | None:
    return None if shape is None else list(shape)
