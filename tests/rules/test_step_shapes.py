"""A transform step refused for a source of tens of thousands of dimensions (a header may claim them: a
safetensors file of 20,000 dims of 1 is valid) names the shape by its first six dims and their count."""
from __future__ import annotations

import pytest

from mapper_core.rules.transforms import TransformChainError, chain_spec, make_step
from mapper_core.specs import TensorSpec

ONES = (1,) * 20_000  # a 60 KB list; `mapper plan` printed it (twice) in the error line


@pytest.mark.parametrize(("step", "params", "shape", "message"), [
    ("reshape", {"shape": [5, -1]}, ONES + (4,), "cannot reshape [1, 1, 1, 1, 1, 1, ... (20,001 dimensions)] (4 "
                                                 "values) to [5, -1]"),
    ("reshape", {"shape": [3]}, ONES + (4,), "cannot reshape [1, 1, 1, 1, 1, 1, ... (20,001 dimensions)] (4 values)"),
    ("squeeze", {"dim": -1}, ONES + (4,), "of [1, 1, 1, 1, 1, 1, ... (20,001 dimensions)]: its size is 4, not 1"),
    ("permute", {"dims": [1, 0]}, ONES, "the tensor [1, 1, 1, 1, 1, 1, ... (20,000 dimensions)] has 20000"),
    ("inflate", {"dim": -1, "size": 3, "new_axis": False}, ONES + (4,), "(20,001 dimensions)], got 4"),
    ("narrow", {"dim": -1, "start": 2, "length": 3}, ONES + (4,), "in [1, 1, 1, 1, 1, 1, ... (20,001 dimensions)]"),
])
def test_a_refused_step_shows_a_shape_of_many_dims_cut_short(step, params, shape, message):
    with pytest.raises(TransformChainError) as info:
        chain_spec([make_step(step, params)], TensorSpec("F32", shape))
    assert message in str(info.value) and len(str(info.value)) < 500, str(info.value)[:2000]
