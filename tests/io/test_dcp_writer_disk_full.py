"""--output-format dcp on a full disk: the clean 'writing failed' error the safetensors writer gives
(naming the destination, nothing left behind), not torch.save's RuntimeError.

The disk is a real 64 KiB tmpfs mounted for the test (root only; skipped where mounting is not
possible), so the error is the one the kernel gives, met inside torch's zip writer."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import save_file  # noqa: E402

from mapper_core.errors import BadInputError  # noqa: E402
from mapper_core.io.convert import convert  # noqa: E402


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs, unmounted afterwards."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to mount a small tmpfs")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("could not mount a tmpfs here")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.fixture
def source(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "src.safetensors"
    save_file({f"w{i}": torch.randn(100, 100) for i in range(4)}, path)  # 40 KB each: the second does not fit
    return path


def test_full_disk_is_a_clean_error_and_leaves_nothing(source, full_disk, mapper):
    out = full_disk / "o-dcp"
    with pytest.raises(BadInputError) as caught:
        convert(source, out, output_format="dcp")
    assert str(caught.value) == f"{out}: writing failed: No space left on device; nothing was written"
    assert os.listdir(full_disk) == []
    done = mapper("convert", source, out, "--output-format", "dcp")
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"mapper: error: {out}: writing failed: No space left on device; nothing was written\n"
    assert os.listdir(full_disk) == []


def test_torch_save_failing_otherwise_is_a_writing_error(source, tmp_path, monkeypatch):
    def broken(tensor, fh):
        raise RuntimeError("[enforce fail at inline_container.cc:1] something else\nmore lines")

    monkeypatch.setattr(torch, "save", broken)
    out = tmp_path / "o-dcp"
    with pytest.raises(BadInputError, match=r"o-dcp: writing failed: torch\.save failed: \[enforce fail at "
                                            r"inline_container\.cc:1\] something else; nothing was written$"):
        convert(source, out, output_format="dcp")
    assert not out.exists()
