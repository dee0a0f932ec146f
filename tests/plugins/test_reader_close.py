"""A plugin reader whose close() fails: after the work is done that is a warning naming the plugin, not an error."""
from __future__ import annotations

import json
import warnings

import pytest

from mapper_core.errors import PluginError
from mapper_core.plugins import CheckpointWarning, get_plugin_manager, open_checkpoint

PLUGIN = """
    from mapper_core.plugins import Format, ReaderBase, hookimpl
    from mapper_core.specs import TensorSpec

    class ShutReader(ReaderBase):
        def __init__(self, path):
            self.path = path
            self.mode = open(path).read().strip()

        def specs(self):
            return {"w": TensorSpec("F32", (2,))}

        def get_tensor(self, key):
            if self.mode == "read-fails":
                raise OSError("device gone")
            import numpy as np  # only where data is read: the header-only tests run without numpy

            return np.array([1.5, -2.0], dtype=np.float32)

        def close(self):
            raise RuntimeError("close failed")

    @hookimpl
    def mapper_formats():
        return [Format("shut", (".shut",), open=lambda path, **options: ShutReader(path))]
"""
CLOSE_FAILED = "format 'shut', reader ShutReader: close() failed: RuntimeError: close failed"


@pytest.fixture
def shut(plugin_modules, tmp_path):
    module = plugin_modules("plugr_shut", PLUGIN)

    def write(mode: str = "ok"):
        path = tmp_path / f"{mode}.shut"
        path.write_text(mode)
        return path

    return module, write


@pytest.mark.parametrize("json_output", [False, True])
def test_convert_reports_success_and_warns_when_close_fails_after_the_commit(shut, tmp_path, mapper, json_output):
    pytest.importorskip("torch")
    from safetensors.numpy import load_file

    module, write = shut
    out = tmp_path / "o.safetensors"
    proc = mapper("--plugin", module, "convert", write(), out, "--verify", *(["--json"] if json_output else []))
    assert proc.returncode == 0, proc.stderr
    if json_output:
        assert json.loads(proc.stdout)["checked"] == 1
    else:
        assert f"wrote {out}: 1 tensor" in proc.stdout and "verified 1 tensor" in proc.stdout
    assert f"mapper: warning: plugin '{module}', {CLOSE_FAILED} (ignored: what was read is complete" in proc.stderr
    assert "error" not in proc.stderr and "Traceback" not in proc.stderr
    assert load_file(str(out))["w"].tolist() == [1.5, -2.0]


def test_read_only_commands_warn_the_same_way(shut, mapper):
    module, write = shut
    proc = mapper("--plugin", module, "inspect", write())
    assert proc.returncode == 0, proc.stderr
    assert f"mapper: warning: plugin '{module}', {CLOSE_FAILED}" in proc.stderr
    assert "CheckpointWarning" not in proc.stderr  # not Python's own warning format


def test_a_close_failure_does_not_hide_the_error_that_stopped_the_command(shut, tmp_path, mapper):
    pytest.importorskip("torch")
    module, write = shut
    out = tmp_path / "o.safetensors"
    proc = mapper("--plugin", module, "convert", write("read-fails"), out)
    assert proc.returncode == 2
    assert "get_tensor('w') failed: OSError: device gone" in proc.stderr
    assert f"mapper: warning: plugin '{module}', {CLOSE_FAILED} (after an error" in proc.stderr
    assert not out.exists()


def test_the_library_warns_on_leaving_with_and_raises_on_an_explicit_close(shut):
    module, write = shut
    pm = get_plugin_manager([module], entry_points=False, env={})
    with pytest.warns(CheckpointWarning, match="close\\(\\) failed: RuntimeError: close failed"):
        with open_checkpoint(write(), plugin_manager=pm) as reader:
            assert list(reader.specs()) == ["w"]
    reader = open_checkpoint(write(), plugin_manager=pm)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PluginError, match=CLOSE_FAILED.replace("(", "\\(").replace(")", "\\)")):
            reader.close()
