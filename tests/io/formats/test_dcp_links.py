"""A DCP folder's data files follow the same rule as an index's shards: a data file whose real path
(links resolved) is outside the folder is refused unless ``--allow-outside-shards``
(``allow_outside_shards=True``); a link inside the folder is read as usual."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from dcp_fixtures import save_dcp  # noqa: E402
from mapper_core.errors import CheckpointError  # noqa: E402
from mapper_core.io.formats import open_checkpoint  # noqa: E402


@pytest.fixture
def folder(tmp_path):
    torch.manual_seed(0)
    return save_dcp({"w": torch.randn(4, 3), "b": torch.randn(4)}, tmp_path / "ck")


def _move(folder, to):
    """Move the data file to ``to`` and leave a symlink to it in its place."""
    data = folder / "__0_0.distcp"
    to.parent.mkdir(exist_ok=True)
    data.rename(to)
    data.symlink_to(to)
    return data


def test_a_data_file_linked_outside_the_folder_is_refused(folder, tmp_path, mapper):
    _move(folder, tmp_path / "elsewhere" / "data.distcp")
    real = (tmp_path / "elsewhere" / "data.distcp").resolve()
    with pytest.raises(CheckpointError, match="outside the checkpoint folder") as caught:
        open_checkpoint(folder)
    assert str(caught.value) == (
        f"{folder / '.metadata'}: data file '__0_0.distcp' is a link to {real}, outside the checkpoint folder "
        f"{folder.resolve()}; refused so a checkpoint cannot point reads elsewhere. If you trust it, pass "
        "--allow-outside-shards (Python: allow_outside_shards=True)")
    for command in (["inspect", folder], ["convert", folder, tmp_path / "out.safetensors"]):
        done = mapper(*command, cwd=tmp_path)
        assert done.returncode == 2 and "--allow-outside-shards" in done.stderr, done.stderr
    assert not (tmp_path / "out.safetensors").exists()


def test_allow_outside_shards_reads_it(folder, tmp_path, mapper):
    _move(folder, tmp_path / "elsewhere" / "data.distcp")
    with open_checkpoint(folder, allow_outside_shards=True) as reader:
        assert reader.get_tensor("w").shape == (4, 3)
    done = mapper("convert", folder, tmp_path / "out.safetensors", "--allow-outside-shards", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tensors"] == 2


def test_a_link_inside_the_folder_is_read(folder):
    _move(folder, folder / "sub" / "data.distcp")
    with open_checkpoint(folder) as reader:
        assert reader.get_tensor("b").shape == (4,)
