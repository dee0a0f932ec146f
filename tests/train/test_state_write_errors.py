"""state.save on a full disk: mapper's typed error naming the folder, no temporaries, no empty folder it made."""
import pytest

torch = pytest.importorskip("torch")
safetensors = pytest.importorskip("safetensors")
from torch import nn  # noqa: E402

from mapper_core.errors import BadInputError  # noqa: E402
from mapper_core.train import state  # noqa: E402


def model_and_optimizer():
    model = nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(1, 3)).sum().backward()
    optimizer.step()
    return model, optimizer


def test_a_failing_tensor_write_is_a_typed_error(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise safetensors.SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr("safetensors.torch.save_file", full)
    target = tmp_path / "st"
    with pytest.raises(BadInputError, match="st: cannot write the training checkpoint: Error while serializing: "
                                            "I/O error: No space left on device .*; nothing was written"):
        state.save(target, *model_and_optimizer(), epoch=1)
    assert list(tmp_path.iterdir()) == []  # the folder it made is gone too


def test_a_failing_metadata_write_keeps_a_folder_that_was_there(tmp_path, monkeypatch):
    import os

    def full(fd, data):
        raise OSError(28, "No space left on device")

    target = tmp_path / "st"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    monkeypatch.setattr(os, "write", full)
    with pytest.raises(BadInputError, match="cannot write the training checkpoint: No space left on device"):
        state.save(target, *model_and_optimizer(), epoch=1)
    monkeypatch.undo()
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
