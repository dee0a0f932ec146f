"""Does a source module fit a target module, and through which transform steps? From shapes.

A member fits when its shape is the target's, or when one of the layout changes a rules file
can express turns it into the target's: Linear ↔ 1×1 conv (``unsqueeze`` / ``squeeze``), a
transposed matrix (``transpose``, GPT-2's Conv1D), a 2D kernel inflated into 3D (``inflate``).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..plan.kinds import compatible, kind_of_type
from ..specs import TensorSpec
from .structure import Module

Steps = tuple[tuple[str, tuple[tuple[str, object], ...]], ...]  # ((step name, ((param, value), ...)), ...)

# what each way of fitting is called in the evidence
SAME, TO_CONV, TO_LINEAR, TRANSPOSED, INFLATED = (
    "same shape", "Linear → 1×1 conv", "1×1 conv → Linear", "transposed matrix", "2D → 3D inflate")
# types whose rank-2 weight is stored [in, out]: a Linear of the other layout needs a transpose
TRANSPOSED_TYPES = frozenset({"Conv1D"})


def step(name: str, **params: object) -> tuple[str, tuple[tuple[str, object], ...]]:
    return name, tuple(params.items())


def fit_member(src: TensorSpec, tgt: TensorSpec, transposed: bool = False) -> tuple[Steps, str] | None:
    """The steps that turn a tensor of ``src``'s shape into ``tgt``'s, and what they are called;
    None when no known change does. ``transposed``: the two sides store matrices in opposite
    orientations ([out, in] and [in, out]), so a matrix fits only transposed."""
    s, t = src.shape, tgt.shape
    if len(s) == 2 and len(t) == 2 and transposed:  # [in, out] storage: only the transpose fits
        return ((step("transpose", dim0=0, dim1=1),), TRANSPOSED) if s == (t[1], t[0]) else None
    if s == t:
        return (), SAME
    if len(s) == 2 and len(t) == 2 and s == (t[1], t[0]):
        return (step("transpose", dim0=0, dim1=1),), TRANSPOSED
    if len(s) == 2 and 3 <= len(t) <= 5 and t[:2] == s and all(d == 1 for d in t[2:]):
        return tuple(step("unsqueeze", dim=d) for d in range(2, len(t))), TO_CONV
    if len(t) == 2 and 3 <= len(s) <= 5 and s[:2] == t and all(d == 1 for d in s[2:]):
        return tuple(step("squeeze", dim=d) for d in reversed(range(2, len(s)))), TO_LINEAR
    if len(s) == 4 and len(t) == 5 and t[:2] == s[:2] and t[3:] == s[2:] and t[2] > 1 and src.dtype[0] in "FB":
        return (step("inflate", dim=2, size=t[2], mode="repeat"),), INFLATED
    return None


@dataclass(frozen=True)
class ModuleFit:
    """How a source module's members reach a target module: member → steps, and the evidence."""

    steps: tuple[tuple[str, Steps, str], ...]  # (member, steps, how it fits: SAME, TO_CONV, ...)
    how: frozenset[str]
    same_dtype: bool

    @property
    def exact(self) -> bool:
        return self.how == frozenset({SAME})


def fit_module(src: Module, tgt: Module, transposed: bool = False) -> ModuleFit | None:
    """How ``src`` fits ``tgt``: the same member names, each member fitting, kinds compatible once
    the steps are applied (a Linear unsqueezed into a 1×1 conv is a conv); None when it does not.
    Known types on both sides (``Conv1D``, ``Linear``) decide whether matrices are transposed; else
    ``transposed`` does (for a square matrix, whose shape cannot say: :mod:`.orientation`)."""
    if src.member_names != tgt.member_names:
        return None
    types = stored_transposed(src), stored_transposed(tgt)
    if None not in types:  # both real types known: they decide
        transposed = types[0] != types[1]
    else:  # the [in, out] convention is a Linear's (weight and bias), never an Embedding's
        transposed = transposed and src.kind in ("linear", "unknown")
    tgt_specs = dict(tgt.members)
    steps, how, same_dtype = [], set(), True
    for name, spec in src.members:
        found = fit_member(spec, tgt_specs[name], transposed and name == "weight")
        if found is None:
            return None
        steps.append((name, found[0], found[1]))
        how.add(found[1])
        same_dtype = same_dtype and spec.dtype == tgt_specs[name].dtype
    if not _kinds_fit(src.kind, tgt.kind, how):
        return None
    return ModuleFit(tuple(steps), frozenset(how), same_dtype)


def fit_key(m: Module) -> frozenset:
    """What every module that ``m`` fits shares with it (:func:`fit_module` is None between modules
    of different keys): the member names, each with its rank class and its first two dimensions in
    either order (a transpose swaps them; a squeeze, unsqueeze or inflate keeps them)."""
    return frozenset((name, _shape_key(spec.shape)) for name, spec in m.members)


def _shape_key(shape: tuple[int, ...]) -> tuple:
    return shape if len(shape) < 2 else (2, *sorted(shape[:2]))


# the most module pairs of one fit key (or container pairs of one structure) compared one by one;
# past it only those that share a name, numbers or place are (mapper suggest says so: LIMITED)
PAIR_LIMIT = 40_000
FEW = 8  # past it, a module or container is compared with at most this many that share a trait


def key_groups(a, b) -> list[tuple[list[int], list[int]]]:
    """Indices of the modules of ``a`` and of ``b`` grouped by :func:`fit_key`, groups with
    modules on both sides only: a module can fit only one of its own group."""
    by_key: dict[frozenset, tuple[list[int], list[int]]] = {}
    for i, x in enumerate(a):
        by_key.setdefault(fit_key(x), ([], []))[0].append(i)
    for j, y in enumerate(b):
        group = by_key.get(fit_key(y))
        if group is not None:
            group[1].append(j)
    return [g for g in by_key.values() if g[1]]


def fitting(a, b, pairs=None, transposed: bool = False):
    """``(i, j, fit)`` for each of ``pairs`` (default: every pair within a group of
    :func:`key_groups`) where ``a[i]`` fits ``b[j]``, in (i, j) order. Unlike modules are never
    compared: ``a`` × ``b`` calls would make many siblings quadratic."""
    if pairs is None:
        pairs = sorted((i, j) for xs, ys in key_groups(a, b) for i in xs for j in ys)
    # a fit depends only on the members, kind and type of both: alike modules are compared once
    kinds: dict[tuple, int] = {}
    kind_a = [kinds.setdefault((x.members, x.kind, x.type_name), len(kinds)) for x in a]
    kind_b = [kinds.setdefault((y.members, y.kind, y.type_name), len(kinds)) for y in b]
    known: dict[tuple[int, int], ModuleFit | None] = {}
    for i, j in pairs:
        both = kind_a[i], kind_b[j]
        f = known[both] if both in known else known.setdefault(both, fit_module(a[i], b[j], transposed))
        if f is not None:
            yield i, j, f


def stored_transposed(m: Module) -> bool | None:
    """True for a known [in, out] type (``Conv1D``), False for a known Linear, None when unknown."""
    if m.type_name in TRANSPOSED_TYPES:
        return True
    return False if m.type_name and kind_of_type(m.type_name) == "linear" else None


def _kinds_fit(src: str, tgt: str, how: set[str]) -> bool:
    if TO_CONV in how:
        return src in ("linear", "matrix", "unknown") and tgt in ("conv", "unknown")
    if TO_LINEAR in how:
        return src in ("conv", "unknown") and tgt in ("linear", "matrix", "unknown")
    return compatible(src, tgt)


def is_square_linear(m: Module) -> bool:
    """A module whose rank-2 weight is square: its orientation cannot be read from shapes."""
    weight = dict(m.members).get("weight")
    return weight is not None and len(weight.shape) == 2 and weight.shape[0] == weight.shape[1] \
        and m.kind in ("linear", "unknown")
