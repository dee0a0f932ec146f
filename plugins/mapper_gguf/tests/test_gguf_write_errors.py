"""A GGUF write that fails (a full disk) is mapper's typed error naming the file, and leaves nothing behind; a
tensor GGUF cannot hold (more than 4 dimensions) is refused before anything is written."""
from __future__ import annotations

import errno

import pytest

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")

from mapper_core.errors import BadInputError  # noqa: E402
from mapper_gguf import save_gguf  # noqa: E402


@pytest.mark.parametrize("error, said", [
    (OSError("2048 requested and 528 written"), "2048 requested and 528 written (a short write: is the disk full?)"),
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
])
def test_a_failing_write_is_a_typed_error_and_nothing_is_left(tmp_path, monkeypatch, error, said):
    def full(self, tensor):
        raise error

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensor_data", full)
    out = tmp_path / "x.gguf"
    with pytest.raises(BadInputError) as caught:
        save_gguf(out, {"w": torch.ones(4, 4)})
    assert str(caught.value) == f"{out}: cannot write: {said}; nothing was written"
    assert list(tmp_path.iterdir()) == []


def test_a_tensor_of_more_than_4_dims_is_refused_before_anything_is_written(tmp_path):
    """llama.cpp reads at most 4 dimensions (GGML_MAX_DIMS), and so does mapper's own GGUF reader."""
    out = tmp_path / "x.gguf"
    with pytest.raises(BadInputError) as caught:
        save_gguf(out, {"ok": torch.ones(2), "w": torch.ones(2, 1, 1, 1, 3)})
    assert str(caught.value) == ("tensor 'w' is F32 [2, 1, 1, 1, 3]: 5 dimensions, but a GGUF tensor has at most 4 "
                                 "(llama.cpp refuses more); add a reshape step to its rule")
    assert list(tmp_path.iterdir()) == []
    save_gguf(out, {"w": torch.ones(2, 1, 1, 3)})  # 4 are fine
    assert gguf.GGUFReader(out).tensors[0].shape.tolist() == [3, 1, 1, 2]
