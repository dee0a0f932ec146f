"""`mapper suggest -o FILE` checks FILE before reading anything and reports a failed write: never a
checkpoint replaced by its rules, a folder written over, or a traceback. No torch."""
from __future__ import annotations

import errno

from cli_runner import mapper
from tiny_safetensors import write_f32

from mapper_core.io.atomic import AtomicFiles


def _pair(tmp_path):
    return (write_f32(tmp_path / "a.safetensors", {"x.weight": (4, 3), "x.bias": (4,)}),
            write_f32(tmp_path / "b.safetensors", {"y.weight": (4, 3), "y.bias": (4,)}))


def test_an_output_in_a_missing_folder_or_on_a_folder_is_refused(tmp_path):
    source, target = _pair(tmp_path)
    missing = mapper("suggest", "--source", source, "--target", target, "-o", tmp_path / "no" / "rules.yaml")
    assert missing.returncode == 2
    assert f"the folder {tmp_path / 'no'} does not exist; create it first" in missing.stderr
    folder = mapper("suggest", "--source", source, "--target", target, "-o", tmp_path, "--force")
    assert folder.returncode == 2 and f"{tmp_path}: is a directory; name an output file" in folder.stderr
    assert "Traceback" not in missing.stderr + folder.stderr


def test_the_output_is_never_one_of_the_checkpoints(tmp_path):
    source, target = _pair(tmp_path)
    before = target.read_bytes()
    done = mapper("suggest", "--source", source, "--target", target, "-o", target, "--force")
    assert done.returncode == 2 and "write the output to another path" in done.stderr
    assert target.read_bytes() == before


def test_a_failed_write_says_so_and_leaves_nothing(tmp_path, monkeypatch):
    source, target = _pair(tmp_path)

    def full(self, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(AtomicFiles, "create", full)
    out = tmp_path / "rules.yaml"
    done = mapper("suggest", "--source", source, "--target", target, "-o", out)
    assert done.returncode == 2, done.stderr
    assert f"{out}: writing failed: No space left on device" in done.stderr and "nothing was written" in done.stderr
    assert not out.exists()


def test_an_empty_name_is_refused_with_the_option(tmp_path):
    source, target = _pair(tmp_path)
    done = mapper("suggest", "--source", source, "--target", target, "--name", "")
    assert done.returncode == 2
    assert "suggest: the rules' name is empty; give one (--name NAME" in done.stderr
