"""An existing DST is refused before the source is read (which for a multi-GB .pt takes long), for a
single file, a sharded index and a folder; the check just before writing stays, for a DST that
appears meanwhile. Torch-free: the source is a file no reader could read."""
from __future__ import annotations

import pytest
from tiny_safetensors import write_f32

from mapper_core.cli.context import Context
from mapper_core.io.shard_manifest import manifest_path

RULES = "version: 1\nrules:\n  - match: 'a\\.(\\w+)'\n    target: 'b.{1}'\n"
DESTINATIONS = {"file": ("out.safetensors", "out.safetensors"),
                "index": ("out.safetensors.index.json", "out.safetensors.index.json"),
                "folder": ("outdir", "outdir/model.safetensors")}


def setup(tmp_path, existing: str) -> None:
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint at all")  # reading it would fail
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "outdir").mkdir()
    (tmp_path / existing).write_bytes(b"an earlier output")


def opened(monkeypatch) -> list[str]:
    """The paths the CLI opens a reader on, recorded."""
    seen: list[str] = []
    original = Context.open_reader

    def recording(self, path, *args, **kwargs):
        seen.append(str(path))
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(Context, "open_reader", recording)
    return seen


@pytest.mark.parametrize("kind", DESTINATIONS)
@pytest.mark.parametrize("command", [("convert",), ("export", "--rules", "rules.yaml"),
                                     ("export", "--rules", "rules.yaml", "--source-specs", "broken.pt")])
def test_an_existing_destination_is_refused_before_the_source_is_opened(tmp_path, mapper, monkeypatch, kind, command):
    dst, existing = DESTINATIONS[kind]
    setup(tmp_path, existing)
    seen = opened(monkeypatch)
    proc = mapper(command[0], "broken.pt", dst, *command[1:], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"{existing}: already exists; pass --force" in proc.stderr
    assert seen == [] and "not a readable" not in proc.stderr
    assert (tmp_path / existing).read_bytes() == b"an earlier output"


def test_force_skips_the_early_check_and_replaces(tmp_path, mapper):
    setup(tmp_path, "out.safetensors")
    write_f32(tmp_path / "src.safetensors", {"a.w": [2]})
    proc = mapper("convert", "src.safetensors", "out.safetensors", "--force", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.safetensors").read_bytes() != b"an earlier output"


def test_a_destination_that_appears_while_reading_is_still_refused(tmp_path, mapper, monkeypatch):
    write_f32(tmp_path / "src.safetensors", {"a.w": [2]})
    original = Context.open_reader

    def racing(self, path, *args, **kwargs):  # another process writes DST after the early check
        (tmp_path / "out.safetensors").write_bytes(b"theirs")
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(Context, "open_reader", racing)
    proc = mapper("convert", "src.safetensors", "out.safetensors", cwd=tmp_path)
    assert proc.returncode == 2 and "out.safetensors: already exists; pass --force" in proc.stderr
    assert (tmp_path / "out.safetensors").read_bytes() == b"theirs"


def test_an_index_a_workers_run_may_resume_is_left_to_the_write(tmp_path, mapper, monkeypatch):
    setup(tmp_path, "out.safetensors.index.json")
    manifest_path(tmp_path / "out.safetensors.index.json").write_text("{}\n")
    seen = opened(monkeypatch)
    proc = mapper("convert", "broken.pt", "out.safetensors.index.json", "--workers", "2", cwd=tmp_path)
    assert proc.returncode == 2 and seen == ["broken.pt"]  # the reader was reached: its refusal is the reader's
    assert "already exists" not in proc.stderr


def test_with_max_shard_size_a_single_file_destination_waits_for_the_headers(tmp_path, mapper):
    setup(tmp_path, "out.safetensors")  # one file or shards: only the headers tell
    proc = mapper("convert", "broken.pt", "out.safetensors", "--max-shard-size", "1MB", cwd=tmp_path)
    assert proc.returncode == 2 and "already exists" not in proc.stderr
