"""Header-only commands import only what they use (start-up time, issue 11): no jsonschema for a
valid rules file, no PyYAML for JSON rules, no torch, DCP or pickle readers for a safetensors
file, no rules or plan machinery for `mapper inspect`. A fresh interpreter per command: the
process's imports are the subject (tests/benchmarks/bench_plan.py times the same commands)."""
from __future__ import annotations

import json

import pytest

from cli_runner import python_process  # tests/helpers

from mapper_core.specs import TensorSpec

RULES_YAML = """\
version: 1
name: start-up
rules:
  - match: 'enc\\.(\\d+)\\.(weight|bias)'
    target: 'encoder.layers.{1}.{2}'
skip:
  - 'head\\..*'
"""
TORCH_READERS = ("mapper_core.io.formats.torch_format", "mapper_core.io.formats.torch_pickle",
                 "mapper_core.io.formats.torch_archive", "mapper_core.io.formats.dcp",
                 "mapper_core.io.formats.dcp_metadata", "mapper_core.io.formats.pickle_scan")
HEAVY = ("torch", "numpy", "jsonschema", "re2", "pluggy", *TORCH_READERS)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("start-up")
    (folder / "rules.yaml").write_text(RULES_YAML)
    rules = {"version": 1, "rules": [{"match": r"enc\.(\d+)\.(weight|bias)", "target": "encoder.layers.{1}.{2}"}],
             "skip": [r"head\..*"]}
    (folder / "rules.json").write_text(json.dumps(rules))
    (folder / "bad.yaml").write_text(RULES_YAML.replace("target:", "taget:"))
    specs = {f"enc.{i}.weight": TensorSpec("F32", (4, 4)) for i in range(20)}
    specs.update({f"head.{i}.bias": TensorSpec("F32", (4,)) for i in range(3)})
    _write_safetensors(folder / "small.safetensors", specs)
    return folder


def _write_safetensors(path, specs) -> None:
    import struct

    header, offset = {}, 0
    for key, spec in specs.items():
        header[key] = {"dtype": spec.dtype, "shape": list(spec.shape), "data_offsets": [offset, offset + spec.nbytes]}
        offset += spec.nbytes
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(offset))


def imported(*argv: object) -> tuple[int, set[str]]:
    """(exit code, modules imported) of `mapper ARGV` in a fresh interpreter."""
    code = ("import sys, json; from mapper_core.cli import main; "
            f"rc = main({[str(a) for a in argv]!r}); "
            "sys.stdout.flush(); sys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules)) + '\\n'); "
            "sys.exit(rc)")
    done = python_process(code)
    line = [ln for ln in done.stderr.splitlines() if ln.startswith("MODULES ")]
    assert line, done.stderr
    return done.returncode, set(json.loads(line[-1][len("MODULES "):]))


def test_validate_yaml(files):
    code, modules = imported("validate", files / "rules.yaml")
    assert code == 0 and "yaml" in modules
    assert not modules & {*HEAVY, "mapper_core.plan", "mapper_core.io.formats"}


def test_validate_json_needs_no_yaml(files):
    code, modules = imported("validate", files / "rules.json")
    assert code == 0 and not modules & {*HEAVY, "yaml"}


def test_an_invalid_file_brings_in_jsonschema_for_its_messages(files):
    code, modules = imported("validate", files / "bad.yaml")
    assert code == 2 and "jsonschema" in modules


def test_plan(files):
    code, modules = imported("plan", files / "small.safetensors", "--rules", files / "rules.yaml", "--json")
    assert code == 0 and "mapper_core.plan.make" in modules
    assert not modules & set(HEAVY)


def test_inspect(files):
    code, modules = imported("inspect", files / "small.safetensors")
    assert code == 0
    assert not modules & {*HEAVY, "yaml", "mapper_core.rules.load", "mapper_core.plan"}


def test_convert(files, tmp_path):
    code, modules = imported("convert", files / "small.safetensors", tmp_path / "out.safetensors",
                             "--rules", files / "rules.yaml", "-q")
    assert code == 0 and (tmp_path / "out.safetensors").is_file()
    assert not modules & set(HEAVY)


def test_a_torch_file_still_finds_its_reader(tmp_path):
    """The torch and DCP readers are imported when a file is one (here: by suffix, when sniffing fails)."""
    (tmp_path / "model.pt").write_bytes(b"not a pickle")
    code, modules = imported("inspect", tmp_path / "model.pt")
    assert code == 2 and "mapper_core.io.formats.torch_format" in modules
