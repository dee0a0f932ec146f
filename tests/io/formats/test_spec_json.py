"""Spec files: both forms, dtype spellings, every problem named by key, no tensor data."""
from __future__ import annotations

import json

import pytest

from mapper_core.errors import CheckpointError
from mapper_core.io.formats import builtin_formats, choose_format, open_checkpoint
from mapper_core.io.formats.spec_json import SpecJsonReader, sniff_spec_json, write_spec_json
from mapper_core.specs import TensorSpec


def write(tmp_path, doc, name="spec.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def test_wrapped_form_with_metadata(tmp_path):
    path = write(tmp_path, {"tensors": {"a.weight": {"dtype": "F32", "shape": [4, 3]}, "step": {"dtype": "I64", "shape": []}},
                            "metadata": {"model": "fcn"}})
    with open_checkpoint(path) as r:
        assert isinstance(r, SpecJsonReader)
        assert r.specs() == {"a.weight": TensorSpec("F32", (4, 3)), "step": TensorSpec("I64", ())}
        assert r.metadata() == {"model": "fcn"}


def test_bare_form(tmp_path):
    path = write(tmp_path, {"a": {"dtype": "BF16", "shape": [2]}, "tensors": {"dtype": "U8", "shape": [0]}})
    r = SpecJsonReader(path)
    assert r.specs() == {"a": TensorSpec("BF16", (2,)), "tensors": TensorSpec("U8", (0,))}
    assert r.metadata() == {}


@pytest.mark.parametrize("spelling, name", [("float32", "F32"), ("torch.bfloat16", "BF16"), ("f16", "F16"),
                                            ("float8_e4m3fn", "F8_E4M3"), ("bool", "BOOL"), ("torch.int64", "I64")])
def test_torch_dtype_spellings_are_accepted(tmp_path, spelling, name):
    path = write(tmp_path, {"t": {"dtype": spelling, "shape": [1]}})
    assert SpecJsonReader(path).specs()["t"].dtype == name


def test_every_problem_is_reported_by_key(tmp_path):
    path = write(tmp_path, {"tensors": {
        "good": {"dtype": "F32", "shape": [1]},
        "bad_dtype": {"dtype": "F33", "shape": [1]},
        "bad_shape": {"dtype": "F32", "shape": [2, -1]},
        "not_obj": [1, 2],
        "extra": {"dtype": "F32", "shape": [1], "offset": 3},
        "no_shape": {"dtype": "F32"},
    }, "metadata": {"n": 1}})
    with pytest.raises(CheckpointError) as info:
        SpecJsonReader(path)
    message = str(info.value)
    assert str(path) in message and "6 problems" in message
    for needle in ["'bad_dtype': unknown dtype \"F33\"", "'bad_shape': shape", "'not_obj'",
                   "'extra': unexpected field(s) offset", "'no_shape': shape", "metadata 'n'"]:
        assert needle in message
    assert "'good'" not in message


@pytest.mark.parametrize("text, expected", [("{oops", "not valid JSON"), ("[1]", "expected a JSON object")])
def test_unreadable_spec_file(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(CheckpointError, match=expected) as info:
        SpecJsonReader(path)
    assert str(path) in str(info.value)


def test_get_tensor_refuses(tmp_path):
    path = write(tmp_path, {"a": {"dtype": "F32", "shape": [1]}})
    with pytest.raises(CheckpointError, match="spec files hold no tensor data"):
        SpecJsonReader(path).get_tensor("a")


def test_round_trip_through_write_spec_json(tmp_path):
    specs = {"x": TensorSpec("F16", (3, 3)), "y": TensorSpec("BOOL", ())}
    path = tmp_path / "out.json"
    write_spec_json(specs, path, {"from": "test"})
    r = SpecJsonReader(path)
    assert r.specs() == specs and r.metadata() == {"from": "test"}


def test_sniffing_tells_spec_files_from_shard_indexes(tmp_path):
    spec = write(tmp_path, {"a": {"dtype": "F32", "shape": [1]}}, "target.json")
    index = write(tmp_path, {"weight_map": {}}, "m.safetensors.index.json")
    assert sniff_spec_json(spec) and not sniff_spec_json(index)
    assert choose_format(spec, builtin_formats()).name == "spec-json"
    assert choose_format(index, builtin_formats()).name == "safetensors"


@pytest.mark.parametrize("text, key, line", [
    ('{"tensors": {\n"a.w": {"dtype": "F32", "shape": [1]},\n"a.w": {"dtype": "F32", "shape": [2]}}}', "a.w", 3),
    ('{"a": {"dtype": "F32", "shape": [1], "shape": [2]}}', "shape", 1),  # inside an entry
    ('{"tensors": {}, "metadata": {"m": "1", "m": "2"}}', "m", 1),
])
def test_a_key_written_twice_is_refused(tmp_path, text, key, line):
    """Every other reader refuses it; a spec used as --target would check against whichever came last."""
    path = write(tmp_path, text)
    with pytest.raises(CheckpointError) as caught:
        open_checkpoint(path)
    assert str(caught.value) == (f'{path}: key "{key}" appears twice (line {line}); the file is ambiguous (refused '
                                 "on purpose): keep one of them")


@pytest.mark.parametrize("shape, dtype, what", [([2**62, 2**62], "F32", "values"), ([2**64], "U8", "values"),
                                                ([2**62], "F32", "bytes")])
def test_a_shape_past_64_bits_is_refused(tmp_path, shape, dtype, what):
    path = write(tmp_path, {"w": {"dtype": dtype, "shape": shape}, "ok": {"dtype": "F32", "shape": [2**61 - 1]}})
    with pytest.raises(CheckpointError) as caught:
        open_checkpoint(path)
    assert f"1 problem in spec file:\n  tensor 'w': shape {json.dumps(shape)} has more {what} than fit 64 bits" \
           in str(caught.value)
