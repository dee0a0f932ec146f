"""Rules patterns match in linear time (RE2) and give exactly Python ``re``'s answers, groups included."""
from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings, strategies as st

from mapper_core.rules import parse_rules
from mapper_core.rules import key_pattern as kp_module
from mapper_core.rules.key_pattern import KeyPattern, UnboundedPattern
from rules_problems import problems_of  # tests/helpers
from cli_runner import mapper, mapper_process  # tests/helpers

CATASTROPHIC = [r"(a+)+$", r"(.*a){20}", r"(a|aa)+", r"(\w+\s?)+$", r"(.*)(.*)(.*)(.*)(.*)b"]
# RE2 cannot take these exactly (a lookaround, a backreference, an empty repetition) and backtracking is unbounded
REFUSED = [r"(?=(a+)+$)a*", r"(?!x)(.*a){20}", r"(a+)+(?<=b)", r"(a|aa)+\1", r"(?:a*)*b", r"((ab)*|a)*c"]

ATOMS = ["a", "b", r"\.", ".", r"\d", r"\w", r"\s", "[ab]", "[^a]", r"[\d.]", "K", "ı", "İ", "é", "٣", r"\W", r"\D"]
QUANTIFIERS = ["*", "+", "?", "*?", "+?", "??", "{1,3}", "{2}", "{0,2}?"]


TREES = st.recursive(st.sampled_from(ATOMS), lambda inner: st.one_of(
    st.tuples(inner, inner).map("".join),
    inner.map(lambda p: f"({p})"),
    st.tuples(st.integers(0, 99), inner).map(lambda t: f"(?P<g{t[0]}>{t[1]})"),
    st.tuples(inner, inner).map(lambda t: f"(?:{t[0]}|{t[1]})"),
    st.tuples(inner, st.sampled_from(QUANTIFIERS)).map(lambda t: f"(?:{t[0]}){t[1]}"),
    inner.map(lambda p: f"{p}$"),
    inner.map(lambda p: f"(?i:{p})"),
), max_leaves=8)
PATTERNS = st.tuples(st.sampled_from(["", "(?i)", "(?s)", "(?a)"]), TREES).map("".join)
KEYS = st.text(alphabet="ab.1٣ \nKkıIiİé_x", max_size=7)


def _groups(m):
    return None if m is None else (m.group(0), m.groups(), m.groupdict(), m.span())


@settings(max_examples=400, deadline=None)
@given(PATTERNS, st.lists(KEYS, min_size=1, max_size=8))
def test_answers_equal_python_re(pattern, keys):
    try:
        expected = re.compile(pattern)
    except re.error:
        return
    try:
        compiled = KeyPattern(pattern)
    except UnboundedPattern:
        return
    for key in keys:
        assert _groups(compiled.fullmatch(key)) == _groups(expected.fullmatch(key)), (pattern, key)
        if "\n" not in key:  # match() reads `$` as the key's end, as a full match does (explain's near misses)
            assert _groups(compiled.match(key)) == _groups(expected.match(key)), (pattern, key)


@pytest.mark.parametrize("pattern", [r"netcnnaud\.(\d+)\.(?P<p>.+)\.(.*)", r"(?i)LAYER\.(\w+)", r"[^\d.]+\.(\s*)\s*x$"])
def test_named_groups_and_non_ascii_keys(pattern):
    compiled, expected = KeyPattern(pattern), re.compile(pattern)
    assert compiled.engine == "re2" and compiled.groupindex == expected.groupindex
    for key in ["netcnnaud.12.weight.x", "netcnnaud.١٢.wéight.é", "layer.K", "Layer.ǅx", "ab.\u2003x", "ab.x"]:
        assert _groups(compiled.fullmatch(key)) == _groups(expected.fullmatch(key))


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_catastrophic_patterns_run_in_re2(pattern):
    compiled = KeyPattern(pattern)
    assert compiled.engine == "re2"
    for key in ["a" * 30 + "!", "a" * 10_000 + "!", "ab" * 5_000 + "!"]:
        assert compiled.fullmatch(key) is None  # returns at all: Python's re would take years


@pytest.mark.parametrize("pattern", REFUSED)
def test_unbounded_backtracking_is_refused_with_its_line(pattern):
    text = f"version: 1\nrules:\n  - match: 'x\\.(.*)'\n    target: 'y.{{1}}'\nskip:\n  - {json.dumps(pattern)}\n"
    [problem] = problems_of(text)
    assert problem.line == 6 and problem.path == "$.skip[0]"
    assert "backtracking" in problem.message and "refused" in problem.message


def test_bounded_lookarounds_still_work_in_python_re():
    compiled = KeyPattern(r"(?!head\.)\w+\.weight")
    assert compiled.engine == "re"
    assert compiled.fullmatch("conv.weight") and not compiled.fullmatch("head.weight")


def test_public_match_path_gives_the_same_spans(monkeypatch):
    """The private fast path of google-re2 and its public API agree (the fallback is tested here)."""
    compiled = KeyPattern(r"a\.(\d+)\.(?P<x>\w+)\w*")  # not linear in re: RE2

    class PublicOnly:  # what a google-re2 without the private attribute would look like
        def __init__(self, program):
            self.fullmatch, self.match = program.fullmatch, program.match

    public = kp_module._ascii_spans(PublicOnly(compiled._ascii), "fullmatch")
    private = kp_module._ascii_spans(compiled._ascii, "fullmatch")
    for key in [b"a.12.w_1", b"a.x.w", b"a.1.", b"a.007.z"]:
        assert (public(key) is None) == (private(key) is None)
        if private(key) is not None:
            assert [tuple(s) for s in public(key)] == [tuple(s) for s in private(key)]


def test_lone_surrogate_in_a_pattern_is_a_located_problem():
    [problem] = problems_of('{"version": 1, "rules": [{"match": "a\\ud800", "target": "b"}]}', "r.json")
    assert problem.line == 1 and problem.path == "$.rules[0].match" and "surrogate" in problem.message


def test_plan_with_catastrophic_patterns_and_long_keys_finishes(tmp_path):
    """`mapper plan` ran past 20 s on each of these (a process, so a hang is a failed timeout, not a stuck suite)."""
    keys = ["a" * 30 + "!", "a" * 10_000 + "!", "x." + "a" * 9_998]
    spec = {k: {"dtype": "F32", "shape": [1]} for k in keys}
    (tmp_path / "src.json").write_text(json.dumps(spec))
    rules = {"version": 1, "unmatched": "drop",
             "rules": [{"match": p, "target": f"t{i}"} for i, p in enumerate(CATASTROPHIC)],
             "skip": CATASTROPHIC}
    (tmp_path / "rules.json").write_text(json.dumps(rules))
    done = mapper_process("plan", tmp_path / "src.json", "--rules", tmp_path / "rules.json", "--json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert sorted(plan["unmatched"]) == sorted(keys[:2])
    assert [(m["source"], m["pattern"]) for m in plan["skipped"]] == [(keys[2], r"(.*a){20}")]


def test_parse_rules_accepts_the_catastrophic_patterns_it_can_bound():
    text = json.dumps({"version": 1, "rules": [{"match": p, "target": "t"} for p in CATASTROPHIC]})
    assert [r.pattern.engine for r in parse_rules(text, "r.json").rules] == ["re2"] * len(CATASTROPHIC)


def test_cli_names_the_refused_pattern(tmp_path):
    (tmp_path / "r.yaml").write_text("version: 1\nrules:\n  - match: '(?=(a+)+$)a*'\n    target: t\n")
    done = mapper("validate", tmp_path / "r.yaml")
    assert done.returncode == 2 and "r.yaml:3: $.rules[0].match" in done.stderr


@pytest.mark.parametrize("pattern", [r"netcnnaud\.(\d+)\.(?P<p>.+)", r"model\.layers\.(\d+)\.block17\.(\w+)\.weight",
                                     r"stage(\d+)\.conv(\d+)\.(weight|bias)", r"(.+)\.weight", r"[^.]+\.[^.]+"])
def test_patterns_linear_in_python_re_skip_re2(pattern):
    """Each repeat but the last is followed by a character it cannot match: one way through, in one pass."""
    assert KeyPattern(pattern).engine == "re"


@pytest.mark.parametrize("pattern", [*CATASTROPHIC, r"(.*)\.(ab|a)", r"(\d+)(1|2)\d+", r"\w+_\w+", r"(?i)a\d+"])
def test_patterns_with_several_ways_through_use_re2(pattern):
    assert KeyPattern(pattern).engine == "re2"
