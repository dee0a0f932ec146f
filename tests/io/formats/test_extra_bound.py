"""The bound on what a torch source's non-tensor values put in metadata 'mapper.extra' (no torch needed):
counted as JSON spells values out (a shared object each time it is reached), without expanding them."""
from __future__ import annotations

import time

from mapper_core.io.formats.torch_extra import MAX_DEPTH, MAX_TEXT, MAX_VALUES, extra_values


def shared(depth: int) -> list:
    """``x = [x, x]`` ``depth`` times: 2**depth lists as JSON, ``depth`` objects in memory."""
    x: list = [0]
    for _ in range(depth):
        x = [x, x]
    return x


def nested(depth: int) -> list:
    x: list = []
    for _ in range(depth - 1):
        x = [x]
    return x


def test_a_shared_structure_40_deep_is_too_large_at_once_and_later_values_still_fit():
    start = time.monotonic()
    got = extra_values({"cfg": shared(40), "step": 5, "opt": {"lr": 0.1, "betas": (0.9, 0.99)}})
    assert time.monotonic() - start < 1  # json.dumps would spell out 2**41 lists
    assert got.kept == {"step": 5, "opt": {"lr": 0.1, "betas": (0.9, 0.99)}}
    assert list(got.too_large) == ["cfg"]
    assert f"more than {MAX_VALUES:,} values" in got.too_large["cfg"] and "each time it is reached" in got.too_large["cfg"]


def test_the_count_is_exact_where_it_matters():
    # 2**(d+1) - 1 lists and 2**d zeros: 16 levels are 196,607 values, 15 levels 98,303
    assert "cfg" in extra_values({"cfg": shared(16)}).too_large
    assert extra_values({"cfg": shared(15)}).kept == {"cfg": shared(15)}


def test_nesting_past_the_bound_is_too_large_however_deep():
    assert extra_values({"cfg": nested(MAX_DEPTH)}).kept == {"cfg": nested(MAX_DEPTH)}
    for depth in (MAX_DEPTH + 1, 5_000, 60_000):  # json.dumps: RecursionError past ~1,000
        got = extra_values({"cfg": nested(depth), "step": 1})
        assert got.kept == {"step": 1}
        assert got.too_large == {"cfg": f"nested more than {MAX_DEPTH} deep"}


def test_text_shared_by_reference_counts_each_time():
    s = "y" * 2**20
    got = extra_values({"many": [s] * 17, "few": [s] * 15, "one": [s], "two": [s, s]})
    assert list(got.kept) == ["few", "one"]  # 16 MiB in all: 'two' no longer fits after them
    assert got.too_large["many"] == f"more than {MAX_TEXT:,} characters of text"
    assert got.too_large["two"] == f"more than 0 characters of text (what the values before it left of the {MAX_TEXT:,} in all)"


def test_the_bound_is_spent_by_what_is_kept():
    half = list(range(MAX_VALUES // 2))  # a list and its numbers: MAX_VALUES // 2 + 1 values
    got = extra_values({"a": half, "b": list(half), "c": 7})
    assert list(got.kept) == ["a", "c"]
    assert got.too_large["b"].startswith(f"more than {MAX_VALUES - len(half) - 1:,} values as JSON spells them out (what "
                                         f"the values before it left of the {MAX_VALUES:,} in all): ")


def test_what_json_cannot_hold_is_left_out_unnamed_as_before():
    loop: list = [1]
    loop.append(loop)
    values = {"bytes": b"x", "nan": float("nan"), "loop": loop, "mixed": {1: "a", "b": 2}, "none_key": {None: 1, "a": 2},
              "tuple_key": {(1, 2): 3}, "ok": {1: "a", 2.5: "b", True: None}, "big": 10 ** 5000}
    got = extra_values(values)
    assert got.kept == {"ok": {1: "a", 2.5: "b", True: None}}
    assert got.too_large == {}
