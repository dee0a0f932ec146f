"""Bit-for-bit tensor comparison for round-trip tests (NaN payloads and -0.0 count)."""
from __future__ import annotations

import torch


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().reshape(-1).view(torch.uint8)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(bits(a), bits(b))
