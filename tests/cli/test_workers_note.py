"""--workers only shares out the shards of a sharded output: for one file (or a DCP folder) it has
no effect, and the command says so instead of ignoring it (trial); a one-shard output says '1 shard'."""
from __future__ import annotations

import json
import struct

from mapper_core.cli import main


def _safetensors(path, count: int = 3) -> None:
    header = {f"w{i}": {"dtype": "F32", "shape": [4], "data_offsets": [16 * i, 16 * (i + 1)]} for i in range(count)}
    text = json.dumps(header, separators=(",", ":")).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(16 * count))


def test_workers_on_a_single_file_output_are_named_as_having_no_effect(tmp_path, capsys):
    _safetensors(tmp_path / "a.safetensors")
    assert main(["convert", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"), "--workers", "2",
                 "--no-source-hash", "-q"]) == 0
    err = capsys.readouterr().err
    assert "mapper: warning: --workers 2 had no effect" in err and "one file, written by one process" in err
    assert "--max-shard-size" in err


def test_no_note_when_the_workers_write_shards(tmp_path, capsys):
    _safetensors(tmp_path / "a.safetensors", 6)
    index = tmp_path / "b.safetensors.index.json"
    assert main(["convert", str(tmp_path / "a.safetensors"), str(index), "--workers", "2", "--max-shard-size", "40B",
                 "--no-source-hash"]) == 0
    out, err = capsys.readouterr()
    assert "no effect" not in err and "  3 shards of " in out


def test_one_shard_is_one_shard(tmp_path, capsys):
    _safetensors(tmp_path / "a.safetensors", 1)
    assert main(["convert", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors.index.json"),
                 "--no-source-hash"]) == 0
    assert "  1 shard of " in capsys.readouterr().out
