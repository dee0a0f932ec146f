"""Non-contiguous tensors are written in bounded pieces that add up to their row-major bytes."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from mapper_core.io.formats.pieces import contiguous_pieces  # noqa: E402


def _joined(tensor, limit):
    pieces = list(contiguous_pieces(tensor, limit))
    assert all(p.is_contiguous() for p in pieces)
    return pieces, b"".join(p.numpy().tobytes() for p in pieces)


@pytest.mark.parametrize("make", [
    lambda: torch.arange(300.0).as_strided((1000, 300), (0, 1)),  # a stride-0 view: 300 floats repeated
    lambda: torch.arange(24_000.0).reshape(40, 600).t(),  # a transposed weight
    lambda: torch.arange(3 * 5 * 7 * 11, dtype=torch.int16).reshape(3, 5, 7, 11).permute(2, 0, 3, 1),
    lambda: torch.arange(2 * 4000.0).reshape(4000, 2).t(),  # one row larger than the limit
    lambda: torch.tensor([1.5]).as_strided((5000,), (0,)),  # 1-D stride-0: one element repeated
])
def test_pieces_hold_the_row_major_bytes_and_respect_the_limit(make):
    tensor = make()
    assert not tensor.is_contiguous()
    limit = 1024
    pieces, joined = _joined(tensor, limit)
    assert joined == tensor.contiguous().numpy().tobytes()
    innermost_row = tensor.shape[-1] * tensor.element_size()
    assert len(pieces) > 1
    assert max(p.numel() * p.element_size() for p in pieces) <= max(limit, innermost_row)


def test_a_contiguous_tensor_is_handed_back_without_a_copy():
    tensor = torch.arange(10_000.0)
    [piece] = contiguous_pieces(tensor, 16)
    assert piece.data_ptr() == tensor.data_ptr()


@pytest.mark.parametrize("tensor", [torch.tensor(3.0), torch.empty(0, 5).t(), torch.zeros(5, 0).t()])
def test_scalars_and_empty_tensors(tensor):
    _, joined = _joined(tensor, 8)
    assert joined == tensor.contiguous().numpy().tobytes()


def test_a_huge_stride0_view_is_never_materialised():
    small = torch.arange(256.0)
    huge = small.as_strided((1 << 20, 256), (0, 1))  # 1 GiB if made contiguous
    seen = 0
    for piece in contiguous_pieces(huge, 1 << 20):
        assert piece.numel() * 4 <= 1 << 20  # no piece over 1 MiB
        seen += piece.numel()
        if seen >= 1 << 24:
            break  # the first 64 MiB are enough: each piece was small
    assert seen == 1 << 24


def test_limit_must_be_positive():
    with pytest.raises(ValueError, match="at least 1 byte"):
        list(contiguous_pieces(torch.zeros(2, 2).t(), 0))


def test_a_view_of_thousands_of_dims_of_1_is_split_without_deep_recursion():
    # each dim of size 1 was one level of recursion: 5,000 of them raised RecursionError
    tensor = torch.tensor([1.5]).as_strided((1,) * 5_000 + (3000,), (0,) * 5_001)
    pieces, joined = _joined(tensor, 1024)
    assert len(pieces) > 1 and joined == torch.full((3000,), 1.5).numpy().tobytes()
