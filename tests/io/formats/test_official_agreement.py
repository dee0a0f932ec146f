"""Differential tests: mapper-core's safetensors reader against the official library.

For every named edge case (``tests/helpers/safetensors_corpus.py``) and for headers hypothesis
makes up, accept-or-refuse must match ``safetensors.safe_open`` with framework "pt" and
"numpy", and where both accept, every tensor's bytes must be identical. The only disagreements
allowed are the documented ones, ``DIFFERENCES`` (docs/formats.md), each found by its cause.
"""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mapper_core.io.formats.safetensors_header import DIFFERENCES
from safetensors_corpus import CORPUS, OFFICIAL_DTYPES, blob, difference, official, ours  # tests/helpers

pytestmark = pytest.mark.needs_torch
FRAMEWORKS = ["pt", "numpy"]
# the corpus cases each difference is known from; a case left out of this table must agree
DOCUMENTED = {"duplicate-key": "duplicate-key", "duplicate-metadata-key": "duplicate-key", "f6-e2m3": "f6-dtype", "f6-e3m2": "f6-dtype"}


def judge(path, framework):
    data = path.read_bytes()
    mine, theirs = ours(path), official(path, framework)
    if mine.accepted == theirs.accepted:
        if mine.accepted:
            assert mine.tensors == theirs.tensors, "both accept, but the bytes differ"
        return None
    why = difference(data, mine, theirs, framework)
    assert why in DIFFERENCES, (f"undocumented disagreement ({framework}): ours "
                                f"{'accepts' if mine.accepted else 'refuses: ' + mine.reason}; official "
                                f"{'accepts' if theirs.accepted else 'refuses: ' + theirs.reason}")
    return why


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("case", sorted(CORPUS))
def test_corpus_agrees_with_the_official_library(tmp_path, case, framework):
    path = tmp_path / f"{case}.safetensors"
    path.write_bytes(CORPUS[case])
    why = judge(path, framework)
    if framework == "pt":
        assert why == DOCUMENTED.get(case)


def test_every_documented_difference_is_exercised():
    assert set(DOCUMENTED.values()) | {"numpy-dtypes"} == set(DIFFERENCES)


def test_the_header_size_limit_is_the_librarys(tmp_path):
    """100,000,000 bytes of header is fine for both; one more byte is refused by both."""
    for extra, accepted in [(0, True), (1, False)]:
        body = b"{}" + b" " * (100_000_000 - 2 + extra)
        path = tmp_path / "limit.safetensors"
        path.write_bytes(blob(None, raw=body))
        assert ours(path).accepted == official(path, "pt").accepted == accepted
        path.unlink()


# --- made-up headers ---------------------------------------------------------------------------

DTYPES = st.sampled_from(sorted(OFFICIAL_DTYPES) + ["F33", "f32", "Q4"])
DIM = st.one_of(st.integers(0, 5), st.sampled_from([-1, 2**62, 2**63 - 1, 2**63, 2**64 - 1, 2**64]))
JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
                       lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2), inner, max_size=2),
                       max_leaves=4)


@st.composite
def headers(draw):
    """A header and data that are mostly right, with one or two things possibly wrong."""
    header, pos = {}, 0
    for i in range(draw(st.integers(0, 4))):
        dtype = draw(DTYPES)
        shape = draw(st.lists(DIM, max_size=3))
        numel = 1
        for d in shape:
            numel *= max(d, 0)
        size = numel * OFFICIAL_DTYPES.get(dtype, 8) // 8 if numel < 64 else 0
        size += draw(st.sampled_from([0, 0, 0, 0, 1, -1]))
        begin = pos + draw(st.sampled_from([0, 0, 0, 0, 1, -1]))
        value = {"dtype": dtype, "shape": shape, "data_offsets": [begin, begin + size]}
        if draw(st.integers(0, 9)) == 0:
            value[draw(st.sampled_from(["extra", "dtype_", "data_offsets2"]))] = draw(JSONISH)
        if draw(st.integers(0, 19)) == 0:
            del value[draw(st.sampled_from(["dtype", "shape", "data_offsets"]))]
        header[draw(st.text(max_size=4)) + str(i)] = value
        pos = max(pos, begin + size)
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.one_of(st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
                                                JSONISH))
    text = draw(st.sampled_from(["", " ", "\n"])) + json.dumps(header) + draw(st.sampled_from(["", "  "]))
    data = draw(st.binary(min_size=max(pos, 0), max_size=max(pos, 0) + draw(st.sampled_from([0, 0, 0, 1]))))
    return blob(None, data, raw=text.encode())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=headers(), framework=st.sampled_from(FRAMEWORKS))
def test_made_up_headers_agree_with_the_official_library(tmp_path, data, framework):
    path = tmp_path / "h.safetensors"
    path.write_bytes(data)
    judge(path, framework)
