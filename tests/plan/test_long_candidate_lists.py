"""Long candidate lists (patterns the matcher's index cannot narrow by a literal prefix) are tried a
block of 64 at a time: the plan, the unused-rule reasons and every entry are exactly those of trying
each pattern in turn, including patterns that cannot join a block (named groups, backreferences,
global flags, RE2-matched ones) and a block whose matching rule renders nothing."""
from __future__ import annotations

import random

import pytest

from mapper_core.plan import make as make_module
from mapper_core.plan import unused as unused_module
from mapper_core.plan.make import make_plan
from mapper_core.rules import combined, parse_rules
from mapper_core.specs import TensorSpec


def ruleset(n: int, seed: int):
    rnd = random.Random(seed)
    lines = ["version: 1", "unmatched: keep", "skip:", "  - '(?:q|r)skip\\d+\\.\\d+\\.w'", "rules:"]
    for i in range(n):
        kind = rnd.choice(["plain"] * 40 + ["table"] * 3 + ["named", "backref", "flag", "lookahead", "nested"])
        match, target = {
            "plain": (f"(?:x|y)z{i % 40}\\.(\\d+)\\.w", f"t{i}.{{1}}"),
            "named": (f"(?:x|y)z{i % 40}\\.(?P<n>\\d+)\\.w", f"n{i}.{{n}}"),
            "backref": (f"(?:x|y)(z)\\1?{i % 40}\\.(\\d+)\\.w", f"b{i}.{{2}}"),
            "flag": (f"(?i)(?:x|y)Z{i % 40}\\.(\\d+)\\.w", f"f{i}.{{1}}"),
            "table": (f"(?:x|y)z{i % 40}\\.(\\d)\\.w", f"e{i}.{{1|even}}"),
            "lookahead": (f"(?:x|y)(?=z)z{i % 40}\\.(\\d+)\\.w", f"l{i}.{{1}}"),
            "nested": (f"(?:x|y)(?:z|zz){i % 40}\\.(\\d+)\\.w", f"s{i}.{{1}}"),
        }[kind]
        lines += [f"  - match: '{match}'", f"    target: '{target}'"]
        if kind == "table":  # a rule that renders nothing for odd digits: later rules take those keys
            lines += ["    tables:", "      even: {'0': zero, '2': two, '4': four}"]
    return parse_rules("\n".join(lines) + "\n", "long.yaml")


def keys(seed: int) -> dict[str, TensorSpec]:
    rnd = random.Random(seed)
    out = {}
    for _ in range(600):
        head = rnd.choice(["x", "y", "X", "k", "q", "r", "xzz"])
        body = rnd.choice(["z", "Z", "skip", "zz"])
        out[f"{head}{body}{rnd.randrange(45)}.{rnd.randrange(6)}.w"] = TensorSpec("F32", (2,))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_blocks_give_exactly_the_plan_of_one_pattern_at_a_time(seed, monkeypatch):
    rules, source = ruleset(300, seed), keys(seed)
    built = []
    real = combined._alternation
    monkeypatch.setattr(combined, "_alternation", lambda texts: built.append(len(texts)) or real(texts))
    fast = make_plan(source, rules)
    assert sum(built) > 200 and max(built) <= combined.BLOCK  # most patterns were tried in blocks
    monkeypatch.setattr(make_module, "LONG", 10**9)
    monkeypatch.setattr(unused_module, "LONG", 10**9)
    slow = make_plan(source, rules)
    assert fast.to_dict() == slow.to_dict()
    assert fast.mapped and fast.skipped and fast.unused_rules  # every outcome is exercised


def test_a_key_no_block_can_match_is_one_call_per_block():
    steps = [(lambda k, i=i: None, None, i) for i in range(130)]
    texts = [f"a{i}" for i in range(130)]
    blocks = combined.Blocks(steps, texts, {})
    assert len(blocks._tests) == 3  # 64 + 64 + 2
    assert blocks.from_first_possible("zzz") == ()
    assert blocks.from_first_possible("a70") == blocks.steps[64:]  # from the block that can match on


@pytest.mark.parametrize("pattern, joins", [
    (r"a\.(\d+)", True), (r"(?P<n>\d+)", False), (r"(a)\1", False), (r"(?i)abc", False),
    (r"(a)?(?(1)b|c)", False), (r"(?P<n>a)(?P=n)", False), (r"(weight|bias)", True),
    (r"(?:a|ab)c", False)])  # matched by RE2: Python's re could backtrack on it
def test_what_may_join_an_alternation(pattern, joins):
    from mapper_core.rules.key_pattern import key_pattern

    assert (combined.joinable(key_pattern(pattern)) is not None) is joins
