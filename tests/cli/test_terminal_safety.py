"""Names from a hostile file reach the user's terminal inert: `inspect` escapes keys, shard names and
metadata as `plan` does, and every error or warning escapes what a terminal would act on (ANSI escapes,
bidi controls), so a tensor name cannot recolour the screen or fake a line of the report."""
from __future__ import annotations

import json
import struct

from mapper_core.text import inert

HOSTILE = "a\nmapper: error: fake\x1b[31m\u202e"


def write_file(path, header: dict, data: bytes) -> None:
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def test_inspect_escapes_keys_and_metadata(tmp_path, mapper):
    path = tmp_path / "k.safetensors"
    write_file(path, {HOSTILE: {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                      "__metadata__": {"note\x1b]0;owned\x07": "x\r\x1b[2Kgone"}}, bytes(4))
    done = mapper("inspect", path)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\u202e" not in done.stdout and "\r" not in done.stdout
    assert not any(line.startswith("mapper: error") for line in done.stdout.splitlines())
    assert "a\\nmapper: error: fake\\x1b[31m\\u202e  F32" in done.stdout
    assert "note\\x1b]0;owned\\x07  x\\r\\x1b[2Kgone" in done.stdout
    assert json.loads(mapper("inspect", path, "--json").stdout)["tensors"][0]["key"] == HOSTILE  # JSON: exact


def test_errors_escape_what_a_terminal_acts_on(tmp_path, mapper):
    rules = tmp_path / "r.yaml"
    rules.write_text('version: 1\nrules:\n  - match: "a\\e[31m\\u202e("\n    target: b\n')  # YAML escapes
    done = mapper("validate", rules)
    assert done.returncode == 2
    assert "\x1b" not in done.stderr and "\u202e" not in done.stderr
    assert "invalid regular expression 'a\\x1b[31m\\u202e(': unterminated character set" in done.stderr
    assert done.stderr.count("\n") == 2  # its two lines, as written


def test_inert_keeps_lines_and_plain_text():
    assert inert("3 problems:\n\tline 1") == "3 problems:\n\tline 1"
    assert inert("k\x1b[31m\x00\x7f\x9b\u2066") == "k\\x1b[31m\\x00\\x7f\\x9b\\u2066"
    assert inert("naïve café ∑ 模型") == "naïve café ∑ 模型"


def test_listed_names_the_first_few_and_counts_the_rest():
    from mapper_core.text import listed

    assert listed(["a", "b"], 5) == "a, b"
    assert listed(["a", "b", "c"], 2) == "a, b and 1 more"
    assert listed([], 3) == ""
