"""llama.cpp's Q/K row permutation, as header math (no imports) and on tensors (torch, lazily).

Hugging Face Llama checkpoints keep each attention head's rotary dimensions as two halves;
llama.cpp's converter reorders the rows of ``q_proj`` and ``k_proj`` so that the two halves
interleave (``convert_hf_to_gguf.py``'s ``permute``). Both directions are parametrised by the
head size, which fixes the number of heads of either matrix (``rows / head_dim``): one value
covers Q and K, grouped-query attention included.
"""
from __future__ import annotations

from typing import Any

from mapper_core.errors import StepError
from mapper_core.specs import TensorSpec

HEAD_DIM_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"head_dim": {"type": "integer", "minimum": 2, "multipleOf": 2,
                                "description": "rows per attention head (128 for Llama 1-3 and Mistral)"}},
}


def permute_spec(spec: TensorSpec, head_dim: int = 128) -> TensorSpec:
    if not spec.shape or spec.shape[0] % head_dim:
        raise StepError(f"Q/K permutation with head_dim={head_dim} needs a first dimension that is a multiple "
                        f"of {head_dim}, got {list(spec.shape)}; set head_dim to the model's head size")
    return spec


def permute_qk(tensor: Any, head_dim: int = 128) -> Any:
    """HF → GGUF: rows of each head reordered from [half0, half1] to interleaved."""
    rows = tensor.shape[0]
    heads = rows // head_dim
    return tensor.reshape(heads, 2, head_dim // 2, *tensor.shape[1:]).transpose(1, 2).reshape(tensor.shape).contiguous()


def unpermute_qk(tensor: Any, head_dim: int = 128) -> Any:
    """GGUF → HF: the inverse of :func:`permute_qk`."""
    rows = tensor.shape[0]
    heads = rows // head_dim
    return tensor.reshape(heads, head_dim // 2, 2, *tensor.shape[1:]).transpose(1, 2).reshape(tensor.shape).contiguous()
