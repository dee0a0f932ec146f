"""The prefix index gives exactly the answers of the naive first-full-match loop."""
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mapper_core.rules.matcher import Matcher, literal_prefix, literal_suffix, naive_full_matches, prefix_tokens

# (pattern piece, strategy for a string it matches). Digits include "٣" (Arabic-Indic three,
# matched by \d) and keys may hold "²" (isdigit but not decimal) to probe digit-run handling.
PIECES = [
    ("a", st.just("a")), ("b", st.just("b")), (r"\.", st.just(".")), ("1", st.just("1")), ("7", st.just("7")),
    ("_", st.just("_")), (r"\d+", st.text("0127٣", min_size=1, max_size=3)), (r"\d", st.sampled_from("19٣")),
    ("[0-9]+", st.text("0129", min_size=1, max_size=3)), ("[1-3]", st.sampled_from("123")),
    ("[ab]", st.sampled_from("ab")), ("(a|b)", st.sampled_from("ab")), ("(?:ab)?", st.sampled_from(["", "ab"])),
    (".*", st.text("ab.1_", max_size=3)), (r"\w+", st.text("ab1_٣", min_size=1, max_size=3)),
    ("a*", st.text("a", max_size=2)), (r"(\d+)", st.text("0127", min_size=1, max_size=2)),
    ("(?:1|12)", st.sampled_from(["1", "12"])), ("[^.]+", st.text("ab1", min_size=1, max_size=2)),
    ("(?i:a)", st.sampled_from("aA")), (r"\d*", st.text("12", max_size=2)), ("(?:b1)", st.just("b1")),
    (r"(?:\d)+", st.text("12", min_size=1, max_size=2)), ("(?=a)", st.just("")), ("$", st.just("")),
    ("^", st.just("")), ("1{2}", st.just("11")), (r"(a)\.(?:\1)", st.just("a.a")),
]


@st.composite
def pattern_and_samples(draw):
    idx = draw(st.lists(st.integers(0, len(PIECES) - 1), max_size=6))
    text = "".join(PIECES[i][0] for i in idx)
    prefix = draw(st.sampled_from(["", "", "", "(?i)", "(?x)"]))
    if prefix == "(?x)":
        text = text.replace(r"\.", r"[.]")  # keep the verbose variant meaningful, no spaces inside
    return prefix + text, [PIECES[i][1] for i in idx]


@st.composite
def rules_and_keys(draw):
    drawn = draw(st.lists(pattern_and_samples(), min_size=1, max_size=8))
    patterns = [re.compile(p) for p, _ in drawn]
    keys = []
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.booleans()):
            _, samples = drawn[draw(st.integers(0, len(drawn) - 1))]
            key = "".join(draw(s) for s in samples)
            if draw(st.integers(0, 3)) == 0 and key:  # a near miss: drop or add one character
                pos = draw(st.integers(0, len(key) - 1))
                key = key[:pos] + key[pos + 1:] if draw(st.booleans()) else key[:pos] + draw(st.sampled_from("a.1²٣")) + key[pos:]
        else:
            key = draw(st.text("ab.17_٣²A", max_size=8))
        keys.append(key)
    return patterns, keys


@pytest.mark.slow
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(rules_and_keys())
def test_index_agrees_with_the_naive_loop(case):
    patterns, keys = case
    matcher = Matcher(patterns)
    for key in keys:
        expected = naive_full_matches(patterns, key)
        assert [i for i, _ in matcher.full_matches(key)] == expected
        assert set(expected) <= set(matcher.candidates(key))
        first = matcher.first(key)
        assert (first[0] if first else None) == (expected[0] if expected else None)


@pytest.mark.parametrize("patterns, key, expected", [
    ([r"model\.layers\.(\d+)\.block1\.(\w+)", r"model\.layers\.(\d+)\.block17\.(\w+)"], "model.layers.3.block17.x", [1]),
    ([r"model\.layers\.(\d+)\.block1\.(\w+)", r"model\.layers\.(\d+)\.block17\.(\w+)"], "model.layers.3.block1.x", [0]),
    ([r"a(\d+)\.", r"a1(\d+)\."], "a123.", [0, 1]),  # literal digits before a run join the run
    ([r"(\d+)\.x", r"\d\d\.x"], "٣4.x", [0, 1]),  # \d is Unicode-decimal, like the run index
    ([r"(\d+)\.x"], "²4.x", []),  # '²' is a digit to isdigit() but not to \d
    ([r"(?i)abc", r"ABC"], "aBc", [0]),
    ([r"(?:netfc|netcnn)(aud|lip)\..*", r"netcnnaud\..*"], "netcnnaud.0", [0, 1]),
    ([r".*\.num_batches_tracked", r"x\..*"], "x.num_batches_tracked", [0, 1]),
    ([r"(?x) a \. b"], "a.b", [0]),
    ([r"^a\.(\d+)$"], "a.12", [0]),
])
def test_hand_picked_cases(patterns, key, expected):
    compiled = [re.compile(p) for p in patterns]
    assert [i for i, _ in Matcher(compiled).full_matches(key)] == expected == naive_full_matches(compiled, key)


@pytest.mark.parametrize("pattern, prefix", [
    (r"netcnnaud\.(\d+)\.(.+)", "netcnnaud."),
    (r"netcnn(aud|lip)\..*", "netcnn"),
    (r"(a|b)x", ""),
    (r"(?i)abc", ""),
    (r"(?:ab)?c", ""),
    (r"[ab]c", ""),
    (r"ab*", "a"),
    (r"(ab)(cd)\.", "abcd."),
    (r"(?i:ab)c", ""),
    (r"\.\*\\", ".*\\"),
])
def test_literal_prefix(pattern, prefix):
    assert literal_prefix(re.compile(pattern)) == prefix


def test_a_digit_run_is_kept_only_when_a_non_digit_literal_follows():
    digits = prefix_tokens(re.compile(r"x(\d+)\.y"))[1]
    assert prefix_tokens(re.compile(r"model\.(\d+)\.b17\.(\w+)")) == ("model.", digits, ".b17.")
    assert prefix_tokens(re.compile(r"x(\d+)")) == ("x",)  # where the run ends is unknown
    assert prefix_tokens(re.compile(r"x\d*\.")) == ("x",)  # \d* may be empty: not a run


@pytest.mark.parametrize("pattern, suffix", [
    (r".*\.num_batches_tracked", ".num_batches_tracked"),
    (r".*(\.bias)$", ".bias"),
    (r".*\d", ""),
    (r"(?i).*abc", ""),
    (r".*x?", ""),
])
def test_literal_suffix(pattern, suffix):
    assert literal_suffix(re.compile(pattern)) == suffix


def test_many_rules_share_a_prefix_yet_few_are_tried():
    patterns = [re.compile(rf"model\.layers\.(\d+)\.block{j}\.(\w+)\.weight") for j in range(300)]
    patterns.append(re.compile(r".*\.bias"))
    matcher = Matcher(patterns)
    assert matcher.candidates("model.layers.12.block42.attn.weight") == [42]
    assert matcher.candidates("model.layers.12.block42.attn.bias") == [42, 300]


# cached_candidates: one answer per class of keys (the same text but for digits the walk never read)

# any key shares the memo: non-ASCII text, "٣" (a decimal the class does not mask) and a lone surrogate too
OTHER_KEY = st.text("ab.17_é٣\ud800", max_size=8)


@st.composite
def key_families(draw):
    """Patterns, and keys that share their text but for the digits: each sampled key, then variants
    with its digit runs redrawn (the same lengths or not; "٣" changes the class), in a random order."""
    patterns, keys = draw(rules_and_keys())
    keys = keys + draw(st.lists(OTHER_KEY, max_size=3))
    variants = []
    for key in keys:
        for _ in range(draw(st.integers(0, 4))):
            variants.append(re.sub(r"\d+", lambda m: draw(st.text("0179٣", min_size=1, max_size=3)), key))
    return patterns, draw(st.permutations(keys + variants))


@pytest.mark.slow
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(key_families())
def test_remembered_candidates_are_those_of_a_fresh_walk(case):
    patterns, keys = case
    matcher = Matcher(patterns)
    for key in keys + keys:  # the second time round, every answer comes from the memo
        assert matcher.cached_candidates(key) == tuple(Matcher(patterns).candidates(key))


@pytest.mark.parametrize("patterns, keys", [
    # the digits after 'block' are read (labels hold digits), those after 'layers.' are not
    ([rf"model\.layers\.(\d+)\.block{j}\.(\w+)" for j in (1, 17, 2, 170)],
     ["model.layers.3.block17.x", "model.layers.4.block1.x", "model.layers.5.block17.x", "model.layers.5.block2.x",
      "model.layers.55.block170.x", "model.layers.6.block171.x", "model.layers.7.block18.x"]),
    # a literal digit edge beside a digit run: the run is read where the edges part on a digit
    ([r"a(\d+)\.x", r"a1\.y", r"a12\.z"], ["a1.y", "a2.y", "a12.z", "a13.z", "a1.x", "a7.x"]),
    # a digit with no edge of its own is read all the same (another digit would have one)
    ([r"a(\d+)\.x", r"a1\.x"], ["a7.x", "a1.x"]),
    # digits inside a label: compared, so read
    ([r"x\.(\d+)\.ab1\.y"], ["x.5.ab1.y", "x.6.ab2.y", "x.5.ab1.y"]),
    # suffixes that hold digits: the last digits are read
    ([r".*\.w1", r".*\.w2", r"k(\d+)\.(.*)"], ["k1.w1", "k2.w1", "k1.w2", "k1.w3", "k22.w2"]),
    # a digit run straight after a prefix-less start, and keys with no digits
    ([r"(\d+)\.x", r"1\.y", r"[a-z]+"], ["1.x", "2.x", "1.y", "2.y", "abc", "abd", "12.y"]),
])
def test_keys_that_differ_in_a_read_digit_get_their_own_answer(patterns, keys):
    compiled = [re.compile(p) for p in patterns]
    matcher = Matcher(compiled)
    for key in keys + keys[::-1]:
        assert matcher.cached_candidates(key) == tuple(matcher.candidates(key))
        assert [i for i in matcher.cached_candidates(key) if compiled[i].fullmatch(key)] == \
            naive_full_matches(compiled, key)


def test_a_class_shares_one_answer_and_the_memo_stops_at_its_limit(monkeypatch):
    import mapper_core.rules.matcher as matcher_module

    patterns = [re.compile(rf"model\.layers\.(\d+)\.block{j}\.(\w+)\.weight") for j in range(30)]
    matcher = Matcher(patterns)
    for layer in range(50):
        assert matcher.cached_candidates(f"model.layers.{layer}.block17.q.weight") == (17,)
    assert matcher._stored == 2  # layers 0-9 and 10-49: the class holds where the digits are
    monkeypatch.setattr(matcher_module, "MEMO_LIMIT", 3)
    small = Matcher(patterns)
    keys = [f"model.layers.1.block{j}.q.weight" for j in range(30)] + ["x٣.y", "model.layers.1.block٣.q.weight"]
    assert [small.cached_candidates(k) for k in keys] == [tuple(small.candidates(k)) for k in keys]
    assert small._memo is None  # past the limit every key is walked


def test_a_matcher_remembers_what_its_answer_makes_of_the_candidates():
    patterns = [re.compile(p) for p in (r"k(\d+)\.a", r"k1\.(\w)", r".*\.a")]
    made = []

    def answer(ids):
        made.append(ids)
        return tuple(patterns[i].pattern for i in ids)

    matcher = Matcher(patterns, answer=answer)
    keys = ["k1.a", "k2.a", "k1.b", "k1.a", "k2.a"]
    assert [matcher.cached_candidates(k) for k in keys] == \
        [tuple(patterns[i].pattern for i in Matcher(patterns).candidates(k)) for k in keys]
    assert made == [[0, 1, 2], [0, 2], [1]]  # once per answer (k1's digit is read: 'k1' is an edge)
