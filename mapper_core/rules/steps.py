"""The built-in transform steps: what each does to a header, and how to undo it. No torch.

Used through :mod:`mapper_core.rules.transforms`; a rules file names them under ``transform:``.
Header functions raise :class:`StepError`; inverse functions get the spec the step was applied
to and raise :class:`NotInvertible` when no exact inverse exists. What each built-in step does
to a tensor lives on the torch side, in :mod:`mapper_core.io.tensor_ops`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ..errors import NotInvertible, StepError
from ..specs import TensorSpec, shown_shape


@dataclass(frozen=True)
class Transform:
    """One kind of step. ``spec``/``inverse``/``apply`` take the step's params as a mapping.

    ``apply`` (tensor, params) → tensor is None for the built-in steps, whose tensor side is
    :data:`mapper_core.io.tensor_ops.BUILTIN_OPS`; a plugin's transform brings its own.
    """

    name: str
    description: str
    spec: Callable[[TensorSpec, Mapping[str, Any]], TensorSpec]
    # (spec the step was applied to, params) → the steps that undo it; raises NotInvertible
    inverse: Callable[[TensorSpec, Mapping[str, Any]], list[tuple[str, dict]]] | None = None
    check: Callable[[Mapping[str, Any]], list[str]] | None = None  # load-time parameter checks
    header_only: bool = False  # reshape-like: a contiguous tensor keeps its bytes
    plugin: str = "mapper_core"
    apply: Callable[[Any, Mapping[str, Any]], Any] | None = None
    params_schema: Mapping[str, Any] | None = None  # a plugin step's JSON Schema for its params
    # The table a plugin step was resolved in, so its inverse may name the plugin's other steps.
    family: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)


# ---------------------------------------------------------------------------- helpers

def _dim(dim: int, ndim: int, what: str = "dim") -> int:
    """``dim`` normalised for a tensor of ``ndim`` axes (negative counts from the end)."""
    if not -ndim <= dim < ndim:
        raise StepError(f"{what} {dim} is out of range for a {ndim}-d tensor (valid: {-ndim}..{ndim - 1})")
    return dim % ndim


_ARITHMETIC = ("F16", "BF16", "F32", "F64")  # torch has no arithmetic on the 8-, 6- and 4-bit floats


def _float(spec: TensorSpec, name: str) -> None:
    if spec.dtype in _ARITHMETIC:
        return
    if spec.dtype.startswith("F"):
        raise StepError(f"{name} needs F16, BF16, F32 or F64, got {spec.dtype} (torch does no arithmetic on it); "
                        "add a cast step before it (and one back after it)")
    raise StepError(f"{name} needs a floating-point tensor, got {spec.dtype}; add a cast step before it")


def _replace(spec: TensorSpec, shape: Sequence[int] | None = None, dtype: str | None = None) -> TensorSpec:
    return TensorSpec(dtype or spec.dtype, tuple(spec.shape if shape is None else shape))


# ---------------------------------------------------------------------------- reshape-like

def _reshape_check(p: Mapping[str, Any]) -> list[str]:
    shape = p.get("shape", [])
    if sum(1 for s in shape if s == -1) > 1:
        return [f"reshape: -1 may appear at most once in shape {list(shape)}; give the other sizes explicitly"]
    return []


def _reshape_spec(s: TensorSpec, p: Mapping[str, Any]) -> TensorSpec:
    shape = list(p["shape"])
    known = math.prod(x for x in shape if x != -1)
    if -1 in shape:
        if known == 0 or s.numel % known:
            raise StepError(f"cannot reshape {shown_shape(s.shape)} ({s.numel} values) to {shape}: "
                            f"{s.numel} is not a multiple of {known}")
        shape[shape.index(-1)] = s.numel // known
    elif known != s.numel:
        raise StepError(f"cannot reshape {shown_shape(s.shape)} ({s.numel} values) to {shape} ({known} values)")
    return _replace(s, shape)


def _unsqueeze_spec(s: TensorSpec, p: Mapping[str, Any]) -> TensorSpec:
    d = _dim(p["dim"], len(s.shape) + 1)
    return _replace(s, s.shape[:d] + (1,) + s.shape[d:])


def _squeeze_spec(s: TensorSpec, p: Mapping[str, Any]) -> TensorSpec:
    d = _dim(p["dim"], len(s.shape))
    if s.shape[d] != 1:
        raise StepError(f"cannot squeeze dim {p['dim']} of {shown_shape(s.shape)}: its size is {s.shape[d]}, not 1")
    return _replace(s, s.shape[:d] + s.shape[d + 1:])


_SAME_AXIS = "swapping an axis with itself changes nothing"
_SAME_AXIS_FIX = "name two different axes (e.g. dim0: 0, dim1: 1), or remove the step"


def _transpose_check(p: Mapping[str, Any]) -> list[str]:
    a, b = p.get("dim0"), p.get("dim1")
    if type(a) is int and type(b) is int and a == b:  # other types: the schema reports them
        return [f"transpose: dim0 and dim1 are both {a}: {_SAME_AXIS}; {_SAME_AXIS_FIX}"]
    return []


def _transpose_spec(s: TensorSpec, p: Mapping[str, Any]) -> TensorSpec:
    a, b = _dim(p["dim0"], len(s.shape), "dim0"), _dim(p["dim1"], len(s.shape), "dim1")
    if a == b:  # e.g. dim0: -1, dim1: 1 on a 2-d tensor; equal literals are refused when the rules load
        raise StepError(f"transpose: dim0 {p['dim0']} and dim1 {p['dim1']} are the same axis ({a}) of a "
                        f"{len(s.shape)}-d tensor: {_SAME_AXIS}; {_SAME_AXIS_FIX}")
    shape = list(s.shape)
    shape[a], shape[b] = shape[b], shape[a]
    return _replace(s, shape)


def _permute_check(p: Mapping[str, Any]) -> list[str]:
    dims = list(p.get("dims", []))
    if sorted(dims) != list(range(len(dims))):
        return [f"permute: dims {dims} must be a permutation of 0..{len(dims) - 1}, each once"]
    return []


def _permute_spec(s: TensorSpec, p: Mapping[str, Any]) -> TensorSpec:
    dims = list(p["dims"])
    if len(dims) != len(s.shape):
        raise StepError(f"permute dims {dims} name {len(dims)} axes but the tensor {shown_shape(s.shape)} has "
                        f"{len(s.shape)}")
    return _replace(s, [s.shape[d] for d in dims])


# ---------------------------------------------------------------------------- inflate, narrow, pad

def _inflate_spec(s: TensorSpec, p: Mapping[str, Any]) -> TensorSpec:
    size = p["size"]
    if p.get("mode", "repeat") == "repeat":
        _float(s, "inflate with mode repeat")
    if p.get("new_axis", True):
        d = _dim(p["dim"], len(s.shape) + 1)
        return _replace(s, s.shape[:d] + (size,) + s.shape[d:])
    d = _dim(p["dim"], len(s.shape))
    if s.shape[d] != 1:
        raise StepError(f"inflate with new_axis: false needs size 1 at dim {p['dim']} of {shown_shape(s.shape)}, "
                        f"got {s.shape[d]}; use new_axis: true to insert a new axis")
    return _replace(s, s.shape[:d] + (size,) + s.shape[d + 1:])


def _inflate_inverse(s: TensorSpec, p: Mapping[str, Any]) -> list[tuple[str, dict]]:
    if p.get("mode", "repeat") == "repeat":
        raise NotInvertible("inflate with mode repeat has no bit-exact inverse (summing the copies rounds); "
                            "use mode center, or keep the source weights")
    out = _inflate_spec(s, p)
    d = _dim(p["dim"], len(out.shape))
    steps: list[tuple[str, dict]] = [("narrow", {"dim": d, "start": p["size"] // 2, "length": 1})]
    if p.get("new_axis", True):
        steps.append(("squeeze", {"dim": d}))
    return steps


def _narrow_spec(s: TensorSpec, p: Mapping[str, Any]) -> TensorSpec:
    d = _dim(p["dim"], len(s.shape))
    start, length = p["start"], p["length"]
    if start + length > s.shape[d]:
        raise StepError(f"narrow start {start} + length {length} exceeds size {s.shape[d]} of dim {p['dim']} "
                        f"in {shown_shape(s.shape)}")
    shape = list(s.shape)
    shape[d] = length
    return _replace(s, shape)


def _narrow_inverse(s: TensorSpec, p: Mapping[str, Any]) -> list[tuple[str, dict]]:
    raise NotInvertible("narrow drops the entries outside the kept range, so they cannot be restored")


def _pad_spec(s: TensorSpec, p: Mapping[str, Any]) -> TensorSpec:
    d = _dim(p["dim"], len(s.shape))
    shape = list(s.shape)
    shape[d] += p.get("before", 0) + p.get("after", 0)
    return _replace(s, shape)


# ---------------------------------------------------------------------------- cast, scale

# (exponent bits, mantissa bits) of the float types; integers as (signed, bits)
_FLOATS = {"F8_E4M3": (4, 3), "F8_E5M2": (5, 2), "F16": (5, 10), "BF16": (8, 7), "F32": (8, 23), "F64": (11, 52)}
_INTS = {"I8": (True, 8), "I16": (True, 16), "I32": (True, 32), "I64": (True, 64),
         "U8": (False, 8), "U16": (False, 16), "U32": (False, 32), "U64": (False, 64)}


def is_widening(src: str, dst: str) -> bool:
    """True when every value of ``src`` is exactly representable in ``dst`` (NaN payloads aside)."""
    if src == dst or src == "BOOL":
        return True
    if src in _FLOATS and dst in _FLOATS:
        (e1, m1), (e2, m2) = _FLOATS[src], _FLOATS[dst]
        return e2 >= e1 and m2 >= m1
    if src in _INTS and dst in _INTS:
        (s1, b1), (s2, b2) = _INTS[src], _INTS[dst]
        return b2 >= b1 if s1 == s2 else (not s1 and s2 and b2 > b1)
    if src in _INTS and dst in _FLOATS:  # integers up to 2**(mantissa+1) are exact in a float
        return _INTS[src][1] <= _FLOATS[dst][1] + 1
    return False


def _cast_spec(s: TensorSpec, p: Mapping[str, Any]) -> TensorSpec:
    if s.dtype.startswith("C") and not p["dtype"].startswith("C"):
        raise StepError(f"cast {s.dtype} → {p['dtype']} would drop the imaginary part of every value; no built-in "
                        "step keeps it (a plugin transform can split real and imaginary parts)")
    return _replace(s, dtype=p["dtype"])


def _cast_inverse(s: TensorSpec, p: Mapping[str, Any]) -> list[tuple[str, dict]]:
    if not is_widening(s.dtype, p["dtype"]):
        raise NotInvertible(f"cast {s.dtype} → {p['dtype']} is not widening, so casting back does not give "
                            "the same values; only widening casts (e.g. F16 → F32) are invertible")
    return [] if s.dtype == p["dtype"] else [("cast", {"dtype": s.dtype})]


def _scale_spec(s: TensorSpec, p: Mapping[str, Any]) -> TensorSpec:
    _float(s, "scale")
    return s


def _scale_inverse(s: TensorSpec, p: Mapping[str, Any]) -> list[tuple[str, dict]]:
    factor = float(p["factor"])
    # A power of two only moves the exponent, so dividing again restores every bit
    # (unless values overflow or fall into the subnormal range).
    if factor == 0 or not math.isfinite(factor) or abs(math.frexp(factor)[0]) != 0.5:
        raise NotInvertible(f"scale by {p['factor']} is exact to undo only for powers of two "
                            "(0.5, 2, 4, ...); other factors round")
    return [("scale", {"factor": 1.0 / factor})]


# ---------------------------------------------------------------------------- the table

def _same(name: str) -> Callable[[TensorSpec, Mapping[str, Any]], list[tuple[str, dict]]]:
    return lambda s, p: [(name, dict(p))]


BUILTIN: dict[str, Transform] = {t.name: t for t in (
    Transform("reshape", "reshape to `shape` (one size may be -1); header-only for a contiguous tensor",
              _reshape_spec, lambda s, p: [("reshape", {"shape": list(s.shape)})], _reshape_check, header_only=True),
    Transform("unsqueeze", "insert an axis of size 1 at `dim` (a Linear weight into a 1x1 conv)",
              _unsqueeze_spec, lambda s, p: [("squeeze", {"dim": _dim(p["dim"], len(s.shape) + 1)})],
              header_only=True),
    Transform("squeeze", "remove the size-1 axis at `dim`",
              _squeeze_spec, lambda s, p: [("unsqueeze", {"dim": _dim(p["dim"], len(s.shape))})], header_only=True),
    Transform("transpose", "swap axes `dim0` and `dim1` (two different ones)", _transpose_spec, _same("transpose"),
              _transpose_check),
    Transform("permute", "reorder the axes as `dims`",
              _permute_spec, lambda s, p: [("permute", {"dims": sorted(range(len(p["dims"])), key=lambda i: p["dims"][i])})],
              _permute_check),
    Transform("inflate", "a 2D kernel into 3D over axis `dim` of `size`: repeat (divided by size) or center",
              _inflate_spec, _inflate_inverse),
    Transform("narrow", "keep `length` entries of axis `dim` from `start`", _narrow_spec, _narrow_inverse),
    Transform("pad", "add `before`/`after` entries of `value` along axis `dim`",
              _pad_spec,
              lambda s, p: [("narrow", {"dim": _dim(p["dim"], len(s.shape)), "start": p.get("before", 0),
                                        "length": s.shape[_dim(p["dim"], len(s.shape))]})]),
    Transform("cast", "change the dtype to `dtype` (safetensors names: F32, F16, BF16, ...)",
              _cast_spec, _cast_inverse),
    Transform("scale", "multiply by `factor`", _scale_spec, _scale_inverse),
)}
