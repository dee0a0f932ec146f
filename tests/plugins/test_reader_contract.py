"""A plugin's reader is held to the reader contract: context manager, types, its own specs, its errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from mapper_core.errors import PluginError
from mapper_core.io.formats import builtin_formats, open_checkpoint as open_builtin
from mapper_core.io.formats.base import Reader
from mapper_core.plugins import get_plugin_manager, open_checkpoint

# A reader for a made-up ".tens" format (JSON: key → [dtype, shape, values]); how it misbehaves
# is chosen by the file's "mode" entry. It has no __enter__/__exit__, as the README once implied.
PLUGIN = """
    import json
    import numpy as np
    from mapper_core.plugins import Format, hookimpl
    from mapper_core.specs import TensorSpec

    class TensReader:
        def __init__(self, path):
            self.path = path
            self.doc = json.loads(open(path).read())
            self.mode = self.doc.pop("mode", "ok")

        def specs(self):
            if self.mode == "list":
                return [TensorSpec(d, tuple(s)) for d, s, _ in self.doc.values()]
            return {k: TensorSpec(d, tuple(s)) for k, (d, s, _) in self.doc.items()}

        def metadata(self):
            return {"answer": 42, "who": "tens", "nested": {"a": [1, 2]}}

        def get_tensor(self, key):
            if self.mode == "raises":
                raise RuntimeError("disk on fire")
            dtype, shape, values = self.doc[key]
            array = np.asarray(values, dtype=np.float32).reshape(shape)
            return array.astype(np.float64) if self.mode == "wrong-dtype" else array

        def close(self):
            pass

    @hookimpl
    def mapper_formats():
        return [Format("tens", (".tens",), open=lambda path, **options: TensReader(path))]
"""


@pytest.fixture
def tens(plugin_modules, tmp_path):
    """(plugin module name, write(name, mode) -> path)."""
    module = plugin_modules("plugr_tens", PLUGIN)

    def write(name: str, mode: str = "ok"):
        path = tmp_path / name
        path.write_text(json.dumps({"mode": mode, "w": ["F32", [2, 2], [1, 2, 3, 4]], "b": ["F32", [2], [5, 6]]}))
        return path

    return module, write


def test_a_reader_without_a_context_manager_works_in_inspect_and_convert(tens, tmp_path, mapper):
    module, write = tens
    src = write("m.tens")
    proc = mapper("--plugin", module, "inspect", str(src))
    assert proc.returncode == 0, proc.stderr
    assert "w" in proc.stdout and "answer" in proc.stdout
    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\nname: same\nrules:\n  - match: '(.+)'\n    target: 'x.{1}'\n")
    out = tmp_path / "out.safetensors"
    proc = mapper("--plugin", module, "convert", str(src), str(out), "--rules", str(rules), "--verify")
    assert proc.returncode == 0, proc.stderr
    with safe_open(str(out), "pt") as f:
        assert torch.equal(f.get_tensor("x.w"), torch.tensor([[1.0, 2], [3, 4]]))
        meta = f.metadata()
    # inspect and convert agree on non-string metadata: JSON text
    assert meta["answer"] == "42" and meta["who"] == "tens" and json.loads(meta["nested"]) == {"a": [1, 2]}
    proc = mapper("--plugin", module, "inspect", str(src), "--json")
    assert json.loads(proc.stdout)["metadata"]["answer"] == "42"


def test_a_tensor_contradicting_its_spec_names_the_plugins_reader(tens, tmp_path, mapper):
    module, write = tens
    src = write("bad.tens", "wrong-dtype")
    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\nrules:\n  - match: '(.+)'\n    target: '{1}'\n")
    proc = mapper("--plugin", module, "convert", str(src), str(tmp_path / "o.safetensors"), "--rules", str(rules))
    assert proc.returncode == 2
    assert f"plugin '{module}', format 'tens', reader TensReader" in proc.stderr
    assert ("get_tensor('w') returned F64 [2, 2] but its specs() says F32 [2, 2]" in proc.stderr
            or "get_tensor('b') returned F64 [2] but its specs() says F32 [2]" in proc.stderr)
    assert "did the file change" not in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o.safetensors").exists()


def test_a_raising_reader_is_reported_with_the_plugins_name_and_debug_shows_the_traceback(tens, tmp_path, mapper):
    module, write = tens
    src = write("fire.tens", "raises")
    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\nrules:\n  - match: '(.+)'\n    target: '{1}'\n")
    args = ("--plugin", module, "convert", str(src), str(tmp_path / "o.safetensors"), "--rules", str(rules))
    proc = mapper(*args)
    assert proc.returncode == 2
    assert f"plugin '{module}'" in proc.stderr and "failed: RuntimeError: disk on fire" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = mapper("--debug", *args)
    assert "Traceback (most recent call last)" in proc.stderr and 'raise RuntimeError("disk on fire")' in proc.stderr


def test_specs_of_the_wrong_type_is_a_plugin_error(tens):
    module, write = tens
    pm = get_plugin_manager([module], entry_points=False, env={})
    with open_checkpoint(write("l.tens", "list"), plugin_manager=pm) as reader:
        with pytest.raises(PluginError, match="specs\\(\\) returned list; expected a mapping"):
            reader.specs()


def test_open_checkpoint_sees_plugin_formats_and_converts_numpy(tens):
    module, write = tens
    pm = get_plugin_manager([module], entry_points=False, env={})
    with open_checkpoint(write("a.tens"), plugin_manager=pm) as reader:
        assert isinstance(reader, Reader)
        tensor = reader.get_tensor("b")
        assert isinstance(tensor, torch.Tensor) and torch.equal(tensor, torch.tensor([5.0, 6.0]))
        assert reader.metadata()["answer"] == "42"
    with pytest.raises(Exception, match="cannot tell the checkpoint format"):
        open_checkpoint(write("b.tens"), formats=builtin_formats())  # an explicit list wins


def test_builtin_readers_implement_the_contract(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "a.pt")
    from safetensors.numpy import save_file

    save_file({"w": np.ones(2, dtype=np.float32)}, str(tmp_path / "a.safetensors"))
    for name in ("a.pt", "a.safetensors"):
        with open_builtin(tmp_path / name) as reader:
            assert isinstance(reader, Reader)
            assert all(isinstance(v, str) for v in reader.metadata().values())
