"""The header-only install: what needs torch says so, names the extra, and writes nothing.

Runs with and without torch installed (with torch, its import is blocked for each test)."""
from __future__ import annotations

import json
import struct
import sys
import zipfile

import pytest

from mapper_core.errors import MissingExtraError
from mapper_core.io.convert import convert
from mapper_core.io.formats import open_checkpoint
from mapper_core.plan import make_plan
from mapper_core.rules import parse_rules


@pytest.fixture(autouse=True)
def no_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` and find_spec("torch") as if absent


@pytest.fixture
def st_file(tmp_path):
    path = tmp_path / "m.safetensors"
    text = json.dumps({"a.w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(24))
    return path


@pytest.fixture
def pt_file(tmp_path):
    path = tmp_path / "model.pt"  # a torch zip's outline; it is refused before being read
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model/data.pkl", b"\x80\x02}q\x00.")
    return path


def test_a_torch_checkpoint_names_the_file_and_the_extra(pt_file):
    with pytest.raises(MissingExtraError, match=r"model\.pt: reading a torch checkpoint needs torch.*mapper-core\[torch\]"):
        open_checkpoint(pt_file)


def test_a_byte_changing_transform_is_refused_before_writing(tmp_path, st_file):
    rules = parse_rules('version: 1\nrules:\n  - {match: "a\\\\.(.*)", target: "b.{1}", '
                        'transform: [{transpose: {dim0: 0, dim1: 1}}]}\n', "r.yaml")
    with open_checkpoint(st_file) as reader:
        plan = make_plan(reader.specs(), rules)
    out = tmp_path / "out.safetensors"
    with pytest.raises(MissingExtraError, match=r"rule 0 transforms 'a\.w' with transpose\(dim0=0, dim1=1\).*torch"):
        convert(st_file, out, plan=plan)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no output, no temporary


def test_a_reshape_only_transform_needs_no_torch(tmp_path, st_file):
    rules = parse_rules('version: 1\nrules:\n  - {match: "a\\\\.(.*)", target: "b.{1}", '
                        'transform: [{unsqueeze: {dim: 0}}]}\n', "r.yaml")
    with open_checkpoint(st_file) as reader:
        plan = make_plan(reader.specs(), rules)
    result = convert(st_file, tmp_path / "out.safetensors", plan=plan, verify=True)
    assert result.checked == 1


@pytest.mark.parametrize("argv", [["inspect", "{pt}"], ["plan", "{pt}", "--rules", "{rules}"],
                                  ["convert", "{pt}", "{out}"]])
def test_the_cli_says_what_needs_torch_and_exits_2(tmp_path, pt_file, mapper, argv):
    rules = tmp_path / "r.yaml"
    rules.write_text('version: 1\nrules:\n  - {match: "(.*)", target: "{1}"}\n')
    out = tmp_path / "out.safetensors"
    done = mapper(*[a.format(pt=pt_file, rules=rules, out=out) for a in argv])
    err = done.stderr
    assert done.returncode == 2
    assert err.startswith("mapper: error: ") and "model.pt" in err and "mapper-core[torch]" in err
    assert "Traceback" not in err and not out.exists()
