"""What a rules file's common mistakes are called: each message names the mistake, once, and says what to do."""
from __future__ import annotations

import pickle
import struct
import zipfile

import pytest

from mapper_core.errors import RulesError
from mapper_core.rules import load_rules, parse_rules
from rules_problems import problems_of  # tests/helpers
from cli_runner import mapper  # tests/helpers

TRANSPOSE = "version: 1\nrules:\n  - match: 'a\\.(\\w+)'\n    target: 'b.{1}'\n    transform:\n      - transpose: %s\n"


def test_a_step_with_wrong_parameters_lists_each_missing_key_once():
    problems = problems_of(TRANSPOSE % "{dims: [0, 1]}")
    messages = [p.message for p in problems]
    assert len(messages) == len(set(messages)) == 3
    assert sum("missing required key 'dim0'" in m for m in messages) == 1
    assert any("unknown key 'dims'" in m for m in messages)


def test_a_list_where_parameters_belong_names_the_keys_expected():
    [problem] = problems_of(TRANSPOSE % "[0, 1]")
    assert problem.line == 6
    assert "expected a mapping with the keys dim0, dim1, got a list of 2" in problem.message


@pytest.mark.parametrize("text, line", [
    ("version: 1\nrules:\n\t- match: a\n\t  target: b\n", 3),
    ("version: 1\nrules:\n  - match: a\n\ttarget: b\n", 4),
])
def test_tab_indentation_is_named(text, line):
    [problem] = problems_of(text)
    assert problem.line == line and "indented with a tab" in problem.message and "spaces" in problem.message


def test_a_tab_inside_a_quoted_value_is_no_indentation_problem():
    assert parse_rules('version: 1\nrules:\n  - match: a\n    target: "b\t"\n', "r.yaml").rules[0].target == "b\t"


@pytest.mark.parametrize("name, text", [
    ("r.json", '{"version": 1, "rules": [], "extra": ' + "[" * 150 + "]" * 150 + "}"),
    ("r.yaml", "version: 1\nrules: []\nextra: " + "[" * 150 + "]" * 150 + "\n"),
])
def test_deep_nesting_is_refused_in_one_short_line(name, text):
    [problem] = problems_of(text, name)
    assert "nest more than 100 levels deep" in problem.message and "syntax error" not in problem.message
    assert problem.path in ("$.extra", "$") and len(str(problem)) < 300


def _safetensors(path):
    header = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)


def _torch_zip(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")


def _legacy(path):
    path.write_bytes(pickle.dumps({"a": 1}, protocol=2))


@pytest.mark.parametrize("make, name, kind", [
    (_safetensors, "model.safetensors", "a safetensors checkpoint"),
    (_torch_zip, "model.pt", "a torch zip checkpoint"),
    (_legacy, "model.bin", "a Python pickle"),
    (lambda p: p.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\0" * 16), "model.gguf", "a GGUF file"),
])
def test_a_checkpoint_given_as_rules_is_called_a_checkpoint(tmp_path, make, name, kind):
    path = tmp_path / name
    make(path)
    with pytest.raises(RulesError) as info:
        load_rules(path)
    [problem] = info.value.problems
    assert problem.file == str(path) and f"this is {kind}" in problem.message and "not a rules file" in problem.message
    assert "given as the source" in problem.message
    done = mapper("plan", tmp_path / "x.safetensors", "--rules", path)
    assert done.returncode == 2 and f"this is {kind}" in done.stderr


def test_a_json_rules_file_is_not_taken_for_a_checkpoint(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('{"version": 1, "rules": [{"match": "a", "target": "b"}]}')
    assert len(load_rules(path).rules) == 1


def test_validate_counts_in_english(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("version: 1\nrules:\n  - match: a\n    target: b\nskip: ['c']\n")
    done = mapper("validate", path)
    assert done.returncode == 0 and "1 rule, 1 skip pattern, 0 freeze groups, 0 param groups" in done.stdout


@pytest.mark.parametrize("written, meant", [("float32", "F32"), ("torch.bfloat16", "BF16"), ("half", "F16"),
                                            ("int64", "I64")])
def test_a_torch_or_numpy_dtype_name_is_answered_with_the_safetensors_one(written, meant):
    [problem] = problems_of(TRANSPOSE.replace("transpose: %s", f"cast: {{dtype: {written}}}"))
    assert f'got the string "{written}" (did you mean "{meant}"?' in problem.message


def test_an_unknown_dtype_gets_no_guess():
    [problem] = problems_of(TRANSPOSE.replace("transpose: %s", "cast: {dtype: complex7}"))
    assert "did you mean" not in problem.message


def test_a_zip_is_named_by_its_first_member_when_the_head_reaches_it():
    from mapper_core.file_magic import ZIP, kind_of_head

    def zip_head(name: bytes) -> bytes:
        return b"PK\x03\x04" + b"\0" * 22 + len(name).to_bytes(2, "little") + b"\0\0" + name

    assert kind_of_head(zip_head(b"archive/data.pkl")) == "a torch zip checkpoint (torch.save)"
    assert kind_of_head(zip_head(b"x.npy")) == "a NumPy .npz archive"
    assert kind_of_head(zip_head(b"readme.txt")) == ZIP
    assert kind_of_head(zip_head(b"archive/data.pkl")[:16]) == ZIP  # too short to read the name: any zip
