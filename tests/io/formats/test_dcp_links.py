"""A DCP folder's data files and its ``.metadata`` follow the same rule as an index's shards: a file
whose real path (links resolved) is outside the folder is refused unless ``--allow-outside-shards``
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


def _move(folder, to, name="__0_0.distcp"):
    """Move the folder's file ``name`` to ``to`` and leave a symlink to it in its place."""
    data = folder / name
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


@pytest.mark.parametrize("name", ["__0_0.distcp", ".metadata"])
def test_allow_outside_shards_reads_it(folder, tmp_path, mapper, name):
    _move(folder, tmp_path / "elsewhere" / name, name)
    with open_checkpoint(folder, allow_outside_shards=True) as reader:
        assert reader.get_tensor("w").shape == (4, 3)
    done = mapper("convert", folder, tmp_path / "out.safetensors", "--allow-outside-shards", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tensors"] == 2


@pytest.mark.parametrize("name", ["__0_0.distcp", ".metadata"])
def test_a_link_inside_the_folder_is_read(folder, name):
    _move(folder, folder / "sub" / name, name)
    with open_checkpoint(folder) as reader:
        assert reader.get_tensor("b").shape == (4,)


def test_a_metadata_linked_outside_the_folder_is_refused(folder, tmp_path, mapper):
    _move(folder, tmp_path / "elsewhere" / ".metadata", ".metadata")
    (tmp_path / "r.yaml").write_text("version: 1\nrules:\n  - match: '(.+)'\n    target: '{1}'\n")
    real = (tmp_path / "elsewhere" / ".metadata").resolve()
    expected = (f"{folder / '.metadata'}: is a link to {real}, outside the checkpoint folder {folder.resolve()}; "
                "refused so a checkpoint cannot point reads elsewhere. If you trust it, pass --allow-outside-shards "
                "(Python: allow_outside_shards=True)")
    for given in (folder, folder / ".metadata"):  # the folder, and the file itself
        with pytest.raises(CheckpointError) as caught:
            open_checkpoint(given)
        assert str(caught.value) == expected
    for command in (["inspect", folder], ["plan", folder, "--rules", "r.yaml"],
                    ["convert", folder, tmp_path / "out.safetensors"]):
        done = mapper(*command, cwd=tmp_path)
        assert done.returncode == 2 and done.stderr == f"mapper: error: {expected}\n", done.stderr
    assert not (tmp_path / "out.safetensors").exists()


def test_a_metadata_linked_outside_is_not_opened_at_all(folder, tmp_path, monkeypatch):
    from mapper_core.io.formats import dcp_metadata

    _move(folder, tmp_path / "elsewhere" / ".metadata", ".metadata")
    monkeypatch.setattr(dcp_metadata, "read_whole", lambda *a, **k: pytest.fail("the linked .metadata was read"))
    with pytest.raises(CheckpointError, match="outside the checkpoint folder"):
        open_checkpoint(folder)
