"""Module kinds from headers alone: what a module is, read from its members' names and ranks.

A module is the prefix of a key before its last dot (``encoder.0.weight`` → ``encoder.0``).
Its signature names its members with the weight's rank: a conv is ``conv(weight[4d],bias)``,
a BatchNorm ``batchnorm(weight[1d],bias,running_mean,running_var,num_batches_tracked)``. The
planner compares the kind of a tensor's source module with that of its target module, so a
conv bias cannot land in a BatchNorm bias unnoticed even though both are ``[C]``.

Kinds: ``conv`` (weight of rank 3-5, optional bias), ``linear`` (weight of rank 2 and a bias),
``matrix`` (a rank-2 weight alone: a Linear without bias or an Embedding), ``norm`` (rank-1
weight, optional bias, no running statistics: LayerNorm, GroupNorm, or a BatchNorm saved without
its buffers), ``batchnorm`` (running_mean and running_var), ``embedding`` (known only from a real
module type) and ``unknown`` (anything else, which is never a mismatch).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterable, Mapping

UNKNOWN = "unknown"
_BN_MEMBERS = frozenset({"weight", "bias", "running_mean", "running_var", "num_batches_tracked"})
_ORDER = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
# Kinds that cannot be told apart from headers: a rank-2 weight alone is a Linear without bias or
# an Embedding; a rank-1 weight and bias is a BatchNorm saved without its buffers, or a LayerNorm.
_COMPATIBLE = {frozenset({"matrix", "linear"}), frozenset({"matrix", "embedding"}),
               frozenset({"norm", "batchnorm"})}
# torch.nn class names → kinds, for targets that are real models (type names, no torch import)
_TYPE_KINDS = (
    (("Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
      "LazyConv1d", "LazyConv2d", "LazyConv3d"), "conv"),
    (("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LazyBatchNorm1d",
      "LazyBatchNorm2d", "LazyBatchNorm3d"), "batchnorm"),
    (("Linear", "LazyLinear", "Bilinear", "NonDynamicallyQuantizableLinear"), "linear"),
    (("LayerNorm", "GroupNorm", "RMSNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d",
      "LocalResponseNorm"), "norm"),
    (("Embedding", "EmbeddingBag"), "embedding"),
)
TYPE_KINDS = {name: kind for names, kind in _TYPE_KINDS for name in names}


@dataclass(frozen=True)
class ModuleKind:
    """A module's kind and its signature (``conv(weight[4d],bias)``)."""

    kind: str
    signature: str

    @property
    def known(self) -> bool:
        return self.kind != UNKNOWN


def split_key(key: str) -> tuple[str, str]:
    """``'a.b.weight'`` → ``('a.b', 'weight')``; a key without a dot belongs to the root module ``''``."""
    module, dot, member = key.rpartition(".")
    return (module, member) if dot else ("", key)


def group_modules(ranks: Iterable[tuple[str | tuple[str, str], int]]) -> dict[str, dict[str, int]]:
    """``(key, rank)`` pairs → module → {member: rank}, in first-seen order; a key may come already
    split as ``(module, member)``."""
    modules: dict[str, dict[str, int]] = {}
    for key, rank in ranks:
        module, member = split_key(key) if isinstance(key, str) else key
        modules.setdefault(module, {})[member] = rank
    return modules


def classify(members: Mapping[str, int]) -> ModuleKind:
    """The kind of a module with these members (name → rank)."""
    return _classify(tuple(members.items()))


def classify_all(modules: Mapping[str, Mapping[str, int]]) -> dict[str, ModuleKind]:
    """:func:`classify` of each module (name → its members), in one pass of C-level calls."""
    return dict(zip(modules, map(_classify, map(tuple, map(dict.items, modules.values())))))


@functools.lru_cache(maxsize=4096)  # a model repeats a few module shapes thousands of times
def _classify(items: tuple[tuple[str, int], ...]) -> ModuleKind:
    members = dict(items)
    names = set(members)
    weight = members.get("weight")
    if {"running_mean", "running_var"} <= names and names <= _BN_MEMBERS:
        kind = "batchnorm"
    elif weight is None or not names <= {"weight", "bias"}:
        kind = UNKNOWN
    elif 3 <= weight <= 5:
        kind = "conv"
    elif weight == 2:
        kind = "linear" if "bias" in names else "matrix"
    elif weight == 1:
        kind = "norm"
    else:
        kind = UNKNOWN
    return ModuleKind(kind, f"{kind}({_members_text(members)})")


def kind_of_type(type_name: str) -> str:
    """The kind of a torch.nn module class name (``'BatchNorm2d'`` → ``'batchnorm'``); unknown names
    give ``'unknown'``."""
    return TYPE_KINDS.get(type_name, UNKNOWN)


def compatible(a: str, b: str) -> bool:
    """Whether kinds ``a`` and ``b`` may hold the same tensor: equal, indistinguishable from headers,
    or one of them unknown."""
    return a == b or UNKNOWN in (a, b) or frozenset({a, b}) in _COMPATIBLE


def _members_text(members: Mapping[str, int]) -> str:
    ordered = [m for m in _ORDER if m in members] + sorted(m for m in members if m not in _ORDER)
    return ",".join(f"{m}[{members[m]}d]" if m == "weight" or members[m] >= 2 else m for m in ordered)
