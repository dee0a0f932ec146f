"""Arguments that are surely a slip are refused by name before anything is read or written: an empty
DST (an unset shell variable; it used to write ./model.safetensors), a DCP folder named like a
checkpoint file, a rules path that is a link loop or a dangling link (it used to read "no such
file" plus the plugins' rule sets), and an empty checkpoint path or --target (it used to mean "no
target"). Torch-free."""
from __future__ import annotations

import pytest
from tiny_safetensors import write_f32

RULES = "version: 1\nrules:\n  - match: 'a\\.(\\w+)'\n    target: 'b.{1}'\n"


@pytest.fixture
def folder(tmp_path):
    write_f32(tmp_path / "src.safetensors", {"a.w": [2, 2]})
    (tmp_path / "rules.yaml").write_text(RULES)
    return tmp_path


@pytest.mark.parametrize("dst", ["", "  "])
@pytest.mark.parametrize("command", [["convert"], ["export", "--rules", "rules.yaml"]])
def test_an_empty_destination_is_refused(folder, mapper, dst, command):
    before = sorted(p.name for p in folder.iterdir())
    done = mapper(command[0], "src.safetensors", dst, *command[1:], cwd=folder)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("mapper: error: the output path DST is ")
    assert ("empty;" if not dst else "blank ('  ');") in done.stderr and "use . for the current one" in done.stderr
    assert sorted(p.name for p in folder.iterdir()) == before  # no ./model.safetensors


@pytest.mark.parametrize("command", [["convert"], ["export", "--rules", "rules.yaml"]])
def test_an_empty_source_is_refused_in_the_commands_words(folder, mapper, command):
    done = mapper(command[0], "", "out.safetensors", *command[1:], cwd=folder)
    assert done.returncode == 2
    assert done.stderr == "mapper: error: the input path SRC is empty; give the checkpoint's path\n"
    assert not (folder / "out.safetensors").exists()


@pytest.mark.parametrize("dst", ["x.safetensors", "x.safetensors.index.json", "X.PT/", "x.bin"])
def test_a_dcp_folder_named_like_a_checkpoint_file_is_refused(folder, mapper, dst):
    done = mapper("convert", "src.safetensors", dst, "--output-format", "dcp", cwd=folder)
    assert done.returncode == 2, done.stderr
    assert (f"mapper: error: {dst}: --output-format dcp writes a folder (.metadata and data files), but this name "
            "is a checkpoint file's; give a folder name (e.g. out-dcp), or drop --output-format dcp") in done.stderr
    assert not (folder / dst.rstrip("/")).exists()


def test_a_dcp_folder_with_a_folder_name_is_still_written(folder, mapper):
    pytest.importorskip("torch")
    done = mapper("convert", "src.safetensors", "x-dcp", "--output-format", "dcp", cwd=folder)
    assert done.returncode == 0, done.stderr
    assert (folder / "x-dcp" / ".metadata").is_file()


def test_a_rules_link_loop_is_named_as_a_loop(folder, mapper):
    (folder / "loop1.yaml").symlink_to("loop2.yaml")
    (folder / "loop2.yaml").symlink_to("loop1.yaml")
    (folder / "dangling.yaml").symlink_to("gone.yaml")
    done = mapper("validate", "loop1.yaml", cwd=folder)
    assert done.returncode == 2
    assert done.stderr == ("mapper: error: rules 'loop1.yaml': is a symbolic link to loop2.yaml, which leads back "
                           "to itself (a loop of links); fix the link to point to the rules file\n")
    done = mapper("plan", "src.safetensors", "--rules", "dangling.yaml", cwd=folder)
    assert done.returncode == 2
    assert ("rules 'dangling.yaml': is a symbolic link to gone.yaml, which does not exist (a dangling link)"
            in done.stderr) and "known rule sets" not in done.stderr


@pytest.mark.parametrize("command", [["inspect", ""], ["plan", "", "--rules", "rules.yaml"],
                                     ["explain", "", "a.w", "--rules", "rules.yaml"],
                                     ["plan", "src.safetensors", "--rules", "rules.yaml", "--target", " "]])
def test_an_empty_checkpoint_path_is_refused_not_read_as_the_current_folder(folder, mapper, command):
    write_f32(folder / "model.safetensors", {"a.w": [2, 2]})  # what "" would have read, as the folder "."
    done = mapper(*command, cwd=folder)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"mapper: error: a checkpoint path is {'blank' if ' ' in command else 'empty'}")
    assert "(. for the model folder you are in)" in done.stderr


@pytest.mark.parametrize("target", ["", "  "])
@pytest.mark.parametrize("command", [["plan", "missing.safetensors", "--rules", "rules.yaml"],
                                     ["plan", "missing.safetensors", "--rules", "rules.yaml", "--strict"],
                                     ["explain", "missing.safetensors", "a.w", "--rules", "rules.yaml"],
                                     ["convert", "missing.safetensors", "out.safetensors"],
                                     ["convert", "missing.safetensors", "out.safetensors", "--rules", "rules.yaml"],
                                     ["suggest", "--source", "src.safetensors"]])
def test_an_empty_target_is_refused_not_read_as_no_target(folder, mapper, command, target):
    write_f32(folder / "model.safetensors", {"b.w": [2, 2]})  # what "" would read as the folder "."
    done = mapper(*command, "--target", target, cwd=folder)
    assert done.returncode == 2, done.stdout + done.stderr
    # in SRC's words, and before SRC is read (a missing SRC would be named first otherwise)
    assert done.stderr == ("mapper: error: a checkpoint path is " + ("empty" if not target else "blank ('  ')")
                           + "; give the checkpoint's path (. for the model folder you are in)\n")
    assert not (folder / "out.safetensors").exists()
