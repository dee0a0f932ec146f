"""mapper plan --cost: bytes, shards per worker, peak memory, the largest tensor; from headers only."""
from __future__ import annotations

import json

import torch
from safetensors.torch import save_file

from dcp_fixtures import save_sharded_dcp
from mapper_core.io.convert import convert

IDENTITY = "version: 1\nname: same\nrules:\n  - match: '(.+)'\n    target: '{1}'\n"


def test_cost_matches_what_convert_writes(tmp_path, mapper):
    torch.manual_seed(0)
    src = tmp_path / "src.safetensors"
    save_file({f"l.{i}.w": torch.randn(16, 8 + i) for i in range(9)}, src)
    rules = tmp_path / "same.yaml"
    rules.write_text(IDENTITY)
    done = mapper("plan", src, "--rules", rules, "--cost", "--workers", "2", "--max-shard-size", "2KB", "--json")
    assert done.returncode == 0, done.stderr
    cost = json.loads(done.stdout)["cost"]
    (tmp_path / "out").mkdir()
    result = convert(src, tmp_path / "out" / "model.safetensors.index.json", max_shard_size="2KB")
    shards = sorted(p.split("/")[-1] for p in result.paths[:-1])
    assert sorted(s for w in cost["workers"] for s in w["shards"]) == shards
    assert cost["read_bytes"] == result.tensor_bytes and cost["tensors"] == 9
    assert cost["largest_tensor"]["key"] == "l.8.w" and cost["largest_tensor"]["bytes"] == 16 * 16 * 4
    loads = [w["write_bytes"] for w in cost["workers"]]
    assert sum(loads) == cost["write_bytes"] and max(loads) - min(loads) <= max(16 * 16 * 4 * 2, 1)
    assert all(w["peak_memory_bytes"] == 0 for w in cost["workers"])  # safetensors: copied file to file

    text = mapper("plan", src, "--rules", rules, "--cost", "--workers", "2", "--max-shard-size", "2KB")
    assert "COST (from headers)" in text.stdout and "largest tensor: l.8.w F32 [16, 16]" in text.stdout
    assert "worker 1:" in text.stdout


def test_dcp_cost_from_metadata_alone(tmp_path, mapper):
    state = {"w": torch.randn(8, 10), "b": torch.randn(8)}
    folder = save_sharded_dcp(state, tmp_path / "dcp", {"w": 1})
    for data in folder.glob("*.distcp"):
        data.unlink()  # headers only
    rules = tmp_path / "same.yaml"
    rules.write_text(IDENTITY)
    done = mapper("plan", folder, "--rules", rules, "--cost", "--json")
    assert done.returncode == 0, done.stderr
    worker = json.loads(done.stdout)["cost"]["workers"][0]
    assert worker["peak_memory_bytes"] == 2 * 8 * 10 * 4  # the whole tensor plus the chunk buffer (here: its size)


def test_workers_need_cost(tmp_path, mapper):
    rules = tmp_path / "same.yaml"
    rules.write_text(IDENTITY)
    save_file({"a": torch.zeros(2)}, tmp_path / "a.safetensors")
    done = mapper("plan", tmp_path / "a.safetensors", "--rules", rules, "--workers", "2")
    assert done.returncode == 2 and "only apply with --cost" in done.stderr
