"""The built-in format registry imports the torch and DCP readers only when a file is one, and
answers exactly as the readers' own modules would."""
from __future__ import annotations

import json
import pickle

import pytest

from cli_runner import python_process  # tests/helpers

from mapper_core.io import formats
from mapper_core.io.formats import builtin_formats, dcp, torch_format, torch_pickle


def test_suffixes_spelled_in_the_registry_are_the_readers():
    by_name = {f.name: f for f in builtin_formats()}
    assert by_name["torch"].suffixes == torch_format.SUFFIXES
    assert by_name["dcp"].suffixes == dcp.SUFFIXES


@pytest.mark.parametrize(("name", "module"), [("open_torch", torch_format), ("sniff_torch", torch_format),
                                              ("open_dcp", dcp), ("sniff_dcp", dcp)])
def test_the_lazy_names_are_the_readers_functions(name, module):
    assert getattr(formats, name) is getattr(module, name)
    assert getattr(formats, name).__module__ in (module.__name__, torch_pickle.__name__)


def test_the_lazy_wrappers_call_through(tmp_path):
    by_name = {f.name: f for f in builtin_formats()}
    (tmp_path / ".metadata").write_bytes(b"")
    assert by_name["dcp"].sniff(tmp_path) is dcp.sniff_dcp(tmp_path) is True
    other = tmp_path / "x.bin"
    other.write_bytes(b"\x00" * 32)
    assert by_name["torch"].sniff(other) is torch_format.sniff_torch(other) is False
    assert by_name["torch"].open.__name__ == "open_torch" and by_name["dcp"].open.__name__ == "open_dcp"


def test_unknown_names_are_attribute_errors():
    with pytest.raises(AttributeError):
        formats.no_such_reader  # noqa: B018


def test_importing_the_registry_leaves_the_torch_and_dcp_readers_out():
    done = python_process("import json, sys, mapper_core.io.formats as f; f.builtin_formats(); "
                          "print(json.dumps([m for m in sys.modules if m.startswith('mapper_core.io.formats.')]))",
                          check=True)
    loaded = json.loads(done.stdout)
    assert "mapper_core.io.formats.safetensors_format" in loaded
    assert not {"mapper_core.io.formats.torch_format", "mapper_core.io.formats.dcp",
                "mapper_core.io.formats.torch_pickle"} & set(loaded)


def test_a_model_folder_is_searched_without_the_torch_or_dcp_readers(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    done = python_process("import json, sys; from mapper_core.io.formats import open_checkpoint; "
                          f"open_checkpoint({str(folder)!r}).close(); "
                          "print(json.dumps([m for m in sys.modules if m.startswith('mapper_core.io.formats.')]))",
                          check=True)
    loaded = set(json.loads(done.stdout))
    assert "mapper_core.io.formats.folder" in loaded
    assert not {"mapper_core.io.formats.torch_format", "mapper_core.io.formats.dcp",
                "mapper_core.io.formats.torch_pickle"} & loaded


@pytest.mark.parametrize("kind", ["folder", "dcp folder", "metadata file", "file", "missing"])
def test_the_cheap_sniff_preconditions_agree_with_the_readers(tmp_path, kind):
    path = {"folder": tmp_path, "dcp folder": tmp_path, "metadata file": tmp_path / ".metadata",
            "file": tmp_path / "x.pt", "missing": tmp_path / "gone.pt"}[kind]
    if kind in ("dcp folder", "metadata file"):
        (tmp_path / ".metadata").write_bytes(b"")
    if kind == "file":
        path.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2))  # a legacy torch file's magic number
    by_name = {f.name: f for f in builtin_formats()}
    assert by_name["dcp"].sniff(path) is dcp.sniff_dcp(path)
    assert by_name["torch"].sniff(path) is torch_pickle.sniff_torch(path)
    assert by_name["torch"].sniff(path) is (kind == "file")
