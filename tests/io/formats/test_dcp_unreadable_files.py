"""A DCP folder whose files are not what they should be: a ``.metadata`` that is a device, a FIFO or
far too large, and data files that are folders, FIFOs or missing. Each is refused by name before
anything is read without bound (or a read blocks for ever).

The /dev/zero and FIFO cases run ``mapper`` in a child process with a memory limit and a timeout: on
a reader that reads them anyway, the child runs out of memory or hangs, never this test run."""
from __future__ import annotations

import os
import re

import pytest

torch = pytest.importorskip("torch")

from dcp_fixtures import save_dcp  # noqa: E402
from limited_mapper import limited_mapper  # noqa: E402
from mapper_core.errors import CheckpointError, CheckpointWarning  # noqa: E402
from mapper_core.io.convert import convert  # noqa: E402
from mapper_core.io.formats import dcp_metadata, open_checkpoint  # noqa: E402
from mapper_core.io.formats.dcp_metadata import read_layout  # noqa: E402
from mapper_core.io.provenance import Hasher  # noqa: E402


@pytest.fixture
def folder(tmp_path):
    torch.manual_seed(0)
    return save_dcp({"w": torch.randn(4, 3), "b": torch.randn(4), "step": 7}, tmp_path / "ck")


def test_metadata_linked_to_dev_zero_is_refused_before_reading(folder, tmp_path):
    (folder / ".metadata").unlink()
    (folder / ".metadata").symlink_to("/dev/zero")
    for src in (folder / ".metadata", folder):  # the file itself, and its folder
        done = limited_mapper("inspect", src, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"mapper: error: {folder / '.metadata'}: is a link to /dev/zero, outside the "
                                      "checkpoint folder")
        done = limited_mapper("inspect", src, "--allow-outside-shards", cwd=tmp_path)  # allowed there, still no file
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip() == (f"mapper: error: {folder / '.metadata'}: is a character device (a link to "
                                       "/dev/zero), not a regular file; a DCP .metadata is the file "
                                       "torch.distributed.checkpoint.save writes beside its data files. Give the "
                                       "checkpoint folder as it was saved")


def test_metadata_that_is_a_fifo_is_refused_without_waiting(folder, tmp_path):
    (folder / ".metadata").unlink()
    os.mkfifo(folder / ".metadata")
    done = limited_mapper("inspect", folder, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "/.metadata: is a FIFO (named pipe), not a regular file" in done.stderr
    assert "Traceback" not in done.stderr


def test_metadata_past_the_cap_is_refused_unless_allowed(folder, monkeypatch):
    size = (folder / ".metadata").stat().st_size
    monkeypatch.setattr(dcp_metadata, "MAX_METADATA_BYTES", size - 1)
    with pytest.raises(CheckpointError, match=rf"{size:,} bytes is more than a DCP \.metadata plausibly is .*"
                                              r"pass --allow-expansion \(Python: allow_expansion=True\)"):
        read_layout(folder / ".metadata")
    assert set(read_layout(folder / ".metadata", allow_large=True).tensors) == {"w", "b"}
    with open_checkpoint(folder, allow_expansion=True) as reader:
        assert reader.specs()["w"].shape == (4, 3)


def test_the_cap_holds_a_large_real_layout():
    # what DCP pickles per chunk (measured: about 150 bytes) times the chunks of a big sharded run
    assert dcp_metadata.MAX_METADATA_BYTES >= 150 * 7325 * 128  # a 405B model's tensors split 128 ways


def test_data_file_that_is_a_folder_is_named_not_the_destination(folder, tmp_path):
    data = folder / "__0_0.distcp"
    data.unlink()
    data.mkdir()
    out = tmp_path / "out.safetensors"
    with pytest.warns(CheckpointWarning, match=r"__0_0\.distcp \(a folder, not a regular file\)"), \
            pytest.raises(CheckpointError) as caught:
        convert(folder, out, hash_source=False)
    assert str(caught.value).startswith(f"{data}: the DCP data file named in .metadata is a folder, not a regular "
                                        "file")
    assert not out.exists()


def test_data_file_that_is_a_fifo_is_refused_without_waiting(folder, tmp_path):
    data = folder / "__0_0.distcp"
    data.unlink()
    os.mkfifo(data)
    for extra in ([], ["--no-source-hash"], ["--output-format", "dcp"]):  # the source hash on, off, none
        out = tmp_path / ("out-dcp" if extra[-1:] == ["dcp"] else "out.safetensors")
        done = limited_mapper("convert", folder, out, *extra, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert (f"mapper: error: {data}: the DCP data file named in .metadata is a FIFO (named pipe), not a regular "
                "file") in done.stderr
        assert not out.exists()


def test_missing_data_file_is_a_clean_error_with_the_source_hash_on(folder, tmp_path, mapper):
    data = folder / "__0_0.distcp"
    data.unlink()
    message = f"{data}: cannot read the DCP data file named in .metadata: No such file or directory"
    with pytest.warns(CheckpointWarning), pytest.raises(CheckpointError, match=re.escape(message)):
        convert(folder, tmp_path / "lib.safetensors")  # the source hash is on by default
    for extra in ([], ["--no-source-hash"], ["--output-format", "dcp"],
                  ["--max-shard-size", "100B", "--workers", "2"]):
        out = tmp_path / ("o-dcp" if "dcp" in extra else "o.safetensors.index.json" if extra[:1] == ["--max-shard-size"]
                          else "o.safetensors")
        done = mapper("convert", folder, out, *extra)
        assert done.returncode == 2, (extra, done.stderr)
        assert f"mapper: error: {message}; the checkpoint folder is incomplete (copy it again in full)" in done.stderr
        assert "Traceback" not in done.stderr and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_inspect_and_plan_warn_about_a_missing_data_file(folder, tmp_path, mapper):
    (folder / "__0_0.distcp").unlink()
    rules = tmp_path / "id.yaml"
    rules.write_text("version: 1\nname: id\nrules:\n  - match: '(.+)'\n    target: '{1}'\n")
    warning = (f"mapper: warning: {folder}: .metadata names data files that cannot be read: __0_0.distcp (missing); "
               "inspect and plan work from .metadata alone, but convert refuses the folder until its data files are "
               "there")
    for args in (["inspect", folder], ["plan", folder, "--rules", rules]):
        done = mapper(*args)
        assert done.returncode == 0, done.stderr
        assert warning in done.stderr


def test_hasher_names_a_source_file_that_went_away(tmp_path):
    with pytest.raises(CheckpointError, match=re.escape(f"{tmp_path / 'gone'}: cannot hash the source: No such file")):
        Hasher([tmp_path / "gone"])
