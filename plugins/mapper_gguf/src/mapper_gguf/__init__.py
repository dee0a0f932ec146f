"""GGUF files for mapper-core: read (memory-mapped; quantized tensors dequantized), write, and
the Hugging Face Llama ↔ GGUF names with llama.cpp's Q/K row permutation as a transform."""
from .permute import permute_qk, unpermute_qk
from .reader import GgufReader
from .writer import convert_to_gguf, save_gguf

__all__ = ["GgufReader", "convert_to_gguf", "permute_qk", "save_gguf", "unpermute_qk"]
