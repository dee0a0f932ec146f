"""The library refuses a DCP folder named like a checkpoint file (``x.safetensors``) as the CLI does,
with the same check, before the source is read and with nothing written. Torch-free: the refusal
comes before the DCP writer (which needs torch) is reached."""
from __future__ import annotations

import pytest
from tiny_safetensors import write_f32

from mapper_core.errors import BadInputError
from mapper_core.io.convert import convert


@pytest.mark.parametrize("dst", ["x.safetensors", "x.safetensors.index.json", "X.PT/", "x.bin", "x.ckpt"])
def test_a_dcp_folder_named_like_a_checkpoint_file_is_refused(tmp_path, monkeypatch, dst):
    write_f32(tmp_path / "src.safetensors", {"a.w": [2, 2]})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadInputError) as caught:
        convert("src.safetensors", dst, output_format="dcp")
    assert str(caught.value) == (
        f"{dst}: output_format='dcp' writes a folder (.metadata and data files), but this name is a checkpoint "
        "file's; give a folder name (e.g. out-dcp), or drop output_format='dcp' to write safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.safetensors"]


def test_the_name_is_refused_before_the_source_is_opened(tmp_path):
    with pytest.raises(BadInputError, match="writes a folder"):  # not "no such file": nothing was read
        convert(tmp_path / "missing.pt", tmp_path / "out.safetensors", output_format="dcp")
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_file_name_is_still_fine_for_safetensors(tmp_path):
    write_f32(tmp_path / "src.safetensors", {"a.w": [2, 2]})
    result = convert(tmp_path / "src.safetensors", tmp_path / "x.safetensors", output_format="safetensors")
    assert result.paths == (str(tmp_path / "x.safetensors"),)
