"""verify's inputs: random tensors from a shape spec (``2x1x13x20``, ``2x3:float16``, token ids
``2x16:int64:50257``, drawn from 0 to 50256) with a fixed seed, or the tensors of a file."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..errors import BadInputError

_SHAPE = re.compile(r"(\d+(?:x\d+)*)(?::(\w+)(?::(\d+))?)?")
_DTYPES = {"float32": torch.float32, "float": torch.float32, "float16": torch.float16, "half": torch.float16,
           "bfloat16": torch.bfloat16, "float64": torch.float64, "double": torch.float64}
_INTEGERS = {"int64": torch.int64, "long": torch.int64, "int32": torch.int32, "int": torch.int32}
MAX_ELEMENTS = 1 << 28  # 1 GiB of float32: a typo in a shape must not exhaust memory


@dataclass(frozen=True)
class InputSpec:
    """One ``--input``: a shape and dtype to draw at random, or a file to read."""

    text: str
    shape: tuple[int, ...] | None = None
    dtype: torch.dtype = torch.float32
    path: str | None = None
    high: int | None = None  # integers: drawn from 0 to high - 1 (token ids below the vocabulary size)


def parse_input(text: str, is_file: Callable[[str], bool]) -> InputSpec:
    """``2x1x13x20[:dtype]``, ``2x16:int64:HIGH`` or a file path; anything else is refused with what
    was expected."""
    m = _SHAPE.fullmatch(text)
    if m and not is_file(text):
        shape = tuple(int(d) for d in m.group(1).split("x"))
        dtype_name, high = m.group(2) or "float32", m.group(3)
        if dtype_name not in _DTYPES and dtype_name not in _INTEGERS:
            raise BadInputError(f"--input {text!r}: unknown dtype {dtype_name!r}; expected one of "
                                f"{', '.join(sorted(_DTYPES))}, or {', '.join(sorted(_INTEGERS))} with a bound "
                                "(2x16:int64:50257 draws token ids from 0 to 50256)")
        if dtype_name in _INTEGERS and (high is None or int(high) < 1):
            raise BadInputError(f"--input {text!r}: integer inputs need an upper bound above 0, e.g. "
                                f"{m.group(1)}:{dtype_name}:50257 for token ids below a vocabulary of 50,257")
        if dtype_name in _INTEGERS and int(high) > _bound_limit(_INTEGERS[dtype_name]):
            wider = "" if _INTEGERS[dtype_name] == torch.int64 else ", or :int64 for a larger one"
            raise BadInputError(f"--input {text!r}: the bound {high} is past what {dtype_name} holds; expected at "
                                f"most {_bound_limit(_INTEGERS[dtype_name])}{wider}")
        if dtype_name in _DTYPES and high is not None:
            raise BadInputError(f"--input {text!r}: a bound (:{high}) only applies to integer inputs; "
                                f"write {m.group(1)}:{dtype_name}")
        if any(d == 0 for d in shape) or _numel(shape) > MAX_ELEMENTS:
            raise BadInputError(f"--input {text!r}: expected every size ≥ 1 and at most {MAX_ELEMENTS:,} "
                                "elements in all; use a smaller batch or shape")
        if dtype_name in _INTEGERS:
            return InputSpec(text, shape, _INTEGERS[dtype_name], high=int(high))
        return InputSpec(text, shape, _DTYPES[dtype_name])
    if is_file(text):
        return InputSpec(text, path=text)
    raise BadInputError(f"--input {text!r}: expected a shape such as 2x1x13x20 (optionally :float16, or "
                        ":int64:HIGH for integers below HIGH) or an existing file of input tensors")


def _bound_limit(dtype: torch.dtype) -> int:
    """The largest bound ``torch.randint`` takes for ``dtype`` (its values stay below the bound)."""
    return min(torch.iinfo(dtype).max + 1, torch.iinfo(torch.int64).max)


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def make_inputs(specs: Sequence[InputSpec], read_file: Callable[[str], list[torch.Tensor]],
                seed: int = 0) -> list[torch.Tensor]:
    """The input tensors, in order: each shape drawn from N(0, 1) (integers: uniformly below their
    bound) with one generator seeded ``seed``; each file's tensors in its key order."""
    generator = torch.Generator().manual_seed(seed)
    tensors: list[torch.Tensor] = []
    for spec in specs:
        if spec.path is not None:
            found = read_file(spec.path)
            if not found:
                raise BadInputError(f"--input {spec.text!r}: the file holds no tensors; give a file with the "
                                    "model's input tensors, or a shape")
            tensors.extend(found)
        elif spec.high is not None:
            tensors.append(torch.randint(0, spec.high, spec.shape, generator=generator, dtype=spec.dtype))
        else:
            tensors.append(torch.randn(spec.shape, generator=generator, dtype=torch.float32).to(spec.dtype))
    return tensors
