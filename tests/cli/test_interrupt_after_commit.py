"""Ctrl-C after the output's last rename: the message says the output is complete (it said "nothing was
written"), and a --workers run stopped between its index and the manifest's removal is finished by a
plain rerun (which refused the index as a file that "already exists")."""
from __future__ import annotations

import os
import textwrap

import pytest

from mapper_core.io.atomic import AtomicFiles
from safetensors_corpus import blob, entry

SHARDED = ("out.safetensors.index.json", "--max-shard-size", "128B", "--no-source-hash")


@pytest.fixture
def folder(tmp_path):
    header = {f"t{i}": entry("F32", [16], 64 * i, 64 * (i + 1)) for i in range(6)}
    (tmp_path / "src.safetensors").write_bytes(blob(header, bytes(range(256)) + bytes(128)))
    return tmp_path


def tree(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name.startswith("out")}


def interrupted_after_commit(monkeypatch, how=None) -> None:
    """Ctrl-C right after the first AtomicFiles.commit of this process returns, as if it arrived then
    (forked workers commit their shards undisturbed: the parent's one commit is the index)."""
    real, parent, calls = AtomicFiles.commit, os.getpid(), []

    def then_stop(self):
        real(self)
        if os.getpid() == parent and not calls:
            calls.append(self)
            (how or stop)()

    monkeypatch.setattr(AtomicFiles, "commit", then_stop)


def stop() -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize("sharded", [False, True])
def test_ctrl_c_after_the_last_rename_says_the_output_is_complete(folder, monkeypatch, mapper, sharded):
    args = SHARDED if sharded else ("out.safetensors",)
    interrupted_after_commit(monkeypatch)
    proc = mapper("convert", "src.safetensors", *args, cwd=folder)
    assert proc.returncode == 130
    assert "nothing was written" not in proc.stderr
    dest = args[0]
    others = " (and 3 more files)" if sharded else ""
    assert f"interrupted; the output was already complete: {dest} is in place{others}" in proc.stderr
    monkeypatch.undo()
    again = mapper("convert", "src.safetensors", *args, "--force", cwd=folder)
    assert again.returncode == 0 and (folder / dest).exists()


def test_ctrl_c_before_the_commit_point_still_says_nothing_was_written(folder, monkeypatch, mapper):
    def stop_in_commit(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(AtomicFiles, "commit", stop_in_commit)
    proc = mapper("convert", "src.safetensors", "out.safetensors", cwd=folder)
    assert proc.returncode == 130 and "interrupted; nothing was written" in proc.stderr
    assert tree(folder) == {}


def test_workers_stopped_before_the_manifest_was_removed_are_finished_by_a_rerun(folder, tmp_path_factory,
                                                                                  monkeypatch, mapper):
    clean = tmp_path_factory.mktemp("clean")
    (clean / "src.safetensors").write_bytes((folder / "src.safetensors").read_bytes())
    assert mapper("convert", "src.safetensors", *SHARDED, "--workers", "2", cwd=clean).returncode == 0

    interrupted_after_commit(monkeypatch)  # the index is the parent's only commit
    proc = mapper("convert", "src.safetensors", *SHARDED, "--workers", "2", cwd=folder)
    assert proc.returncode == 130
    manifest = folder / "out.safetensors.index.json.mapper-manifest"
    assert manifest.exists()  # Ctrl-C came between the index's rename and the manifest's removal
    assert "the output was already complete: out.safetensors.index.json is in place" in proc.stderr
    assert f"The resume manifest {manifest.name} was left behind: delete it, or rerun the same command" \
        in proc.stderr
    monkeypatch.undo()
    rerun = mapper("convert", "src.safetensors", *SHARDED, "--workers", "2", cwd=folder)
    assert rerun.returncode == 0, rerun.stderr
    assert not manifest.exists() and tree(folder) == tree(clean)


def test_an_index_replaced_since_is_not_taken_for_the_interrupted_runs(folder, monkeypatch, mapper):
    interrupted_after_commit(monkeypatch)
    assert mapper("convert", "src.safetensors", *SHARDED, "--workers", "2", cwd=folder).returncode == 130
    monkeypatch.undo()
    (folder / "out.safetensors.index.json").write_text("{}\n")  # someone else's file now
    rerun = mapper("convert", "src.safetensors", *SHARDED, "--workers", "2", cwd=folder)
    assert rerun.returncode == 2 and "out.safetensors.index.json: already exists; pass --force" in rerun.stderr
    assert (folder / "out.safetensors.index.json").read_text() == "{}\n"


def test_a_real_sigint_at_the_index_waits_for_the_manifest_to_go(folder):
    """The index's rename and the manifest's removal happen with SIGINT held: in a process whose only
    thread holds it (the command line on a pipe), it lands after both. A separate process: signals
    are the subject, and a test runner's own threads would take the signal."""
    from cli_runner import python_process

    code = textwrap.dedent("""
        import os, signal, sys
        from mapper_core.cli import main
        from mapper_core.io.atomic import AtomicFiles

        real, parent = AtomicFiles.commit, os.getpid()

        def then_sigint(self):
            real(self)
            if os.getpid() == parent:
                os.kill(parent, signal.SIGINT)

        AtomicFiles.commit = then_sigint
        sys.exit(main(sys.argv[1:] or {argv!r}))
    """).format(argv=["convert", "src.safetensors", *SHARDED, "--workers", "2"])
    proc = python_process(code, cwd=folder)
    assert proc.returncode == 130, proc.stderr
    assert "the output was already complete: out.safetensors.index.json is in place;" in proc.stderr
    assert "manifest" not in proc.stderr and not (folder / "out.safetensors.index.json.mapper-manifest").exists()


def test_a_workers_run_stopped_before_any_shard_says_nothing_was_written(tmp_path):
    import argparse

    from mapper_core.cli import _left_behind

    dst = tmp_path / "out" / "m.safetensors.index.json"
    dst.parent.mkdir()
    args = argparse.Namespace(workers=2, destination=str(dst))
    assert _left_behind(args, []).startswith("no shard was finished yet, so nothing was written")  # no manifest yet
    (dst.parent / "m.safetensors.index.json.mapper-manifest").write_text("{}")
    assert "shards already finished stay in place, recorded in the manifest" in _left_behind(args, [])
