"""An earlier output's files a new one does not replace: old shards after --force with another shard
count, or the other layout beside the new one. Named on stderr and in --json; --clean-stale removes
only the shards the replaced index named, only after the new output is in place. Torch-free."""
from __future__ import annotations

import json

import pytest
from tiny_safetensors import write_f32

from mapper_core.io.atomic import AtomicFiles

FOUR = ("out.safetensors.index.json", "--max-shard-size", "10KB")  # 4 tensors of 9 KiB: 4 shards
TWO = ("out.safetensors.index.json", "--max-shard-size", "20KB")  # 2 shards
OLD = [f"out-0000{i}-of-00004.safetensors" for i in range(1, 5)]
NEW = ["out-00001-of-00002.safetensors", "out-00002-of-00002.safetensors"]


@pytest.fixture
def folder(tmp_path):
    write_f32(tmp_path / "src.safetensors", {f"t{i}": [48, 48] for i in range(4)})
    return tmp_path


def outputs(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("out"))


def test_force_with_fewer_shards_names_the_old_ones_it_left(folder, mapper):
    assert mapper("convert", "src.safetensors", *FOUR, cwd=folder).returncode == 0
    proc = mapper("convert", "src.safetensors", *TWO, "--force", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert ("mapper: warning: 4 shards of the earlier output, named by the index this write replaced, are still "
            "there and no longer used: out-00001-of-00004.safetensors") in proc.stderr
    assert outputs(folder) == sorted(OLD + NEW + ["out.safetensors.index.json"])
    again = mapper("convert", "src.safetensors", *FOUR, "--force", "--json", cwd=folder)  # and back to four
    assert json.loads(again.stdout)["earlier_output"] == {"replaced": NEW, "beside": [], "removed": [],
                                                            "mismatched": []}
    proc = mapper("convert", "src.safetensors", *TWO, "--force", "--json", cwd=folder)
    assert json.loads(proc.stdout)["earlier_output"]["replaced"] == OLD


def test_clean_stale_removes_them_after_the_new_output_is_in_place(folder, mapper):
    assert mapper("convert", "src.safetensors", *FOUR, cwd=folder).returncode == 0
    proc = mapper("convert", "src.safetensors", *TWO, "--force", "--clean-stale", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert "removed 4 shards of the earlier output that the replaced index named" in proc.stdout
    assert "warning" not in proc.stderr
    assert outputs(folder) == sorted(NEW + ["out.safetensors.index.json"])
    index = json.loads((folder / "out.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == NEW
    export = mapper("export", "out.safetensors.index.json", "back.safetensors", "--rules", _rules(folder), "--json",
                    cwd=folder)  # export's report says the same; nothing to clean here
    assert json.loads(export.stdout)["written"]["earlier_output"] == {
        "replaced": [], "beside": [], "removed": [], "mismatched": []}


def _rules(folder) -> str:
    (folder / "rules.yaml").write_text("version: 1\nrules:\n  - match: 't(\\d)'\n    target: 't{1}'\n")
    return "rules.yaml"


def test_a_failed_write_removes_nothing(folder, mapper, monkeypatch):
    assert mapper("convert", "src.safetensors", *FOUR, cwd=folder).returncode == 0
    before = {n: (folder / n).read_bytes() for n in outputs(folder)}

    def full(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(AtomicFiles, "commit", full)
    proc = mapper("convert", "src.safetensors", *TWO, "--force", "--clean-stale", cwd=folder)
    assert proc.returncode == 2 and "nothing was written" in proc.stderr
    assert {n: (folder / n).read_bytes() for n in outputs(folder)} == before


def test_only_plain_shard_names_in_the_index_folder_are_ever_removed(folder, mapper):
    (folder / "sub").mkdir()
    decoys = ["notes.txt", "sub/x.safetensors", "../outside.safetensors", "src.safetensors"]
    for name in decoys:
        (folder / name).write_bytes(b"keep me" if name != "src.safetensors" else (folder / "src.safetensors").read_bytes())
    write_f32(folder / "out-00001-of-00004.safetensors", {"k0": [2]})
    weight_map = {f"k{i}": name for i, name in enumerate(["out-00001-of-00004.safetensors", *decoys])}
    (folder / "out.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    proc = mapper("convert", "src.safetensors", *TWO, "--force", "--clean-stale", "--json", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["earlier_output"]["removed"] == ["out-00001-of-00004.safetensors"]
    assert all((folder / name).exists() for name in decoys)


def test_a_single_file_beside_an_earlier_index_is_named_and_never_removed(folder, mapper):
    assert mapper("convert", "src.safetensors", *TWO, cwd=folder).returncode == 0
    proc = mapper("convert", "src.safetensors", "out.safetensors", "--clean-stale", "--json", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["earlier_output"] == {
        "replaced": [], "beside": ["out.safetensors.index.json", *NEW], "removed": [], "mismatched": []}
    assert ("3 files of an earlier output in the other layout (one file vs. an index and shards) are beside this "
            "one: out.safetensors.index.json") in proc.stderr
    assert outputs(folder) == sorted(NEW + ["out.safetensors", "out.safetensors.index.json"])


def test_shards_beside_an_earlier_single_file_name_it(folder, mapper):
    (folder / "dir").mkdir()
    assert mapper("convert", "src.safetensors", "dir", cwd=folder).returncode == 0  # dir/model.safetensors
    proc = mapper("convert", "src.safetensors", "dir", "--max-shard-size", "20KB", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert "1 file of an earlier output in the other layout" in proc.stderr and "model.safetensors; a loader may " \
           "pick it up: delete it if not wanted" in proc.stderr
    assert (folder / "dir" / "model.safetensors").exists()


def test_a_named_file_that_was_not_the_replaced_indexs_shard_is_left_alone(folder, mapper):
    """Only a file whose header stores exactly the keys the replaced index mapped to it was its shard."""
    write_f32(folder / "other.safetensors", {"k0": [2], "k1": [2]})  # the index says it holds zz: it does not
    write_f32(folder / "fewer.safetensors", {"a": [2]})  # holds a, but the index maps a and b to it
    write_f32(folder / "more.safetensors", {"c": [2], "d": [2]})  # holds c and d, the index maps only c
    write_f32(folder / "mine.safetensors", {"e": [2], "f": [2]})  # exactly the index's keys: a real shard
    (folder / "junk.safetensors").write_bytes(b"precious, not safetensors")
    weight_map = {"zz": "other.safetensors", "a": "fewer.safetensors", "b": "fewer.safetensors",
                  "c": "more.safetensors", "e": "mine.safetensors", "f": "mine.safetensors", "j": "junk.safetensors"}
    (folder / "out.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    proc = mapper("convert", "src.safetensors", *TWO, "--force", "--clean-stale", "--json", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)["earlier_output"]
    assert report["removed"] == ["mine.safetensors"]
    assert report["mismatched"] == ["other.safetensors", "fewer.safetensors", "more.safetensors", "junk.safetensors"]
    assert not (folder / "mine.safetensors").exists()
    assert all((folder / n).exists() for n in report["mismatched"])
    assert ("mapper: warning: 4 files named by the index this write replaced do not hold exactly the keys that "
            "index mapped to them, so they were not its shards: left alone (also with --clean-stale): "
            "other.safetensors, fewer.safetensors, more.safetensors …") in proc.stderr
    assert "are still there" not in proc.stderr


def test_without_clean_stale_a_mismatched_file_is_not_called_a_shard_to_delete(folder, mapper):
    write_f32(folder / "other.safetensors", {"k0": [2]})
    (folder / "out.safetensors.index.json").write_text(json.dumps({"weight_map": {"zz": "other.safetensors"}}))
    proc = mapper("convert", "src.safetensors", *TWO, "--force", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert "1 file named by the index this write replaced does not hold exactly the keys that index mapped to it, " \
           "so it was not one of its shards: left alone" in proc.stderr
    assert "no longer used" not in proc.stderr and (folder / "other.safetensors").exists()
