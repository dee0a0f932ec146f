"""The plugin's hooks: the ``gguf`` format, the Llama rule sets and the Q/K permutation steps.

Importing this module imports neither gguf, numpy nor torch.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from mapper_core.plugins import Format, RuleSetSource, TransformSpec, hookimpl

from .permute import HEAD_DIM_SCHEMA, permute_spec

MAGIC = b"GGUF"


def _open(path: Path, **options: Any):
    from .reader import GgufReader  # gguf and numpy on first use

    return GgufReader(path, allow_expansion=bool(options.get("allow_expansion")))


def _sniff(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False


def _permute(tensor, head_dim: int = 128):
    from .permute import permute_qk

    return permute_qk(tensor, head_dim)


def _unpermute(tensor, head_dim: int = 128):
    from .permute import unpermute_qk

    return unpermute_qk(tensor, head_dim)


@hookimpl
def mapper_formats() -> list[Format]:
    return [Format("gguf", (".gguf",), open=_open, sniff=_sniff,
                   description="GGUF (llama.cpp), memory-mapped; quantized tensors dequantized to F32",
                   options={"allow_expansion": "read a header whose tensor infos and metadata keys would take more "
                                               "memory than max(256 MiB, 4x the file's size)"})]


@hookimpl
def mapper_transforms() -> list[TransformSpec]:
    return [
        TransformSpec("llama_qk_permute", _permute,
                      "llama.cpp's Q/K row order (HF → GGUF): per head, interleave the two rotary halves",
                      spec=permute_spec, inverse=lambda s, head_dim=128: [("llama_qk_unpermute", {"head_dim": head_dim})],
                      params_schema=HEAD_DIM_SCHEMA),
        TransformSpec("llama_qk_unpermute", _unpermute,
                      "undo llama_qk_permute (GGUF → HF)",
                      spec=permute_spec, inverse=lambda s, head_dim=128: [("llama_qk_permute", {"head_dim": head_dim})],
                      params_schema=HEAD_DIM_SCHEMA),
    ]


@hookimpl
def mapper_rule_sets() -> list[RuleSetSource]:
    rules = files(__package__) / "rules"
    return [
        RuleSetSource("to-hf-llama", "GGUF Llama names → Hugging Face Llama names (Q/K rows un-permuted)",
                      path=rules / "to-hf-llama.yaml"),
        RuleSetSource("to-gguf-llama", "Hugging Face Llama names → GGUF Llama names (Q/K rows permuted)",
                      path=rules / "to-gguf-llama.yaml"),
    ]
