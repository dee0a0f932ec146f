"""make_plan: the categories, one by one, and properties against a naive reference planner."""
import dataclasses
import re
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mapper_core.plan import Collision, Mapped, Mismatch, Plan, Skipped, UnusedRule
from mapper_core.plan.make import make_plan
from mapper_core.rules.ruleset import Rule, RuleSet, SkipPattern
from mapper_core.specs import TensorSpec
from cli_runner import python_process  # tests/helpers


def F(*shape, dtype="F32"):
    return TensorSpec(dtype, tuple(shape))


def rules(*specs, skip=(), name="t"):
    """RuleSet from (match, target[, options]) tuples, numbered in order."""
    built = []
    for i, spec in enumerate(specs):
        options = spec[2] if len(spec) > 2 else {}
        built.append(Rule(i, spec[0], spec[1], **options))
    return RuleSet(name=name, rules=tuple(built), skip=tuple(SkipPattern(s) for s in skip))


# --- the naive reference: the definition, written as plainly as possible ----------------

def reference_plan(source, ruleset, target=None):
    mapped, skipped, unmatched, mismatched, took = [], [], [], [], set()
    for key, spec in source.items():
        skip = next((s for s in ruleset.skip if re.fullmatch(s.match, key)), None)
        if skip is not None:
            skipped.append(Skipped(key, skip.match))
            continue
        winner = rendered = None
        for rule in ruleset.rules:
            m = re.fullmatch(rule.match, key)
            rendered = rule.template.trace(m).key if m else None  # field by field, not the compiled renderer
            if rendered is not None:
                winner = rule
                break
        if winner is None:
            unmatched.append(key)
            continue
        took.add(winner.index)
        if target is None:
            mapped.append(Mapped(key, rendered, winner.index, spec.dtype, spec.shape))
            continue
        t = target.get(rendered)
        t_shape, t_dtype = (t.shape, t.dtype) if t else (None, None)
        if t_shape != spec.shape:
            mismatched.append(Mismatch(key, rendered, winner.index, spec.shape, t_shape,
                                       winner.on_shape_mismatch, spec.dtype, t_dtype))
            if winner.on_shape_mismatch == "skip":
                skipped.append(Skipped(key, None, winner.index))
                continue
        mapped.append(Mapped(key, rendered, winner.index, spec.dtype, spec.shape, t_shape, t_dtype))
    groups = defaultdict(list)
    for m in mapped:
        groups[m.target].append(m)
    collisions = tuple(Collision(t, tuple(m.source for m in g), tuple(m.rule for m in g))
                       for t, g in groups.items() if len(g) > 1)
    uninitialized = ()
    if target is not None:
        bad = {c.target for c in collisions}
        off = {m.source for m in mismatched}
        uninitialized = tuple(sorted(set(target) - {m.target for m in mapped if m.target not in bad and m.source not in off}))
    return Plan(ruleset.name, tuple(mapped), tuple(skipped), tuple(unmatched), uninitialized, tuple(mismatched),
                collisions, tuple(UnusedRule(r.index, r.match) for r in ruleset.rules if r.index not in took),
                len(source), None if target is None else len(target), rules_origin=ruleset.origin)


# --- strategies --------------------------------------------------------------------------

# (pattern piece, number of groups it opens, strategy for text it matches)
PIECES = [
    (r"a", 0, st.just("a")), (r"\.", 0, st.just(".")), (r"1", 0, st.just("1")),
    (r"(\d+)", 1, st.text("0123", min_size=1, max_size=2)), (r"(a|b)", 1, st.sampled_from("ab")),
    (r"(x)?", 1, st.sampled_from(["", "x"])), (r"(\w+)", 1, st.text("ab1", min_size=1, max_size=2)),
    (r"[ab]", 0, st.sampled_from("ab")), (r".*", 0, st.text("a.1", max_size=2)), (r"\d", 0, st.sampled_from("27")),
]
TABLES = {"t": {"1": "one", "a": "A", "0": "zero"}}


@st.composite
def rule_spec(draw):
    idx = draw(st.lists(st.integers(0, len(PIECES) - 1), min_size=1, max_size=4))
    match = "".join(PIECES[i][0] for i in idx)
    groups = sum(PIECES[i][1] for i in idx)
    fields = []
    for _ in range(draw(st.integers(0, 2)) if groups else 0):
        g = draw(st.integers(1, groups))
        fields.append(draw(st.sampled_from([f"{{{g}}}", f"{{{g}+1}}", f"{{{g}-1}}", f"{{{g}|t}}"])))
    target = draw(st.sampled_from(["T", "U", "{{T}}"])) + "".join("." + f for f in fields)
    action = draw(st.sampled_from(["error", "skip"]))
    return match, target, [PIECES[i][2] for i in idx], action


@st.composite
def planning_case(draw):
    specs = draw(st.lists(rule_spec(), min_size=1, max_size=6))
    ruleset = RuleSet(
        name="gen",
        rules=tuple(Rule(i, m, t, on_shape_mismatch=a, tables=TABLES) for i, (m, t, _, a) in enumerate(specs)),
        skip=tuple(SkipPattern(p) for p in draw(st.lists(st.sampled_from([r"a\..*", r"b", r".*x", r"1\d"]), max_size=2))),
    )
    keys = []
    for _ in range(draw(st.integers(0, 12))):
        _, _, samples, _ = specs[draw(st.integers(0, len(specs) - 1))]
        keys.append("".join(draw(s) for s in samples) if draw(st.integers(0, 4)) else draw(st.text("ab.1x", max_size=4)))
    source = {k: F(draw(st.sampled_from([1, 2]))) for k in keys}
    target = None
    if draw(st.booleans()):
        names = [m.target for m in make_plan(source, RuleSet("n", ruleset.rules)).mapped]
        names += draw(st.lists(st.sampled_from(["T", "U", "T.one", "extra"]), max_size=2))
        target = {n: F(draw(st.sampled_from([1, 2])), dtype=draw(st.sampled_from(["F32", "F16"])))
                  for n in names if draw(st.integers(0, 5))}
    return source, ruleset, target


PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.slow
@PROPS
@given(planning_case())
def test_agrees_with_the_naive_reference(case):
    source, ruleset, target = case
    assert make_plan(source, ruleset, target) == reference_plan(source, ruleset, target)


@pytest.mark.slow
@PROPS
@given(planning_case())
def test_every_source_key_lands_in_exactly_one_place(case):
    source, ruleset, target = case
    plan = make_plan(source, ruleset, target)
    places = [m.source for m in plan.mapped] + [s.source for s in plan.skipped] + list(plan.unmatched)
    assert sorted(places) == sorted(source)
    assert len(set(places)) == len(places)
    for m in plan.mismatched:  # a mismatch stays in mapped (error) or skipped (skip)
        assert m.source in ({e.source for e in plan.mapped} if m.action == "error" else {s.source for s in plan.skipped})


@pytest.mark.slow
@PROPS
@given(planning_case())
def test_targets_are_never_shared_without_a_collision(case):
    source, ruleset, target = case
    plan = make_plan(source, ruleset, target)
    loadable = [m.target for m in plan.loadable]
    assert len(loadable) == len(set(loadable))
    if not plan.collisions:
        targets = [m.target for m in plan.mapped]
        assert len(targets) == len(set(targets))
    if target is not None:
        assert set(plan.uninitialized) == set(target) - set(loadable)


# --- the categories ------------------------------------------------------------------------

def test_first_full_match_wins_in_source_order():
    rs = rules((r"enc\.(\d+)\.w", "a.{1}"), (r"enc\..*", "b"), (r"enc", "c"))
    plan = make_plan({"enc.2.w": F(1), "enc.x": F(1), "enc.2.w.extra": F(1)}, rs)
    assert [(m.source, m.target, m.rule) for m in plan.mapped] == [
        ("enc.2.w", "a.2", 0), ("enc.x", "b", 1), ("enc.2.w.extra", "b", 1)]
    assert plan.unused_rules == (UnusedRule(2, "enc"),)


def test_skip_patterns_win_over_rules():
    rs = rules((r"fc\.(\w+)", "head.{1}"), skip=[r"fc\..*"])
    plan = make_plan({"fc.w": F(1)}, rs)
    assert plan.skipped == (Skipped("fc.w", r"fc\..*"),)
    assert plan.mapped == ()
    assert [u.rule for u in plan.unused_rules] == [0]


def test_first_matching_skip_pattern_is_recorded():
    plan = make_plan({"a.b": F(1)}, rules(skip=[r"a\.c", r".*\.b", r"a\..*"]))
    assert plan.skipped == (Skipped("a.b", r".*\.b"),)


@pytest.mark.parametrize("key, expected", [
    ("x.7", "fallback.7"),  # table has no entry '7'
    ("x.1", "one"),
    ("y.0", "fallback.0"),  # {1-1} would be -1
    ("y.3", "y.2"),
    ("z", "fallback.none"),  # optional group took no part
])
def test_a_template_that_does_not_render_lets_the_next_rule_try(key, expected):
    rs = rules(
        (r"x\.(\d+)", "{1|names}", {"tables": {"names": {"1": "one"}}}),
        (r"y\.(\d+)", "y.{1-1}"),
        (r"z(\.\d)?", "z{1}"),
        (r"[xy]\.(\d+)", "fallback.{1}"),
        (r"z", "fallback.none"),
    )
    [entry] = make_plan({key: F(1)}, rs).mapped
    assert entry.target == expected


def test_unmatched_keys_keep_source_order():
    plan = make_plan({"q": F(1), "a.1": F(1), "p": F(1)}, rules((r"a\.(\d)", "b{1}")))
    assert plan.unmatched == ("q", "p")


def test_without_target_specs_there_are_no_shape_checks():
    plan = make_plan({"a.1": F(3)}, rules((r"a\.(\d)", "b{1}")))
    assert plan.mapped == (Mapped("a.1", "b1", 0, "F32", (3,), None, None),)
    assert plan.target_count is None and plan.uninitialized == () and plan.mismatched == ()
    assert plan.summary()["target_filled"] is None


def test_shape_mismatch_under_error_stays_mapped_and_fails_the_plan():
    rs = rules((r"a\.(\d)", "b{1}"))
    plan = make_plan({"a.1": F(3)}, rs, {"b1": F(4)})
    assert plan.mapped == (Mapped("a.1", "b1", 0, "F32", (3,), (4,), "F32"),)
    assert plan.mismatched == (Mismatch("a.1", "b1", 0, (3,), (4,), "error", "F32", "F32"),)
    assert plan.errors == plan.mismatched and plan.has_errors()
    assert plan.loadable == () and plan.uninitialized == ("b1",)


def test_shape_mismatch_under_skip_leaves_the_key_behind_without_error():
    rs = rules((r"a\.(\d)", "b{1}", {"on_shape_mismatch": "skip"}))
    plan = make_plan({"a.1": F(3)}, rs, {"b1": F(4)})
    assert plan.mapped == ()
    assert plan.skipped == (Skipped("a.1", None, 0),)
    assert plan.mismatched[0].action == "skip"
    assert not plan.has_errors() and plan.unused_rules == ()  # the rule did take the key
    assert plan.uninitialized == ("b1",)


def test_a_missing_target_key_is_a_mismatch_with_no_target_shape():
    plan = make_plan({"a.1": F(3)}, rules((r"a\.(\d)", "b{1}")), {"other": F(3)})
    assert plan.mismatched == (Mismatch("a.1", "b1", 0, (3,), None, "error", "F32", None),)
    assert plan.uninitialized == ("other",)


def test_a_dtype_difference_is_recorded_but_is_not_a_mismatch():
    plan = make_plan({"a.1": F(3)}, rules((r"a\.(\d)", "b{1}")), {"b1": F(3, dtype="BF16")})
    assert plan.mismatched == () and not plan.has_errors()
    assert plan.mapped[0].target_dtype == "BF16" and plan.mapped[0].dtype == "F32"
    assert plan.to_dict()["mapped"][0]["target_dtype"] == "BF16"


def test_two_sources_for_one_target_collide_and_both_stay_mapped():
    rs = rules((r"aud\.(\d)", "enc.{1}"), (r"lip\.(\d)", "enc.{1}"))
    source = {"aud.0": F(1), "x": F(1), "lip.0": F(1), "aud.1": F(1)}
    plan = make_plan(source, rs, {"enc.0": F(1), "enc.1": F(1)})
    assert plan.collisions == (Collision("enc.0", ("aud.0", "lip.0"), (0, 1)),)
    assert [m.source for m in plan.mapped] == ["aud.0", "lip.0", "aud.1"]
    assert plan.has_errors() and plan.uninitialized == ("enc.0",)
    assert [m.target for m in plan.loadable] == ["enc.1"]


def test_collisions_are_errors_even_without_target_specs():
    plan = make_plan({"a": F(1), "b": F(1)}, rules((r"[ab]", "same")))
    assert plan.collisions == (Collision("same", ("a", "b"), (0, 0)),)
    assert plan.has_errors()


def test_summary_counts_and_coverage():
    rs = dataclasses.replace(rules((r"a\.(\d)", "t.{1}"), (r"never", "n"), skip=[r"fc\..*"]), unmatched="drop")
    source = {"a.1": F(1), "a.2": F(1), "fc.w": F(1), "lost": F(1)}
    target = {"t.1": F(1), "t.2": F(2), "t.3": F(1), "t.4": F(1)}
    s = make_plan(source, rs, target).summary()
    assert (s["mapped"], s["skipped"], s["unmatched"], s["mismatched"], s["unused_rules"]) == (2, 1, 1, 1, 1)
    assert s["source_consumed"] == 0.75  # mapped + skipped of 4
    assert s["target_filled"] == 0.25  # only t.1: t.2 has the wrong shape
    assert s["uninitialized"] == 3 and s["errors"] == 1


def test_origins_and_names_are_carried_into_the_plan():
    rs = RuleSet("named", (Rule(0, "a", "b"),), origin="rules.yaml")
    plan = make_plan({"a": F(1)}, rs, {"b": F(1)}, source_origin="s.safetensors", target_origin="t.json")
    d = plan.to_dict()
    assert d["rules"] == {"name": "named", "origin": "rules.yaml"}
    assert (d["source"], d["target"]) == ("s.safetensors", "t.json")


def test_an_empty_source_gives_an_empty_plan():
    plan = make_plan({}, rules((r"a", "b")), {"b": F(1)})
    assert (plan.mapped, plan.skipped, plan.unmatched) == ((), (), ())
    assert plan.uninitialized == ("b",) and plan.summary()["source_consumed"] == 1.0


def test_planning_needs_no_torch():
    code = ("import sys, mapper_core.planner, mapper_core.explain; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    python_process(code, check=True)


@pytest.mark.parametrize("options", [{}, {"on_shape_mismatch": "skip"}])
def test_a_template_giving_an_empty_key_is_an_error_of_the_plan(options):
    # trial 6 T13: the plan was clean and convert wrote a tensor named ''
    plan = make_plan({"x": F(2), "xa": F(2)}, rules((r"x(.*)", "{1}", options)))
    assert [(m.source, m.target) for m in plan.mapped] == [("x", ""), ("xa", "a")]  # listed, as other errors are
    [bad] = plan.mismatched
    assert (bad.source, bad.target, bad.action, bad.rule) == ("x", "", "error", 0)
    assert "gives an empty key" in bad.reason and plan.has_errors(strict=False)


def test_convert_says_why_an_empty_key_cannot_be_written(tmp_path):
    from cli_runner import mapper  # tests/helpers
    from tiny_safetensors import write_f32

    src = write_f32(tmp_path / "x.safetensors", {"x": [2]})
    (tmp_path / "r.yaml").write_text("version: 1\nrules:\n  - match: 'x(.*)'\n    target: '{1}'\n")
    done = mapper("convert", src, tmp_path / "o.safetensors", "--rules", tmp_path / "r.yaml")
    assert done.returncode == 1 and not (tmp_path / "o.safetensors").exists()
    assert "  empty target: x ->  (rule 0, line 3): its target template gives an empty key" in done.stderr


def test_explain_names_an_empty_target_as_such():
    from mapper_core.plan.explain import explain

    ruleset = rules((r"x(.*)", "{1}", {"on_shape_mismatch": "skip"}))
    plan = make_plan({"x": F(2)}, ruleset)
    text = explain("x", ruleset, plan).render()
    assert "  error: empty target: its target template gives an empty key" in text and "(the plan fails)" in text
