"""The library never changes a tensor it was handed, memory-mapped ones included.

Regression for issue 8: the writer and --verify used to drop the pages under a written
tensor with madvise(MADV_DONTNEED). On a private mapping (``torch.load(mmap=True)``) that
threw away the caller's in-place edits: the tensor below fell from 1,048,576 to 1,024.
"""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from mapper_core.errors import VerifyError
from mapper_core.io.convert import convert
from mapper_core.io.formats.torch_format import open_torch
from mapper_core.io.formats.writer import Entry, write_safetensors
from mapper_core.io.torch_dtypes import spec_of
from mapper_core.io.verify import verify_file

N = 1_048_576  # 4 MiB of float32: many whole pages under the tensor


@pytest.fixture
def pt(tmp_path):
    path = tmp_path / "a.pt"
    torch.save({"w": torch.zeros(N)}, path)
    return path


def edited_mmap(path) -> torch.Tensor:
    t = torch.load(path, mmap=True, weights_only=True)["w"]
    t.add_(1)  # in place: the pages of the private mapping now differ from the file
    assert t.sum().item() == N
    return t


def test_write_safetensors_keeps_the_callers_edits_in_a_mapped_tensor(tmp_path, pt):
    t = edited_mmap(pt)
    write_safetensors(tmp_path / "out.safetensors", {"w": t})
    assert t.sum().item() == N  # was 1,024 with the page release
    assert torch.equal(load_file(str(tmp_path / "out.safetensors"))["w"], torch.ones(N))


def test_verify_reads_a_mapped_source_tensor_without_changing_it(tmp_path, pt):
    t = edited_mmap(pt)
    out = tmp_path / "out.safetensors"
    write_safetensors(out, {"w": t})
    assert verify_file(out, [Entry("w", spec_of(t, "w"), lambda: t)]) == 1
    assert t.sum().item() == N


def test_convert_with_verify_from_a_mapped_pt_leaves_the_callers_tensor_alone(tmp_path, pt):
    t = edited_mmap(pt)
    result = convert(pt, tmp_path / "out.safetensors", verify=True)
    assert result.checked == 1
    assert t.sum().item() == N
    assert torch.equal(load_file(str(tmp_path / "out.safetensors"))["w"], torch.zeros(N))  # the file's bytes


def test_convert_through_memory_leaves_the_readers_tensors_alone(tmp_path):
    # A transposed view cannot be copied as a byte range of the file: convert reads the
    # tensor itself (writer, then --verify), the path that used to release its pages.
    path = tmp_path / "t.pt"
    torch.save({"w": torch.zeros(1024, 1024).t()}, path)
    with open_torch(path) as reader:
        w = reader.get_tensor("w")
        assert not w.is_contiguous()
        w.add_(1)  # a reader's tensor is the caller's memory too
        result = convert(path, tmp_path / "out.safetensors", reader=reader)
        assert result.method == "tensor"
        assert w.sum().item() == N
        # --verify reads the file again, not the caller's memory: the edit shows as a difference
        with pytest.raises(VerifyError, match="tensor 'w' differs"):
            convert(path, tmp_path / "out2.safetensors", reader=reader, verify=True)
        assert w.sum().item() == N
    assert torch.equal(load_file(str(tmp_path / "out.safetensors"))["w"], torch.ones(1024, 1024))
