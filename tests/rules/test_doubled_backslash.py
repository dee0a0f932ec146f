"""A pattern holding a doubled backslash (JSON's escaping copied into YAML single quotes) is valid
but matches only keys holding a backslash, which none do: validate and plan warn, with the pattern
written as the file's quoting needs (torch-free). Before, validate said "valid" and nothing more."""
from __future__ import annotations

import json

import pytest

from mapper_core.rules import parse_rules

SINGLE = "version: 1\nrules:\n  - match: 'model\\\\.layers\\\\.(\\\\d+)\\\\.(.+)'\n    target: 'layers.{1}.{2}'\n"


def test_single_quoted_yaml_says_one_backslash_is_enough():
    [w] = parse_rules(SINGLE, "dbl.yaml").warnings
    assert (w.file, w.line, w.path) == ("dbl.yaml", 3, "$.rules[0].match")
    assert "pattern 'model\\\\.layers\\\\.(\\\\d+)\\\\.(.+)' holds '\\\\', which matches a backslash in the key" in w.message
    assert ("in single quotes YAML keeps each backslash as written, so one is enough; "
            "write 'model\\.layers\\.(\\d+)\\.(.+)'") in w.message


@pytest.mark.parametrize("name, text, advice", [
    ("r.json", json.dumps({"version": 1, "rules": [{"match": "a\\\\.(.+)", "target": "{1}"}]}),
     'a JSON (or double-quoted) string writes one backslash as \\\\; write "a\\\\.(.+)"'),
    ("r.yaml", "version: 1\nrules: []\nskip: [\"b\\\\\\\\.c\"]\n",
     'a JSON (or double-quoted) string writes one backslash as \\\\; write "b\\\\.c"'),
    ("r.yaml", "version: 1\nrules: []\nnew:\n  - n\\\\.(.+)\n",
     "an unquoted YAML value keeps each backslash as written, so one is enough; write n\\.(.+)"),
])
def test_the_advice_follows_the_quoting(name, text, advice):
    [w] = parse_rules(text, name).warnings
    assert advice in w.message


@pytest.mark.parametrize("pattern", ["'a\\.(\\d+)'", "'[ab]\\.c'", "'a(.+)'"])
def test_single_backslashes_give_no_warning(pattern):
    assert parse_rules(f"version: 1\nrules:\n  - match: {pattern}\n    target: 'x'\n", "r.yaml").warnings == ()


def test_validate_warns_and_still_exits_0(tmp_path, mapper):
    (tmp_path / "dbl.yaml").write_text(SINGLE)
    proc = mapper("validate", tmp_path / "dbl.yaml")
    assert proc.returncode == 0 and "valid rules" in proc.stdout
    assert "mapper: warning: " in proc.stderr and "dbl.yaml:3: $.rules[0].match: pattern " in proc.stderr
    data = json.loads(mapper("validate", tmp_path / "dbl.yaml", "--json").stdout)
    assert data["valid"] is True and [w["line"] for w in data["warnings"]] == [3]


def test_plan_warns_too(tmp_path, mapper):
    from tiny_safetensors import write_f32  # tests/helpers

    src = write_f32(tmp_path / "m.safetensors", {"model.layers.0.w": (2,)})
    (tmp_path / "dbl.yaml").write_text(SINGLE + "unmatched: drop\n")
    proc = mapper("plan", src, "--rules", tmp_path / "dbl.yaml")
    assert proc.returncode == 0 and "one is enough; write 'model\\.layers\\.(\\d+)\\.(.+)'" in proc.stderr
