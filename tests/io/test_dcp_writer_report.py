"""What `mapper convert --output-format dcp` says beside the DCP folder line: a killed run's
temporary is named (and its removal with --clean-stale said), as for a safetensors output."""
from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import save_file  # noqa: E402

from mapper_core.io import dcp_writer  # noqa: E402
from mapper_core.io.atomic import _host  # noqa: E402


def _dead_pid() -> int:
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
    return child


def test_a_killed_runs_temporary_is_named_then_its_removal_said(tmp_path, mapper):
    src = tmp_path / "src.safetensors"
    save_file({"w": torch.ones(2, 3)}, src)
    out = tmp_path / "out-dcp"
    out.mkdir()
    temp = out / f".{dcp_writer.DATA_NAME}.{_dead_pid()}@{_host()}.k1ll3d00.mapper-tmp"
    temp.write_bytes(b"x" * 100)
    done = mapper("convert", src, out, "--output-format", "dcp", "--verify")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == [
        "  DCP folder: __0_0.distcp, .metadata",
        "  verified 1 tensor bit for bit against the source",
        f"  note: 1 temporary file left by killed runs beside the output: {temp.name}; their processes are gone: "
        "pass --clean-stale to remove them"]
    assert temp.exists()
    done = mapper("convert", src, out, "--output-format", "dcp", "--force", "--clean-stale")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"  removed 1 temporary file left by killed runs: {temp.name}"
    assert not temp.exists()


def test_aliases_are_said_as_dcp_stores_them(tmp_path, mapper):
    src = tmp_path / "tied.pt"
    w = torch.randn(3, 2)
    torch.save({"emb.weight": w, "head.weight": w}, src)
    done = mapper("convert", src, tmp_path / "tied-dcp", "--output-format", "dcp")
    assert done.returncode == 0, done.stderr
    assert "  1 aliased key stored once (both names point at the same bytes)" in done.stdout.splitlines()
    assert "mapper.aliases" not in done.stdout
