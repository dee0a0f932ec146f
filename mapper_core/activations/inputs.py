"""verify's inputs: random tensors from a shape spec (``2x1x13x20``, ``2x3:float16``) with a fixed
seed, or the tensors of a file."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..errors import BadInputError

_SHAPE = re.compile(r"(\d+(?:x\d+)*)(?::(\w+))?")
_DTYPES = {"float32": torch.float32, "float": torch.float32, "float16": torch.float16, "half": torch.float16,
           "bfloat16": torch.bfloat16, "float64": torch.float64, "double": torch.float64}
MAX_ELEMENTS = 1 << 28  # 1 GiB of float32: a typo in a shape must not exhaust memory


@dataclass(frozen=True)
class InputSpec:
    """One ``--input``: a shape and dtype to draw at random, or a file to read."""

    text: str
    shape: tuple[int, ...] | None = None
    dtype: torch.dtype = torch.float32
    path: str | None = None


def parse_input(text: str, is_file: Callable[[str], bool]) -> InputSpec:
    """``2x1x13x20[:dtype]`` or a file path; anything else is refused with what was expected."""
    m = _SHAPE.fullmatch(text)
    if m and not is_file(text):
        shape = tuple(int(d) for d in m.group(1).split("x"))
        dtype_name = m.group(2) or "float32"
        if dtype_name not in _DTYPES:
            raise BadInputError(f"--input {text!r}: unknown dtype {dtype_name!r}; expected one of "
                                f"{', '.join(sorted(_DTYPES))}")
        if any(d == 0 for d in shape) or _numel(shape) > MAX_ELEMENTS:
            raise BadInputError(f"--input {text!r}: expected every size ≥ 1 and at most {MAX_ELEMENTS:,} "
                                "elements in all; use a smaller batch or shape")
        return InputSpec(text, shape, _DTYPES[dtype_name])
    if is_file(text):
        return InputSpec(text, path=text)
    raise BadInputError(f"--input {text!r}: expected a shape such as 2x1x13x20 (optionally :float16) "
                        "or an existing file of input tensors")


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def make_inputs(specs: Sequence[InputSpec], read_file: Callable[[str], list[torch.Tensor]],
                seed: int = 0) -> list[torch.Tensor]:
    """The input tensors, in order: each shape drawn from N(0, 1) with one generator seeded
    ``seed``; each file's tensors in its key order."""
    generator = torch.Generator().manual_seed(seed)
    tensors: list[torch.Tensor] = []
    for spec in specs:
        if spec.path is not None:
            tensors.extend(read_file(spec.path))
        else:
            tensors.append(torch.randn(spec.shape, generator=generator, dtype=torch.float32).to(spec.dtype))
    return tensors
