"""Tensor specs: what a header says about a tensor, without its data.

Dtypes use the safetensors spellings (``F32``, ``BF16``, ...) so that header-only
commands never need torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

# bytes per element; the keys are the safetensors dtype names
DTYPE_SIZES: dict[str, int] = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2,
    "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U64": 8, "U32": 4, "U16": 2, "U8": 1,
    "BOOL": 1,
}


@dataclass(frozen=True)
class TensorSpec:
    """The dtype and shape of one tensor, as a header records them."""

    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * DTYPE_SIZES[self.dtype]

    def to_dict(self) -> dict:
        return {"dtype": self.dtype, "shape": list(self.shape)}


SpecMap = dict[str, TensorSpec]


def format_shape(shape: tuple[int, ...] | None) -> str:
    """``[64, 1, 3, 3]`` for reports; ``absent`` when there is no such tensor (None)."""
    return "absent" if shape is None else "[" + ", ".join(map(str, shape)) + "]"
