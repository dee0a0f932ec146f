"""compile_pattern parses a pattern once and gives exactly re.compile's pattern, and the answers
read from the tree it keeps (the matcher's prefixes and suffixes, the cost checks, the RE2
translation) are the answers read from a fresh parse."""
from __future__ import annotations

import re
import sys

import pytest
from hypothesis import given, settings, strategies as st

from mapper_core.rules import regex_cost, regex_syntax
from mapper_core.rules.key_pattern import key_pattern
from mapper_core.rules.regex_syntax import NoLinearForm, compile_pattern

ATOMS = ["a", "b", "1", "_", r"\.", ".", r"\d", r"\w", r"\s", "[ab]", "[^a]", r"[\d.]", "[0-9]", "K", "é", "٣",
         r"\W", r"\D", r"\b", "^", "$", r"\A", r"\Z"]
QUANTIFIERS = ["*", "+", "?", "*?", "+?", "??", "{1,3}", "{2}", "{0,2}?", "{3,}", "*+", "++"]

TREES = st.recursive(st.sampled_from(ATOMS), lambda inner: st.one_of(
    st.tuples(inner, inner).map("".join),
    inner.map(lambda p: f"({p})"),
    st.tuples(st.integers(0, 9), inner).map(lambda t: f"(?P<g{t[0]}>{t[1]})"),
    st.tuples(inner, inner).map(lambda t: f"(?:{t[0]}|{t[1]})"),
    st.tuples(inner, st.sampled_from(QUANTIFIERS)).map(lambda t: f"(?:{t[0]}){t[1]}"),
    st.tuples(st.sampled_from(["(?=", "(?!", "(?<=", "(?<!", "(?>", "(?i:", "(?-i:", "(?s:"]), inner)
    .map(lambda t: f"{t[0]}{t[1]})"),
    inner.map(lambda p: f"{p}(?P=g1)"),
    inner.map(lambda p: rf"{p}\1"),
), max_leaves=8)
PATTERNS = st.tuples(st.sampled_from(["", "(?i)", "(?s)", "(?a)", "(?x)", "(?m)"]), TREES).map("".join)
# Rules patterns as people write them (and the matcher's index reads).
KEY_PATTERNS = [r"model\.layers\.(\d+)\.block7\.(\w+)\.weight", r"stage3\.conv(\d+)\.(weight|bias)",
                r"(encoder|decoder)\.(\d+)\..*", r".*\.num_batches_tracked", r"aux\..*", r"blocks\.(\d+)\.(?P<p>.+)",
                r"netcnnaud\.(\d+)\.(?P<p>.+)\.(.*)", r"(?i)LAYER\.(\w+)", r"a\d\d\.b[0-9]+\.c", r"x\.\d+y\.(.+)",
                r"enc\.(\d+)\.(weight|bias)", r"head\..*", r"^a\.b$", r"a\.(b)\.c\.d", r"[^.]+\.weight"]


def answers(pattern: re.Pattern) -> tuple:
    """Everything read from a pattern's syntax tree."""
    def attempt(read):
        try:
            return read(pattern)
        except NoLinearForm as exc:
            return ("NoLinearForm", str(exc))
    return (regex_syntax.prefix_tokens(pattern), regex_syntax.literal_suffix(pattern),
            regex_syntax.plain_sequence(pattern), regex_cost.linear_in_re(pattern),
            attempt(regex_cost.backtracking_risk), attempt(lambda p: regex_syntax.to_re2(p, ascii_text=True)))


def check_same_as_re(text: str) -> None:
    regex_syntax._TREES.clear()
    try:
        reference = re.compile(text)
    except re.error as exc:
        with pytest.raises(re.error) as raised:
            compile_pattern(text)
        assert (raised.value.msg, raised.value.pos) == (exc.msg, exc.pos)
        return
    expected = answers(reference)  # from a tree parsed on its own
    fresh = repr(regex_syntax._tree(text, reference.flags))
    regex_syntax._TREES.clear()
    compiled = compile_pattern(text)
    # Pattern equality compares the text, the flags and the compiled code
    assert compiled == reference and compiled.groupindex == reference.groupindex
    assert compiled.groups == reference.groups and compiled.flags == reference.flags
    assert repr(regex_syntax._TREES[text, compiled.flags]) == fresh  # kept, and compiling did not change it
    assert answers(compiled) == expected


def test_the_private_parts_work_on_the_supported_pythons():
    """3.10 to 3.13 build patterns from the tree; a later Python falls back to re.compile."""
    if sys.version_info < (3, 14):
        assert regex_syntax.PARSE_ONCE


@settings(max_examples=500, deadline=None)
@given(PATTERNS)
def test_compile_pattern_is_re_compile(text):
    check_same_as_re(text)


@pytest.mark.parametrize("text", [*KEY_PATTERNS, "", "(", "a{2,1}", "(?P<x>a)(?P<x>b)", "(?<=a+)b", "\\", "[a-",
                                  "a" * 300, "(?i)é", "(?a)\\w", "(?x) a # comment\n b"])
def test_key_patterns_and_errors(text):
    check_same_as_re(text)


def test_bench_patterns():
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import bench_plan
    finally:
        sys.path.pop(0)
    ruleset = bench_plan.rules_1000()
    for text in [r.match for r in ruleset.rules[::7]] + [s.match for s in ruleset.skip]:
        check_same_as_re(text)


def test_without_the_private_parts_it_is_re_compile(monkeypatch):
    monkeypatch.setattr(regex_syntax, "PARSE_ONCE", False)
    for text in KEY_PATTERNS:
        regex_syntax._TREES.clear()
        compiled = compile_pattern(text)
        assert compiled == re.compile(text) and regex_syntax._TREES == {}
        assert answers(compiled) == answers(re.compile(text))


def test_private_parts_that_changed_turn_parse_once_off(monkeypatch):
    monkeypatch.setattr(regex_syntax._compiler, "_code", lambda tree, flags: [])
    assert not regex_syntax._private_parts_work()
    monkeypatch.undo()
    assert regex_syntax._private_parts_work()


def test_a_key_pattern_is_parsed_once(monkeypatch):
    parses = []
    real = regex_syntax._sre.parse
    monkeypatch.setattr(regex_syntax._sre, "parse", lambda *a: parses.append(a) or real(*a))
    text = r"once\.(\d+)\.only\.(\w+)"
    pattern = key_pattern(text)
    assert regex_syntax.prefix_tokens(pattern) == ("once.", regex_syntax.DIGITS, ".only.")
    assert len(parses) == (1 if regex_syntax.PARSE_ONCE else 2)


def test_the_tree_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(regex_syntax, "TREES_KEPT", 3)
    regex_syntax._TREES.clear()
    for i in range(5):
        compile_pattern(f"x{i}")
    assert list(regex_syntax._TREES) == [("x2", re.UNICODE), ("x3", re.UNICODE), ("x4", re.UNICODE)]
