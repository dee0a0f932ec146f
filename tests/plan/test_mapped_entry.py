"""Mapped, the plan's per-key entry, is tuple-backed for speed but keeps the value semantics of the
frozen dataclass it replaced: fields by name, defaults, equality, hashing, repr, immutability, pickling."""
import copy
import dataclasses
import pickle
from unittest import mock

import pytest

from mapper_core.plan.plan import PASS_THROUGH, Mapped, new_mapped


def test_fields_defaults_and_repr_are_those_of_the_dataclass():
    m = Mapped("a.w", "b.w", 3, "F32", (2, 3))
    assert (m.source, m.target, m.rule, m.dtype, m.shape) == ("a.w", "b.w", 3, "F32", (2, 3))
    assert (m.target_shape, m.target_dtype, m.transform, m.out_dtype, m.out_shape) == (None, None, (), None, None)
    assert repr(m) == ("Mapped(source='a.w', target='b.w', rule=3, dtype='F32', shape=(2, 3), target_shape=None, "
                       "target_dtype=None, transform=(), out_dtype=None, out_shape=None)")
    k = Mapped(source="a", target="b", rule=PASS_THROUGH, dtype="F16", shape=(4,), out_dtype="F32", out_shape=(4, 1))
    assert k.passed_through and k.result_shape == (4, 1) and k.result_dtype == "F32"
    assert not m.passed_through and m.result_shape == (2, 3) and m.result_dtype == "F32"
    assert new_mapped(("a.w", "b.w", 3, "F32", (2, 3), None, None, (), None, None)) == m


def test_equal_only_to_an_equal_mapped_and_hashable_alike():
    m = Mapped("a.w", "b.w", 3, "F32", (2, 3))
    same = Mapped("a.w", "b.w", 3, "F32", (2, 3))
    assert m == same and not m != same and hash(m) == hash(same) and len({m, same}) == 1
    assert m != Mapped("a.w", "b.w", 3, "F32", (2, 4)) and not m == Mapped("a.w", "b.w", 4, "F32", (2, 3))
    plain = tuple(m)  # the same values in a plain tuple are not a Mapped
    assert m != plain and plain != m and not m == plain and not plain == m
    assert m != "a.w" and m == mock.ANY  # other types still decide for themselves
    assert (m,) == (same,) and [m] != [plain]


def test_immutable_and_copyable():
    m = Mapped("a.w", "b.w", 3, "F32", (2, 3))
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.target = "c"
    with pytest.raises(dataclasses.FrozenInstanceError):
        del m.source
    with pytest.raises(AttributeError):
        m.extra = 1
    for back in (pickle.loads(pickle.dumps(m)), copy.copy(m), copy.deepcopy(m)):
        assert back == m and type(back) is Mapped
