"""mapper inspect: the report value, its text and JSON renderings, and the command."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from mapper_core.io.inspection import human_bytes, inspect_path, render_text

from cli_runner import python_process


@pytest.fixture
def st_file(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"enc.weight": torch.zeros(64, 1, 3, 3), "enc.bias": torch.zeros(64, dtype=torch.float16),
               "steps": torch.tensor(3)}, str(path), metadata={"format": "pt", "origin": "test"})
    return path


@pytest.fixture
def pt_file(tmp_path):
    emb = torch.zeros(10, 4)
    path = tmp_path / "tied.pt"
    torch.save({"epoch": 2, "state_dict": {"module.embed": emb, "module.head": emb, "module.b": torch.zeros(4)}}, path)
    return path


def test_report_for_safetensors(st_file):
    report = inspect_path(st_file)
    d = report.to_dict()
    assert d["format"] == "safetensors" and d["path"] == str(st_file)
    rows = {t["key"]: t for t in d["tensors"]}
    assert rows["enc.weight"] == {"key": "enc.weight", "dtype": "F32", "shape": [64, 1, 3, 3], "numel": 576, "bytes": 2304}
    assert rows["steps"]["shape"] == [] and rows["steps"]["bytes"] == 8
    assert d["totals"] == {"tensors": 3, "values": 641, "bytes": 2304 + 128 + 8, "stored_bytes": 2440,
                           "dtypes": {"F32": 1, "F16": 1, "I64": 1}}
    assert d["metadata"] == {"format": "pt", "origin": "test"}
    assert "unwrap_path" not in d


def test_report_for_torch_has_unwrap_path_and_aliases(pt_file):
    d = inspect_path(pt_file).to_dict()
    assert (d["unwrap_path"], d["stripped_prefix"]) == ("state_dict", "module.")
    assert d["aliases"] == {"head": "embed"}
    assert [t.get("alias_of") for t in d["tensors"]] == [None, "embed", None]
    assert d["totals"]["bytes"] == 160 + 160 + 16 and d["totals"]["stored_bytes"] == 176


def test_text_is_a_table_with_totals_and_metadata(st_file):
    text = render_text(inspect_path(st_file))
    lines = text.splitlines()
    assert lines[0] == f"{st_file} (safetensors)"
    header = next(i for i, line in enumerate(lines) if line.startswith("key"))
    assert lines[header].split() == ["key", "dtype", "shape", "values", "bytes"]
    assert set(lines[header + 1].replace(" ", "")) == {"-"}
    row = next(line for line in lines if line.startswith("enc.weight"))
    assert row.split() == ["enc.weight", "F32", "[64,", "1,", "3,", "3]", "576", "2.2", "KiB"]
    # the numeric columns are right-aligned: every row ends at the same column
    table = lines[header:header + 5]
    assert len({len(line) for line in table if not line.startswith("-")}) == 1
    assert "total: 3 tensors, 641 values, 2.4 KiB (2,440 bytes)" in text
    assert "  origin  test" in text


def test_text_for_torch_names_state_dict_and_aliases(pt_file):
    text = render_text(inspect_path(pt_file))
    assert "state dict: 'state_dict', stripped prefix 'module.'" in text
    assert "head = embed" in text and "head  (= embed)" in text


def test_sharded_rows_name_their_shard(tmp_path):
    save_file({"a": torch.zeros(2)}, str(tmp_path / "s1.safetensors"))
    save_file({"b": torch.zeros(3)}, str(tmp_path / "s2.safetensors"))
    index = tmp_path / "m.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 20}, "weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}}))
    report = inspect_path(index)
    assert [t.shard for t in report.tensors] == ["s1.safetensors", "s2.safetensors"]
    assert render_text(report).splitlines()[2].split()[-1] == "shard"


def test_empty_checkpoint(tmp_path):
    path = tmp_path / "e.json"
    path.write_text("{}")
    text = render_text(inspect_path(path))
    assert "(no tensors)" in text and "total: 0 tensors, 0 values, 0 B" in text


@pytest.mark.parametrize("n, text", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (3 * 2**30, "3.0 GiB")])
def test_human_bytes(n, text):
    assert human_bytes(n) == text


# --- the command -------------------------------------------------------------------------------


def test_cli_text_and_json(st_file, mapper):
    text = mapper("inspect", str(st_file))
    assert text.returncode == 0, text.stderr
    assert "enc.weight" in text.stdout and "total: 3 tensors" in text.stdout
    js = mapper("inspect", str(st_file), "--json")
    assert js.returncode == 0
    assert json.loads(js.stdout) == inspect_path(st_file).to_dict()


def test_cli_format_override_and_torch_options(pt_file, mapper):
    out = mapper("inspect", str(pt_file), "--json", "--format", "torch", "--strip-prefix", "")
    assert out.returncode == 0, out.stderr
    assert [t["key"] for t in json.loads(out.stdout)["tensors"]] == ["module.embed", "module.head", "module.b"]


def test_cli_refuses_unsafe_pickle_with_exit_2(tmp_path, mapper):
    import argparse

    path = tmp_path / "a.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "args": argparse.Namespace(lr=1)}, path)
    out = mapper("inspect", str(path))
    assert out.returncode == 2 and out.stdout == ""
    assert str(path) in out.stderr and "argparse.Namespace" in out.stderr and "--trust-pickle" in out.stderr
    trusted = mapper("inspect", str(path), "--trust-pickle")
    assert trusted.returncode == 0, trusted.stderr
    assert "mapper: warning:" in trusted.stderr and "arbitrary code" in trusted.stderr


@pytest.mark.parametrize("content", [b"\xff" * 3, b"\x10\x00\x00\x00\x00\x00\x00\x00{}"])
def test_cli_bad_safetensors_exit_2(tmp_path, content, mapper):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    out = mapper("inspect", str(path))
    assert out.returncode == 2 and str(path) in out.stderr and "Traceback" not in out.stderr


def test_cli_unknown_format_and_missing_file(tmp_path, st_file, mapper):
    assert mapper("inspect", str(st_file), "--format", "nope").returncode == 2
    missing = mapper("inspect", str(tmp_path / "absent.pt"))
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_cli_inspect_of_safetensors_does_not_import_torch(st_file):
    code = (
        "import sys\nfrom mapper_core.cli import main\n"
        f"rc = main(['inspect', {str(st_file)!r}])\n"
        "assert rc == 0 and 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)[:5]\n"
    )
    out = python_process(code)  # a fresh interpreter: this process has torch already
    assert out.returncode == 0, out.stderr
