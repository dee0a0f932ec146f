"""verify's --input shapes: float draws, and integer token ids below a bound (language models)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from mapper_core.activations.inputs import make_inputs, parse_input  # noqa: E402
from mapper_core.errors import BadInputError  # noqa: E402


def no_file(_: str) -> bool:
    return False


def test_token_ids_are_drawn_below_their_bound_with_the_seed():
    spec = parse_input("2x16:int64:50", no_file)
    assert (spec.shape, spec.dtype, spec.high) == ((2, 16), torch.int64, 50)
    [ids] = make_inputs([spec], lambda p: [])
    assert ids.dtype == torch.int64 and ids.shape == (2, 16) and 0 <= int(ids.min()) and int(ids.max()) < 50
    assert torch.equal(ids, make_inputs([spec], lambda p: [])[0])  # fixed seed: the same ids each run
    assert len(set(ids.flatten().tolist())) > 5  # not a constant


@pytest.mark.parametrize("text, said", [
    ("2x16:int64", "integer inputs need an upper bound above 0, e.g. 2x16:int64:50257"),
    ("2x16:int64:0", "integer inputs need an upper bound above 0"),
    ("2x16:float16:9", "a bound (:9) only applies to integer inputs; write 2x16:float16"),
    ("2x16:uint9", "unknown dtype 'uint9'"),
])
def test_integer_inputs_are_refused_without_a_sensible_bound(text, said):
    with pytest.raises(BadInputError, match=None) as caught:
        parse_input(text, no_file)
    assert said in str(caught.value)


def test_float_shapes_are_as_before():
    spec = parse_input("2x3:float16", no_file)
    assert (spec.shape, spec.dtype, spec.high) == ((2, 3), torch.float16, None)
