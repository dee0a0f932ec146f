"""ONNX models for mapper-core: their initializers (the trained weights) as a checkpoint.

Reading uses the ``onnx`` package; external data files are read only when a tensor is asked
for, and only from inside the model's folder.
"""
from .reader import OnnxReader

__all__ = ["OnnxReader"]
