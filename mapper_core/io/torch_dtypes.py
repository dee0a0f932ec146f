"""torch dtype ↔ safetensors dtype names. Imports torch: only the tensor paths use it."""
from __future__ import annotations

import torch

from ..errors import CheckpointError
from ..specs import TensorSpec

TORCH_TO_NAME: dict[torch.dtype, str] = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint64: "U64", torch.uint32: "U32", torch.uint16: "U16", torch.uint8: "U8",
    torch.bool: "BOOL",
}
NAME_TO_TORCH: dict[str, torch.dtype] = {v: k for k, v in TORCH_TO_NAME.items()}


def dtype_name(dtype: torch.dtype, key: str = "", origin: str = "") -> str:
    """The safetensors name of a torch dtype; CheckpointError for dtypes safetensors cannot hold."""
    try:
        return TORCH_TO_NAME[dtype]
    except KeyError:
        where = f"{origin}: " if origin else ""
        raise CheckpointError(
            f"{where}tensor '{key}' has dtype {dtype}, which safetensors cannot store; "
            "convert it (e.g. complex → two real tensors) before mapping"
        ) from None


def spec_of(tensor: torch.Tensor, key: str = "", origin: str = "") -> TensorSpec:
    return TensorSpec(dtype_name(tensor.dtype, key, origin), tuple(tensor.shape))
