"""--workers N is bounded (trial 5, F21): past 1,024 it is refused by the parser, before anything
is allocated per worker (10^8 was a MemoryError traceback after 22 s); `plan --cost` lists only
the workers given a shard and counts the idle ones in one line (it printed one per worker)."""
from __future__ import annotations

import json
import struct

import pytest

from mapper_core.errors import BadInputError
from mapper_core.io.convert import convert
from mapper_core.io import MAX_WORKERS
from mapper_core.io.cost import estimate
from mapper_core.specs import TensorSpec

IDENTITY = "version: 1\nname: same\nrules:\n  - match: '(.+)'\n    target: '{1}'\n"


def _safetensors(path, count: int = 3):
    header = {f"w{i}": {"dtype": "F32", "shape": [4], "data_offsets": [16 * i, 16 * (i + 1)]} for i in range(count)}
    text = json.dumps(header, separators=(",", ":")).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(16 * count))
    return path


@pytest.mark.parametrize("command", ["convert", "plan"])
@pytest.mark.parametrize("workers", ["100000000", "1025", "9" * 300, "0", "two"])
def test_workers_out_of_bounds_are_refused_by_the_parser(tmp_path, mapper, command, workers):
    src = _safetensors(tmp_path / "a.safetensors")
    rules = tmp_path / "same.yaml"
    rules.write_text(IDENTITY)
    args = [str(tmp_path / "o.safetensors.index.json"), "--max-shard-size", "40B"] if command == "convert" else \
        ["--rules", rules, "--cost"]
    r = mapper(command, src, *args, "--workers", workers)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"argument --workers: expected a number of workers, at least 1 and at most {MAX_WORKERS}, got" in r.stderr
    assert len(r.stderr) < 2000 and not (tmp_path / "o.safetensors.index.json").exists()


def test_the_library_refuses_too_many_workers(tmp_path):
    src = _safetensors(tmp_path / "a.safetensors")
    with pytest.raises(BadInputError, match="at most 1024, not 1025"):
        convert(src, tmp_path / "o.safetensors.index.json", max_shard_size="40B", workers=MAX_WORKERS + 1)


def test_the_most_workers_allowed_write_the_shards(tmp_path, mapper):
    src = _safetensors(tmp_path / "a.safetensors", 4)
    r = mapper("convert", src, tmp_path / "o.safetensors.index.json", "--max-shard-size", "40B", "--workers",
               str(MAX_WORKERS), "-q", "--no-source-hash")
    assert r.returncode == 0, r.stderr


def test_idle_workers_are_counted_not_listed(tmp_path, mapper):
    src = _safetensors(tmp_path / "a.safetensors", 3)
    rules = tmp_path / "same.yaml"
    rules.write_text(IDENTITY)
    r = mapper("plan", src, "--rules", rules, "--cost", "--workers", "1000", "--max-shard-size", "16B")
    assert r.returncode == 0, r.stderr
    listed = [line for line in r.stdout.splitlines() if line.startswith("  worker ")]
    assert len(listed) == 3 and "  997 more workers: idle (more workers than shards)" in r.stdout
    r = mapper("plan", src, "--rules", rules, "--cost", "--workers", "1000", "--max-shard-size", "16B", "--json")
    cost = json.loads(r.stdout)["cost"]
    assert [w["worker"] for w in cost["workers"]] == [0, 1, 2] and cost["idle_workers"] == 997


def test_estimate_lists_busy_workers_only():
    spec = TensorSpec("F32", (4,))
    cost = estimate([("a", [("w", spec, False)])], 3, 16, [8])
    assert [w.worker for w in cost.workers] == [0] and cost.idle_workers == 2
    assert estimate([("a", [("w", spec, False)])], 1, 16, [8]).idle_workers == 0
