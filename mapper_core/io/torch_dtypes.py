"""torch dtype ↔ safetensors dtype names. Imports torch: only the tensor paths use it.

Every dtype the safetensors library stores from torch is here (``safetensors.torch``'s own
table), the newer ones only where this torch has them. ``float4_e2m1fn_x2`` packs two 4-bit
values in one byte: torch counts bytes, safetensors counts values, so its ``F4`` shape has the
last dimension doubled (``[2, 4]`` in torch is ``F4 [2, 8]``), as ``save_file`` writes it.
safetensors' F6 types have no torch dtype.

A reader lists a tensor of a dtype safetensors cannot store (``complex128``, quantized, sub-byte
shells) under torch's own name (:data:`~mapper_core.specs.OTHER_DTYPE_BITS`, :func:`listed_spec`):
the file stays readable, and only reading that key's bytes for a conversion is refused.
"""
from __future__ import annotations

import torch

from ..errors import CheckpointError
from ..specs import OTHER_DTYPE_BITS, TensorSpec

_BY_NAME = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "C64": "complex64",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "F8_E8M0": "float8_e8m0fnu",
    "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2FNUZ": "float8_e5m2fnuz", "F4": "float4_e2m1fn_x2",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
}
NAME_TO_TORCH: dict[str, torch.dtype] = {name: getattr(torch, attr) for name, attr in _BY_NAME.items()
                                         if hasattr(torch, attr)}
TORCH_TO_NAME: dict[torch.dtype, str] = {v: k for k, v in NAME_TO_TORCH.items()}
# the dtypes safetensors cannot store, by the name a reader lists them under (torch's)
OTHER_TO_NAME: dict[torch.dtype, str] = {getattr(torch, n): n for n in OTHER_DTYPE_BITS if hasattr(torch, n)}
_PACKED_PAIRS = {"F4"}  # two values per torch element


def dtype_name(dtype: torch.dtype, key: str = "", origin: str = "") -> str:
    """The safetensors name of a torch dtype; CheckpointError for dtypes safetensors cannot hold."""
    try:
        return TORCH_TO_NAME[dtype]
    except KeyError:
        where = f"{origin}: " if origin else ""
        raise CheckpointError(
            f"{where}tensor '{key}' has dtype {dtype}, which safetensors cannot store (it stores "
            f"{', '.join(str(d).removeprefix('torch.') for d in TORCH_TO_NAME)}); convert it "
            "(e.g. complex128 → complex64, or to two real tensors) before mapping"
        ) from None


def spec_of(tensor: torch.Tensor, key: str = "", origin: str = "") -> TensorSpec:
    """The safetensors spec of a tensor (F4's last dimension counts values, torch's counts bytes)."""
    name = dtype_name(tensor.dtype, key, origin)
    shape = tuple(tensor.shape)
    if name in _PACKED_PAIRS:
        if not shape:
            where = f"{origin}: " if origin else ""
            raise CheckpointError(f"{where}tensor '{key}' is a 0-d {tensor.dtype} (a pair of values in one "
                                  "byte); safetensors cannot store it without a dimension: reshape it to [1]")
        shape = shape[:-1] + (shape[-1] * 2,)
    return TensorSpec(name, shape)


def listed_spec(tensor: torch.Tensor, key: str = "", origin: str = "") -> TensorSpec:
    """The spec a reader lists: :func:`spec_of`, or for a dtype safetensors cannot store but torch
    names (``complex128``), that name, so the key is seen, planned and skipped like any other."""
    other = OTHER_TO_NAME.get(tensor.dtype)
    if other is not None:
        return TensorSpec(other, tuple(tensor.shape))
    return spec_of(tensor, key, origin)
