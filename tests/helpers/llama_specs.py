"""Llama-like checkpoint headers (no weights), as Hugging Face names the tensors or as Meta does."""
from __future__ import annotations

from mapper_core.specs import TensorSpec


def llama(layers: int = 12, d: int = 8, f: int = 12, hf: bool = True) -> dict[str, TensorSpec]:
    """Llama-like headers, as HF names them or as Meta does, in definition order."""
    def w(*shape): return TensorSpec("F32", shape)
    specs = {"model.embed_tokens.weight" if hf else "tok_embeddings.weight": w(50, d)}
    for i in range(layers):
        p = f"model.layers.{i}." if hf else f"layers.{i}."
        for n in "qkvo":
            specs[p + (f"self_attn.{n}_proj.weight" if hf else f"attention.w{n}.weight")] = w(d, d)
        for hf_name, meta_name, shape in (("gate", "w1", (f, d)), ("up", "w3", (f, d)), ("down", "w2", (d, f))):
            specs[p + (f"mlp.{hf_name}_proj.weight" if hf else f"feed_forward.{meta_name}.weight")] = w(*shape)
        specs[p + ("input_layernorm.weight" if hf else "attention_norm.weight")] = w(d)
        specs[p + ("post_attention_layernorm.weight" if hf else "ffn_norm.weight")] = w(d)
    specs["model.norm.weight" if hf else "norm.weight"] = w(d)
    return specs
