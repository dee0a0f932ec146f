"""Every warning a command meets is printed as ``mapper: warning: ...``, whichever phase raises it:
never Python's own ``/path/file.py:123: CheckpointWarning: ...`` and the source line under it."""
from __future__ import annotations

import textwrap

import pytest

PLUGIN = """
    import warnings
    from mapper_core.plugins import CheckpointWarning, Format, ReaderBase, hookimpl
    from mapper_core.specs import TensorSpec

    class NoisyReader(ReaderBase):
        def __init__(self, path):
            self.path = path

        def specs(self):
            warnings.warn(CheckpointWarning(f"{self.path}: header read"), stacklevel=2)
            return {"w": TensorSpec("F32", (2,))}

        def get_tensor(self, key):
            raise AssertionError("header-only commands read no tensor")

    @hookimpl
    def mapper_formats():
        # while plugins load: before any reader is open, outside every command's `with` block
        warnings.warn(CheckpointWarning("noisy: the .noisy reader is a test double"))
        warnings.warn("noisy: a plain UserWarning from the plugin's own code")
        return [Format("noisy", (".noisy",), open=lambda path, **options: NoisyReader(path))]
"""

PLAIN_LINE = next(n for n, line in enumerate(textwrap.dedent(PLUGIN).splitlines(), 1) if "a plain UserWarning" in line)


@pytest.fixture
def noisy(plugin_modules, tmp_path):
    module = plugin_modules("plugw_noisy", PLUGIN)
    path = tmp_path / "m.noisy"
    path.write_text("")
    return module, path


@pytest.mark.parametrize("command", [["inspect"], ["plugins"], ["plan", "--rules", "RULES"]])
def test_a_warning_raised_while_plugins_load_is_printed_like_every_other(noisy, mapper, tmp_path, command):
    module, path = noisy
    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\nrules:\n  - match: 'w'\n    target: 'v'\n")
    args = [rules if a == "RULES" else a for a in command] + ([path] if command[0] != "plugins" else [])
    done = mapper("--plugin", module, *args)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert "mapper: warning: noisy: the .noisy reader is a test double" in lines
    # another category keeps its name and where it came from, in the same one-line form
    plain = [line for line in lines if "a plain UserWarning" in line]
    assert plain == [f"mapper: warning: noisy: a plain UserWarning from the plugin's own code "
                     f"(UserWarning from {tmp_path / (module + '.py')}:{PLAIN_LINE})"]
    if command[0] != "plugins":
        assert f"mapper: warning: {path}: header read" in lines
    assert all(line.startswith("mapper: warning: ") for line in lines), done.stderr
    assert "CheckpointWarning:" not in done.stderr and "warnings.warn(" not in done.stderr


def test_a_warning_filtered_out_stays_out(noisy, mapper, monkeypatch):
    module, path = noisy
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="noisy: a plain")  # the caller's filters still decide
        done = mapper("--plugin", module, "inspect", path)
    assert done.returncode == 0, done.stderr
    assert "a plain UserWarning" not in done.stderr
    assert "mapper: warning: noisy: the .noisy reader is a test double" in done.stderr
