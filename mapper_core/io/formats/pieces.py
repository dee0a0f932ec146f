"""A tensor's bytes in bounded pieces, so a strided view is never made contiguous whole.

A tensor that is not contiguous (a transposed weight, a stride-0 view that repeats a few
bytes into gigabytes) has to be copied into row-major order before its bytes can be written.
``tensor.contiguous()`` would make that copy all at once: a 623-byte ``.pt`` holding a
stride-0 view of 4 GiB then needs 4 GiB of memory. :func:`contiguous_pieces` splits along the
leading dimensions instead, so no piece is larger than the limit (or one innermost row, when a
single row is larger). Only tensor methods are used: this module does not import torch.
"""
from __future__ import annotations

from typing import Any, Iterator


def _nbytes(tensor: Any) -> int:
    return tensor.numel() * tensor.element_size()


def contiguous_pieces(tensor: Any, limit: int) -> Iterator[Any]:
    """Contiguous tensors whose bytes, one after another, are ``tensor``'s in row-major order.

    A contiguous tensor comes back as it is (no copy). Otherwise each piece covers whole
    rows of the leading dimension (elements, for a 1-D tensor) and holds at most ``limit`` bytes,
    unless one row of the innermost dimension (one element) alone is larger.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1 byte, got {limit}")
    if tensor.is_contiguous() or tensor.dim() == 0 or _nbytes(tensor) <= limit:
        yield tensor.contiguous()
        return
    if 1 in tensor.shape:  # dims of size 1 order nothing; without them the split below recurses at most 63
        tensor = tensor.squeeze()  # deep (each dim left has 2+ elements, < 2**63 in all), not once per such dim
        if tensor.is_contiguous() or tensor.dim() == 0:
            yield tensor.contiguous()
            return
    rows = tensor.shape[0]
    row = _nbytes(tensor[0])
    if row <= limit:
        step = max(1, limit // max(row, 1))
        for i in range(0, rows, step):
            yield tensor[i:i + step].contiguous()
        return
    for i in range(rows):  # one row is too big: split it the same way (depth ≤ tensor.dim())
        yield from contiguous_pieces(tensor[i], limit)
