"""A legacy (non-zip) torch file whose storage header disagrees with its pickle is refused naming the
storage and both sizes (trial 5, F15: torch said "storage has wrong byte size: expected %ld got
%ld439804651110416"); one whose bytes run past the end is called truncated."""
from __future__ import annotations

import pickle

import pytest

torch = pytest.importorskip("torch")

from cli_runner import mapper  # noqa: E402  tests/helpers
from mapper_core.errors import CheckpointError  # noqa: E402
from mapper_core.io.formats import open_checkpoint  # noqa: E402


class _Skim(pickle.Unpickler):
    """Walks the object's pickle without loading storages or importing torch classes."""

    def find_class(self, module, name):
        return lambda *args: None

    def persistent_load(self, pid):
        return None


def legacy(path, state):
    torch.save(state, path, _use_new_zipfile_serialization=False)
    with open(path, "rb") as fh:
        for _ in range(5):  # magic, protocol, system info, the object, the storage keys
            _Skim(fh).load()
        return path, fh.tell()  # where the first storage's element count is


def test_a_storage_count_unlike_the_pickles_is_refused_naming_it(tmp_path):
    path, at = legacy(tmp_path / "big.pt", {"w": torch.ones(4)})
    data = bytearray(path.read_bytes())
    data[at:at + 8] = (2**40).to_bytes(8, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as info:
        open_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: storage '") and "says it holds 1,099,511,627,776 elements" in message
    assert "4 x 4 = 16 bytes (torch.FloatStorage)" in message and "%ld" not in message
    r = mapper("convert", path, tmp_path / "o.safetensors")
    assert r.returncode == 2 and "1,099,511,627,776 elements" in r.stderr and not (tmp_path / "o.safetensors").exists()


def test_storage_bytes_past_the_end_are_called_truncated(tmp_path):
    path, _ = legacy(tmp_path / "cut.pt", {"a": torch.ones(2), "w": torch.ones(8, dtype=torch.float64)})
    path.write_bytes(path.read_bytes()[:-8])
    past = r"storage '\d+' \([\d,]+ bytes\) runs past the end of the [\d,]+-byte file; the file is truncated"
    with pytest.raises(CheckpointError, match=past):
        open_checkpoint(path)


def test_every_dtype_and_shared_storages_still_read_as_torch_load(tmp_path):
    base = torch.arange(12.0)
    state = {"a": base, "view": base[2:6], "bf": torch.ones(3, dtype=torch.bfloat16), "b": torch.tensor([True, False]),
             "empty": torch.zeros(0), "i8": torch.arange(5, dtype=torch.int8), "c": torch.ones(2, dtype=torch.complex64)}
    path, _ = legacy(tmp_path / "all.pt", state)
    expected = torch.load(path, weights_only=True)
    with open_checkpoint(path) as reader:
        for key, tensor in expected.items():
            assert torch.equal(reader.get_tensor(key), tensor), key
