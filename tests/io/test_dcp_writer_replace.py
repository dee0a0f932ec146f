"""`convert --output-format dcp --force` over an earlier DCP checkpoint: the folder ends up holding exactly
the new checkpoint (the replaced one's other data files removed once the new .metadata is in place);
files that are no checkpoint's are named, never removed; a failure leaves the earlier checkpoint whole."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import save_file  # noqa: E402

from dcp_fixtures import dcp_state, save_sharded_dcp  # noqa: E402  (tests/helpers)
from mapper_core.errors import CheckpointWarning  # noqa: E402
from mapper_core.io import atomic  # noqa: E402
from mapper_core.io.convert import convert  # noqa: E402


@pytest.fixture
def two_ranks(tmp_path):
    """What dcp.save on two ranks writes: __0_0.distcp, __1_0.distcp and .metadata."""
    torch.manual_seed(0)
    state = {"proj.weight": torch.randn(6, 10), "proj.bias": torch.randn(6)}
    folder = save_sharded_dcp(state, tmp_path / "ck", {"proj.weight": 1})
    assert sorted(p.name for p in folder.iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    return folder, state


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.safetensors"
    save_file({"w": torch.arange(6.0).reshape(2, 3)}, path)
    return path


def _files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_force_removes_the_replaced_checkpoints_other_data_files(two_ranks, small, mapper):
    folder, _ = two_ranks
    done = mapper("convert", small, folder, "--output-format", "dcp", "--force")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in folder.iterdir()) == [".metadata", "__0_0.distcp"]
    assert ("  removed 1 data file of the checkpoint it replaced (no longer named by .metadata): __1_0.distcp"
            in done.stdout.splitlines())
    assert done.stderr == ""
    assert torch.equal(dcp_state(folder)["w"], torch.arange(6.0).reshape(2, 3))


def test_the_json_result_lists_what_was_removed(two_ranks, small, mapper):
    folder, _ = two_ranks
    done = mapper("convert", small, folder, "--output-format", "dcp", "--force", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["earlier_removed"] == [str(folder / "__1_0.distcp")]


def test_files_no_metadata_names_are_named_and_left(two_ranks, small, mapper):
    folder, _ = two_ranks
    (folder / "__7_0.distcp").write_bytes(b"of a checkpoint before the last")
    (folder / "notes.txt").write_text("mine")
    (folder / "logs").mkdir()
    done = mapper("convert", small, folder, "--output-format", "dcp", "--force")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in folder.iterdir()) == [".metadata", "__0_0.distcp", "__7_0.distcp", "logs",
                                                        "notes.txt"]
    assert (f"mapper: warning: {folder}: 1 data file of an earlier checkpoint, named by no .metadata, is still "
            "there: __7_0.distcp;") in done.stderr
    assert (f"mapper: warning: {folder}: also holds 2 files that are not part of the DCP checkpoint written: "
            "logs/, notes.txt; left as they are") in done.stderr


def test_a_failed_write_leaves_the_earlier_checkpoint_whole(two_ranks, tmp_path, mapper):
    folder, state = two_ranks
    before = _files(folder)
    bad = tmp_path / "bad.pt"
    torch.save({"a": torch.ones(3), "b": torch.empty(2, device="meta")}, bad)  # fails once 'b' is read
    done = mapper("convert", bad, folder, "--output-format", "dcp", "--force")
    assert done.returncode == 2 and "meta tensor" in done.stderr
    assert _files(folder) == before


def test_a_failed_commit_leaves_the_earlier_checkpoint_whole(two_ranks, small, monkeypatch):
    folder, state = two_ranks
    before = _files(folder)
    rename = atomic.AtomicFiles._rename

    def failing(self, temp, dest):  # the data file is renamed into place, then .metadata fails
        if dest.name == ".metadata":
            raise OSError(5, "Input/output error", str(dest))
        rename(self, temp, dest)

    monkeypatch.setattr(atomic.AtomicFiles, "_rename", failing)
    with pytest.raises(Exception, match="Input/output error"):
        convert(small, folder, output_format="dcp", force=True)
    assert _files(folder) == before
    got = dcp_state(folder)
    assert all(torch.equal(got[k], v) for k, v in state.items())


def test_an_unreadable_earlier_metadata_removes_nothing(two_ranks, small):
    folder, _ = two_ranks
    (folder / ".metadata").write_bytes(b"not a pickle")
    with pytest.warns(CheckpointWarning, match=r"1 data file of an earlier checkpoint.*__1_0\.distcp"):
        result = convert(small, folder, output_format="dcp", force=True)
    assert result.earlier_removed == ()
    assert (folder / "__1_0.distcp").exists()


def test_a_metadata_naming_a_users_file_as_data_does_not_get_it_deleted(tmp_path, small, mapper):
    # a downloaded or edited .metadata is input: one that says `v` lives in config.json must not make
    # --force delete config.json, which dcp.save never names a data file
    import pickle

    import torch.distributed.checkpoint as dcp

    folder = tmp_path / "ck"
    dcp.save({"w": torch.ones(3), "v": torch.ones(2)}, checkpoint_id=str(folder), no_dist=True)
    meta = pickle.loads((folder / ".metadata").read_bytes())  # our own fixture, written just above
    for index, item in meta.storage_data.items():
        if index.fqn == "v":
            item.relative_path, item.offset, item.length = "config.json", 0, 5
    (folder / ".metadata").write_bytes(pickle.dumps(meta))
    config = b'{"model_type": "llama"}\n'
    (folder / "config.json").write_bytes(config)

    done = mapper("convert", small, folder, "--output-format", "dcp", "--force")
    assert done.returncode == 0, done.stderr
    assert (folder / "config.json").read_bytes() == config
    assert "removed" not in done.stdout
    assert "also holds 1 file that is not part of the DCP checkpoint written: config.json; left as it is" in done.stderr
