"""A source path that names no file: a dangling symbolic link is named as one, with where it points
(as the output side says of a dangling DST), not as a plain "no such file"."""
from __future__ import annotations

import os

import pytest

from mapper_core.errors import CheckpointError
from mapper_core.io.formats import builtin_formats, choose_format

from tiny_safetensors import write_f32


@pytest.fixture
def rules(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("version: 1\nrules:\n  - match: '(.+)'\n    target: '{1}'\n")
    return path


@pytest.mark.parametrize("command", ["inspect", "convert", "plan"])
def test_a_dangling_source_link_is_named_with_its_target(tmp_path, mapper, rules, command):
    link = tmp_path / "model.safetensors"
    link.symlink_to(tmp_path / "gone" / "model.safetensors")
    extra = {"inspect": [], "convert": [tmp_path / "out.safetensors"], "plan": ["--rules", rules]}[command]
    done = mapper(command, link, *extra)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr == (f"mapper: error: {link}: is a symbolic link to {tmp_path / 'gone' / 'model.safetensors'}, "
                           "which does not exist (a dangling link); fix the link to point to the checkpoint, or give "
                           "the checkpoint's own path\n")
    assert not (tmp_path / "out.safetensors").exists()


def test_a_relative_link_shows_what_it_holds_and_a_chain_where_it_ends(tmp_path):
    (tmp_path / "a.pt").symlink_to("missing.pt")
    (tmp_path / "b.pt").symlink_to("a.pt")
    with pytest.raises(CheckpointError, match=r"a.pt: is a symbolic link to missing.pt, which does not exist"):
        choose_format(tmp_path / "a.pt", builtin_formats())
    with pytest.raises(CheckpointError) as info:
        choose_format(tmp_path / "b.pt", builtin_formats())
    assert (f"b.pt: is a symbolic link to a.pt, itself a link, ending at {os.path.realpath(tmp_path / 'a.pt')}, "
            "which does not exist (a dangling link)") in str(info.value)


def test_a_loop_of_links_and_a_named_format_and_a_plain_missing_file(tmp_path, mapper):
    (tmp_path / "x.pt").symlink_to("y.pt")
    (tmp_path / "y.pt").symlink_to("x.pt")
    with pytest.raises(CheckpointError, match=r"x.pt: is a symbolic link to y.pt, which leads back to itself"):
        choose_format(tmp_path / "x.pt", builtin_formats())
    (tmp_path / "d.bin").symlink_to(tmp_path / "nowhere.bin")
    named = mapper("inspect", tmp_path / "d.bin", "--format", "torch")
    assert named.returncode == 2 and f"is a symbolic link to {tmp_path / 'nowhere.bin'}, which does not exist" in named.stderr
    plain = mapper("inspect", tmp_path / "nothing.safetensors")
    assert plain.stderr == f"mapper: error: {tmp_path / 'nothing.safetensors'}: no such file; check the path\n"


def test_a_link_to_a_real_file_still_reads(tmp_path, mapper):
    real = write_f32(tmp_path / "real.safetensors", {"w": [2]})
    (tmp_path / "link.safetensors").symlink_to(real)
    assert mapper("inspect", tmp_path / "link.safetensors").returncode == 0
