"""A target key nothing fills whose tied partner (one tensor in the target model) the plan fills is
filled through the tie: neither uninitialized nor new, in the plan, its summary, the text and JSON."""
import json

from mapper_core.plan.make import make_plan
from mapper_core.plan.report import render_text
from mapper_core.rules.ruleset import FreezeGroup, Rule, RuleSet, SkipPattern
from mapper_core.specs import TensorSpec

E = TensorSpec("F32", (6, 4))
SOURCE = {"embed.weight": E, "head.weight": E}
TARGET = {"wte.weight": E, "lm_head.weight": E, "norm.weight": TensorSpec("F32", (4,))}
RULES = RuleSet(name="t", rules=(Rule(0, r"embed\.weight", "wte.weight"),), skip=(SkipPattern(r"head\..*"),),
                new=(SkipPattern(r"lm_head\..*"), SkipPattern(r"norm\..*")))
TIES = [("wte.weight", "lm_head.weight")]


def test_the_tied_partner_of_a_filled_key_is_filled_through_the_tie():
    plan = make_plan(SOURCE, RULES, TARGET, target_ties=TIES)
    assert plan.tied_filled == (("lm_head.weight", "wte.weight"),)
    assert plan.expected_uninitialized == ("norm.weight",) and plan.uninitialized == ()
    summary = plan.summary()
    assert summary["tied_filled"] == 1 and summary["target_filled"] == 2 / 3
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["tied_filled"] == [{"target": "lm_head.weight", "tied_to": "wte.weight"}]
    assert data["expected_uninitialized"] == ["norm.weight"]


def test_without_the_ties_the_key_stays_new():
    plan = make_plan(SOURCE, RULES, TARGET)
    assert plan.tied_filled == () and plan.expected_uninitialized == ("lm_head.weight", "norm.weight")


def test_a_tie_whose_names_are_both_empty_fills_nothing():
    skip_all = RuleSet(name="t", rules=(Rule(0, r"x", "y"),), skip=(SkipPattern(r".*"),))
    plan = make_plan(SOURCE, skip_all, TARGET, target_ties=TIES)
    assert plan.tied_filled == () and set(plan.uninitialized) == set(TARGET)


def test_the_text_report_lists_it_as_filled_not_new():
    text = render_text(make_plan(SOURCE, RULES, TARGET, target_ties=TIES), RULES)
    assert ("Filled through a tie (1): one tensor in the target with a key the plan fills (tied weights), so they "
            "hold its values\n  lm_head.weight  = wte.weight (a `new:` pattern declares it new, but it is tied to "
            "a filled key)") in text
    assert "New target keys (1)" in text and "lm_head.weight\n" not in text.split("New target keys")[1]
    assert "target keys 3: filled 66.7% (1 through a tie), uninitialized 0, new (expected) 1" in text


def test_a_group_pattern_naming_only_the_tied_key_is_not_idle():
    from mapper_core.plan.group_check import idle_group_patterns, plan_target_keys

    plan = make_plan(SOURCE, RULES, TARGET, target_ties=TIES)
    assert "lm_head.weight" in plan_target_keys(plan)
    grouped = RuleSet(name="t", rules=RULES.rules, freeze=(FreezeGroup("head", ("lm_head\\.weight",)),))
    assert idle_group_patterns(grouped, plan_target_keys(plan)) == []
