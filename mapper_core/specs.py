"""Tensor specs: what a header says about a tensor, without its data.

Dtypes use the safetensors spellings (``F32``, ``BF16``, ...) so that header-only
commands never need torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

# bits per element, in the safetensors library's own order (ascending alignment): the writer
# sorts by it exactly as ``save_file`` does. F4 and F6 pack elements into bytes, so a tensor's
# element count must fill whole bytes (the library refuses other shapes).
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8,
    "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
    "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}
# dtypes torch has and safetensors cannot store, by torch's name (lower case: never a safetensors name),
# with torch's bits per element. A reader lists a tensor of one in its specs, so that inspect and plan
# see it and rules can skip it; reading its bytes for a conversion is refused, naming the key.
OTHER_DTYPE_BITS: dict[str, int] = {
    "complex128": 128, "complex32": 32, "qint8": 8, "quint8": 8, "qint32": 32, "quint4x2": 8, "quint2x4": 8,
    "bits8": 8, "bits16": 16, "bits1x8": 8, "bits2x4": 8, "bits4x2": 8,
    **{f"{kind}{n}": 8 for kind in ("uint", "int") for n in range(1, 8)},  # a byte each in torch
}
_ALL_BITS = {**DTYPE_BITS, **OTHER_DTYPE_BITS}
# bytes per element of the whole-byte dtypes (F4 and F6 are absent: they have no such size)
DTYPE_SIZES: dict[str, int] = {name: bits // 8 for name, bits in DTYPE_BITS.items() if bits % 8 == 0}
# The largest dimension torch and numpy can index (a C int64); the library's header check allows
# up to 2**64-1, but no framework can then return the tensor (shape [0, 2**63] has 0 bytes).
MAX_DIM = 2**63 - 1
U64_MAX = 2**64 - 1
SHOWN_DIMS = 6  # dimensions an error message shows of a shape; a damaged header can claim 200,000


def nbytes_of(dtype: str, shape: tuple[int, ...] | list[int]) -> int | None:
    """Bytes a tensor of ``dtype`` and ``shape`` fills, or None when sub-byte elements leave a partial byte."""
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    return None if bits % 8 else bits // 8


def shape_numel(shape: Iterable[int], limit: int = U64_MAX) -> int | None:
    """The element count of ``shape``, or None as soon as a partial product passes ``limit``.

    Multiplying stops at the first overflow (the safetensors library's ``checked_mul`` does the
    same): a damaged header's 200,000 dimensions of 2**63-1 cost one or two multiplications, not
    200,000 of ever longer numbers (minutes)."""
    numel = 1
    for d in shape:
        numel *= d
        if numel > limit:
            return None
    return numel


def shown_shape(shape: Sequence[int], most: int = SHOWN_DIMS) -> str:
    """A shape for an error message, bounded whatever a header claims: ``[64, 1, 3, 3]``; a longer
    one shows its first ``most`` dimensions and how many there are, a dimension of more than 128 bits
    (39 digits) its size in bits."""
    def dim(d: int) -> str:
        return str(d) if d.bit_length() <= 128 else f"<a {d.bit_length():,}-bit number>"

    shown = ", ".join(map(dim, shape[:most]))
    return f"[{shown}, ... ({len(shape):,} dimensions)]" if len(shape) > most else f"[{shown}]"


@dataclass(frozen=True, slots=True)  # slots: a header can describe a million of them
class TensorSpec:
    """The dtype and shape of one tensor, as a header records them."""

    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of data (F4/F6 round up to a whole byte; readers refuse shapes where that matters)."""
        return (self.numel * _ALL_BITS[self.dtype] + 7) // 8

    def to_dict(self) -> dict:
        return {"dtype": self.dtype, "shape": list(self.shape)}


SpecMap = dict[str, TensorSpec]


def format_shape(shape: tuple[int, ...] | None) -> str:
    """``[64, 1, 3, 3]`` for reports; ``absent`` when there is no such tensor (None)."""
    return "absent" if shape is None else "[" + ", ".join(map(str, shape)) + "]"
