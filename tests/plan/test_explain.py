"""explain(key): the winner, and a reason for every other candidate."""
import json

import pytest

from mapper_core.plan.explain import explain
from mapper_core.plan.make import make_plan
from mapper_core.rules.ruleset import Rule, RuleSet, SkipPattern
from mapper_core.specs import TensorSpec

F = lambda *shape: TensorSpec("F32", shape)  # noqa: E731

RULES = RuleSet(
    name="demo",
    rules=(
        Rule(0, r"netcnnaud\.(\d+)\.(.+)", "audio.{1}.{2}"),
        Rule(1, r"netcnn(aud|lip)\.(\d+)\.(weight|bias)", "any.{1}.{2}.{3}"),
        Rule(2, r"blk\.(\d+)", "b.{1|names}", tables={"names": {"1": "one"}}),
        Rule(3, r"blk\.(\d+)", "b.{1-1}"),
        Rule(4, r"blk\.(\d+)", "b.last.{1}"),
        Rule(5, r"lip\.(\d+)\.(\w+)", "video.{1}.{2}", on_shape_mismatch="skip"),
    ),
    skip=(SkipPattern(r"netfc(aud|lip)\..*"), SkipPattern(r".*\.num_batches_tracked"), SkipPattern(r"netfc.*")),
)


def reasons(expl):
    return {(c.kind, c.index): c.reason for c in expl.candidates}


def test_the_winner_and_a_later_full_match():
    e = explain("netcnnaud.0.weight", RULES)
    assert (e.outcome, e.rule, e.target) == ("mapped", 0, "audio.0.weight")
    assert e.winner.index == 0 and e.winner.won
    assert reasons(e)[("rule", 1)] == "also matches fully, but rule 0 comes first"
    assert e.unrelated_rules == 4 and e.in_source is None


def test_a_prefix_only_match_is_called_out():
    e = explain("netcnnlip.3.weight.extra", RULES)
    assert e.outcome == "unmatched"
    assert reasons(e)[("rule", 1)] == ("matches a prefix only ('netcnnlip.3.weight'); "
                                       "patterns must match the whole key")


def test_a_match_inside_the_key_is_called_out():
    e = explain("model.lip.3.w", RULES)
    assert reasons(e)[("rule", 5)].startswith("matches 'lip.3.w' at column 7 only")


def test_table_miss_and_negative_shift_let_the_next_rule_win():
    e = explain("blk.0", RULES)
    assert (e.rule, e.target) == (4, "b.last.0")
    assert reasons(e)[("rule", 2)] == "full match, but table 'names' has no entry '0'"
    assert reasons(e)[("rule", 3)] == "full match, but {1-1} would give -1, below 0"
    assert explain("blk.1", RULES).rule == 2


def test_skip_patterns_come_before_rules():
    e = explain("netcnnaud.0.num_batches_tracked", RULES)
    assert (e.outcome, e.skip_pattern, e.rule, e.target) == ("skipped", r".*\.num_batches_tracked", None, None)
    assert reasons(e)[("rule", 0)].startswith("full match, but skipped: skip patterns are checked before rules")


def test_a_second_skip_pattern_loses_to_the_first():
    e = explain("netfcaud.0.weight", RULES)
    assert e.skip_pattern == r"netfc(aud|lip)\..*"
    assert reasons(e)[("skip", 2)] == "also matches fully, but skip pattern 0 comes first"
    assert "skipped by skip pattern" in e.render()


def test_a_key_nothing_relates_to():
    e = explain("zzz", RULES)
    assert e.outcome == "unmatched" and e.candidates == ()
    assert "3 skip patterns and 6 rules match no part of the key" in e.render()


SOURCE = {"netcnnaud.0.weight": F(4), "lip.1.w": F(2), "netcnnaud.0.bias": F(4), "blk.0": F(1)}
TARGET = {"audio.0.weight": F(5), "video.1.w": F(3), "b.last.0": F(1)}


@pytest.fixture
def plan():
    return make_plan(SOURCE, RULES, TARGET)


def test_a_shape_mismatch_under_error_is_reported(plan):
    e = explain("netcnnaud.0.weight", RULES, plan)
    assert e.in_source and e.mismatch.target_shape == (5,) and e.outcome == "mapped"
    assert "error: shape mismatch: shape [4] but the target has [5]" in e.render()


def test_a_shape_mismatch_under_skip_makes_the_key_skipped(plan):
    e = explain("lip.1.w", RULES, plan)
    assert (e.outcome, e.rule, e.skip_pattern) == ("skipped", 5, None)
    assert "(on_shape_mismatch: skip: the key is left behind)" in e.render()


def test_a_missing_target_key_is_reported(plan):
    e = explain("netcnnaud.0.bias", RULES, plan)
    assert e.mismatch.target_shape is None
    assert "the target has no key 'audio.0.bias'" in e.render()


def test_a_collision_is_reported():
    rs = RuleSet("c", (Rule(0, r"a\.(\d)", "t.{1}"), Rule(1, r"b\.(\d)", "t.{1}")))
    e = explain("b.1", rs, make_plan({"a.1": F(1), "b.1": F(1)}, rs))
    assert e.collision.sources == ("a.1", "b.1")
    assert "error: collision: 't.1' is also the target of a.1" in e.render()


def test_a_key_not_in_the_source_is_said_so_with_close_keys(plan):
    e = explain("netcnnaud.0.weigth", RULES, plan)
    assert e.in_source is False and "netcnnaud.0.weight" in e.similar
    text = e.render()
    assert "not in the source checkpoint" in text and "mapped by rule 0" in text
    # a misspelt key must not pass a script's check: exit 1, said why
    assert e.exit_code == 1 and "exit code 1: the key is not in the source" in text


def test_a_target_name_given_as_the_key_points_at_its_source(plan):
    e = explain("audio.0.weight", RULES, plan)
    assert e.in_source is False and e.target_of == (("netcnnaud.0.weight", 0),)
    assert "it is a target name: source key 'netcnnaud.0.weight' maps to it (rule 0)" in e.render()
    assert e.to_dict()["target_of"] == [{"source": "netcnnaud.0.weight", "rule": 0}]
    assert explain("netcnnaud.0.weigth", RULES, plan).target_of == ()


def test_to_dict_is_json_ready(plan):
    d = json.loads(json.dumps(explain("netcnnaud.0.weight", RULES, plan).to_dict()))
    assert d["outcome"] == "mapped" and d["mismatch"]["target_shape"] == [5]
    assert d["candidates"][0] == {"kind": "rule", "index": 0, "match": RULES.rules[0].match, "won": True,
                                  "reason": "takes the key -> audio.0.weight", "target": "audio.0.weight",
                                  "line": None}


def test_explain_agrees_with_the_plan_for_every_source_key():
    source = {k: F(1) for k in ["netcnnaud.0.weight", "netcnnlip.2.bias", "blk.0", "blk.1", "blk.5", "lip.3.k",
                                "netfclip.0.w", "x.num_batches_tracked", "nothing", "netcnnlip.2"]}
    plan = make_plan(source, RULES)
    mapped = {m.source: m for m in plan.mapped}
    skipped = {s.source: s for s in plan.skipped}
    for key in source:
        e = explain(key, RULES, plan)
        if key in mapped:
            assert (e.outcome, e.rule, e.target) == ("mapped", mapped[key].rule, mapped[key].target)
        elif key in skipped:
            assert (e.outcome, e.skip_pattern) == ("skipped", skipped[key].pattern)
        else:
            assert e.outcome == "unmatched" and key in plan.unmatched
