"""torchrun -m mapper_core.dist convert: 2 CPU ranks (gloo) write the same bytes one process writes."""
from __future__ import annotations

import subprocess
import sys

import torch

from cli_runner import environment
from dcp_fixtures import save_sharded_dcp
from mapper_core.dist.__main__ import main as dist_main
from mapper_core.io.convert import convert

RULES = "version: 1\nname: rename\nrules:\n  - match: 'block\\.(\\d+)\\.(.+)'\n    target: 'layers.{1}.{2}'\n"


def _torchrun(*args, cwd) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "mapper_core.dist", *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, env=environment({"OMP_NUM_THREADS": "1"}),
                          cwd=cwd, timeout=600)


def test_two_ranks_write_what_one_process_writes(tmp_path):
    torch.manual_seed(0)
    state = {f"block.{i}.weight": torch.randn(24, 16) for i in range(8)}
    state.update({f"block.{i}.bias": torch.randn(24) for i in range(8)})
    src = save_sharded_dcp(state, tmp_path / "dcp", {f"block.{i}.weight": 1 for i in range(8)})
    rules = tmp_path / "rename.yaml"
    rules.write_text(RULES)
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    convert(src, tmp_path / "one" / "model.safetensors.index.json", rules=_rules(rules), max_shard_size="4KB")

    done = _torchrun("convert", src, tmp_path / "two" / "model.safetensors.index.json", "--rules", rules,
                     "--max-shard-size", "4KB", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("wrote ") == 1  # one summary, from rank 0
    one = {p.name: p.read_bytes() for p in (tmp_path / "one").iterdir()}
    two = {p.name: p.read_bytes() for p in (tmp_path / "two").iterdir()}
    assert len(one) > 4 and one == two

    again = _torchrun("convert", src, tmp_path / "two" / "model.safetensors.index.json", "--rules", rules,
                      "--max-shard-size", "4KB", cwd=tmp_path)
    # torchrun itself exits 1 when a rank fails; each rank exited 2, and rank 0 alone printed the reason
    assert again.returncode != 0 and again.stderr.count("already exists; pass --force") == 1
    assert "mapper: error: rank 1: stopped (see rank 0's error)" in again.stderr
    assert "exitcode  : 2" in again.stderr and "terminated" not in again.stderr


def _rules(path):
    from mapper_core.rules import load_rules

    return load_rules(path)


def test_refusals_before_any_process_group(tmp_path, capsys):
    assert dist_main(["plan", "a", "--rules", "r"]) == 2
    assert "only convert runs on torch.distributed" in capsys.readouterr().err
    assert dist_main(["convert", "a", "b.safetensors"]) == 2
    assert "name its index" in capsys.readouterr().err
    assert dist_main(["convert", "a", "b.safetensors.index.json", "--workers", "2"]) == 2
    assert "do not apply here" in capsys.readouterr().err


def test_a_missing_output_folder_is_refused_before_the_source_is_read(tmp_path, capsys, monkeypatch):
    import mapper_core.dist.ranks as ranks

    def no_ranks(*_a, **_k):
        raise AssertionError("the ranks started before the output folder was checked")

    monkeypatch.setattr(ranks, "TorchRanks", no_ranks)
    missing = tmp_path / "out"
    assert dist_main(["convert", str(tmp_path / "src.safetensors"), str(missing / "m.safetensors.index.json")]) == 2
    err = capsys.readouterr().err
    assert f"the folder {missing} does not exist; create it first" in err
