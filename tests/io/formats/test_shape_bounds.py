"""A header claiming a shape of thousands of dimensions (trial 6, T7): spec files and safetensors
headers stop multiplying at the first overflow, and every refusal shows a bounded part of the shape."""
from __future__ import annotations

import json
import struct
import time

import pytest

from mapper_core.errors import CheckpointError
from mapper_core.io.formats import open_checkpoint
from mapper_core.io.formats.safetensors_format import read_header
from mapper_core.io.formats.spec_json import parse_spec_document
from mapper_core.specs import MAX_DIM, shape_numel, shown_shape

HUGE = [MAX_DIM] * 50_000  # multiplied out: a number of 950,000 digits (seconds); the old spec check did that


def safetensors_file(path, shape, dtype="F32", nbytes=4, compact=True):
    """One tensor; ``compact`` writes the header as writers do (the fast scan reads it), else with spaces."""
    header = {"w": {"dtype": dtype, "shape": shape, "data_offsets": [0, nbytes]}}
    text = json.dumps(header, separators=(",", ":") if compact else None).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"\0" * nbytes)
    return path


def test_shape_numel_stops_at_the_first_overflow():
    def dims():
        yield 2**40
        yield 2**40
        raise AssertionError("multiplied on past the overflow")

    assert shape_numel(dims()) is None
    assert shape_numel([2**32, 2**32 - 1]) == 2**64 - 2**32
    assert shape_numel([2**32, 2**32]) is None  # 2**64: one past U64
    assert shape_numel([4, 5], limit=19) is None and shape_numel([4, 5], limit=20) == 20
    assert shape_numel([]) == 1 and shape_numel([0, 2**70]) == 0


def test_shown_shape_is_bounded():
    assert shown_shape([64, 1, 3, 3]) == "[64, 1, 3, 3]"
    assert shown_shape([]) == "[]"
    assert shown_shape([7] * 20_000) == "[7, 7, 7, 7, 7, 7, ... (20,000 dimensions)]"
    assert shown_shape([10**4000, 2]) == "[<a 13,288-bit number>, 2]"


def test_a_spec_shape_of_50000_huge_dims_is_refused_without_multiplying_it_out():
    start = time.process_time()
    with pytest.raises(CheckpointError) as caught:
        parse_spec_document({"w": {"dtype": "F32", "shape": HUGE}}, "spec.json")
    assert time.process_time() - start < 1.0  # the whole product took 9 s of CPU
    message = str(caught.value)
    assert f"tensor 'w': shape [{MAX_DIM}, {MAX_DIM}, {MAX_DIM}, {MAX_DIM}, {MAX_DIM}, {MAX_DIM}, ... (50,000 " \
           "dimensions)] has more values than fit 64 bits" in message
    assert len(message) < 400


def test_a_spec_shape_that_is_not_integers_is_shown_bounded(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"w": {"dtype": "F32", "shape": [1] * 200_000 + ["x"]}}))
    with pytest.raises(CheckpointError) as caught:
        open_checkpoint(path)
    message = str(caught.value)
    assert "shape must be a list of non-negative integers, got [1, 1," in message and "(600,005 characters)" in message
    assert len(message) < 400  # was the whole list: 600 KB


@pytest.mark.parametrize("compact", [True, False], ids=["writers-form", "general"])
@pytest.mark.parametrize("shape, dtype, nbytes, said", [
    (HUGE, "F32", 4, "shape [9223372036854775807, 9223372036854775807, 9223372036854775807, 9223372036854775807, "
                     "9223372036854775807, 9223372036854775807, ... (50,000 dimensions)] has more elements than fit "
                     "64 bits"),
    ([1] * 50_000, "F32", 8, "shape [1, 1, 1, 1, 1, 1, ... (50,000 dimensions)] × F32 is 4 bytes but data_offsets "
                             "[0, 8] hold 8 bytes"),
    ([1] * 50_000 + [3], "F4", 2, "F4 [1, 1, 1, 1, 1, 1, ... (50,001 dimensions)] needs an even last dimension"),
], ids=["overflow", "size", "f4-odd"])
def test_a_safetensors_refusal_shows_a_bounded_shape(tmp_path, compact, shape, dtype, nbytes, said):
    path = safetensors_file(tmp_path / "w.safetensors", shape, dtype, nbytes, compact)
    with pytest.raises(CheckpointError) as caught:
        read_header(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: tensor 'w': {said}"), message[:300]
    assert len(message) < 500  # was the whole shape: 1 MB for these
