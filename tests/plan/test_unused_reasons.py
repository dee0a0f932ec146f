"""Why a rule took no key: shadowed by an earlier rule or skip pattern, a template that could not be
filled, or no match at all, with line numbers (torch-free). Before, plan said "matched no source key"
for all of them and called a plan whose rule silently lost its keys to an earlier one clean."""
from __future__ import annotations

import json
import random

import pytest

from mapper_core.plan.make import make_plan
from mapper_core.plan.plan_json import plan_json
from mapper_core.plan.report import render_text
from mapper_core.plan.unused import unused_rules
from mapper_core.rules import parse_rules
from mapper_core.rules.ruleset import Rule, RuleSet, SkipPattern
from mapper_core.specs import TensorSpec

F = TensorSpec("F32", (2,))
LAYERS = {f"model.layers.{i}.self_attn.{p}_proj.weight": F for i in range(3) for p in "qkvo"}
KEYS = {"model.embed_tokens.weight": F, **LAYERS, **{f"model.layers.{i}.input_layernorm.weight": F for i in range(3)},
        "model.norm.weight": F, "lm_head.weight": F}

STEAL = """\
version: 1
rules:
  - match: 'model\\.embed_tokens\\.weight'
    target: 'tok_embeddings.weight'
  - match: 'lm_head\\.weight'
    target: 'output.weight'
  - match: 'model\\.(.+)'
    target: '{1}'
  - match: 'model\\.layers\\.(\\d+)\\.self_attn\\.(q|k|v|o)_proj\\.weight'
    target: 'layers.{1}.attention.w{2}.weight'
  - match: 'never\\.(.+)'
    target: 'n.{1}'
"""


def test_a_rule_whose_keys_an_earlier_rule_takes_is_shadowed_and_warned_about():
    rules = parse_rules(STEAL, "steal.yaml")
    plan = make_plan(KEYS, rules)
    shadowed, never = plan.unused_rules
    assert (shadowed.rule, shadowed.line, shadowed.reason, shadowed.matched) == (3, 9, "shadowed", 12)
    assert [(t.kind, t.index, t.line, t.keys) for t in shadowed.taken_by] == [("rule", 2, 7, 12)]
    assert (never.rule, never.line, never.reason, never.matched, never.taken_by) == (4, 11, "no_match", 0, ())
    text = render_text(plan, rules)
    assert "PROBLEMS (0 errors, 1 warning)" in text
    assert ("  warning: rule 3 (line 9): 'model\\.layers\\.(\\d+)\\.self_attn\\.(q|k|v|o)_proj\\.weight': shadowed: "
            "its 12 matching keys all went to rule 2 (line 7); put rule 3 before rule 2, or narrow rule 2's pattern"
            ) in text
    assert "Unused rules (2): took no source key" in text
    assert "  rule 4 (line 11): 'never\\.(.+)': matched no source key" in text
    assert "  result: clean, with 1 warning (see PROBLEMS)" in text and not plan.has_errors()


def test_a_rule_whose_keys_a_skip_pattern_takes_names_the_skip_pattern():
    rules = parse_rules("version: 1\nrules:\n  - match: 'model\\.layers\\.(\\d+)\\.input_layernorm\\.weight'\n"
                        "    target: 'layers.{1}.attention_norm.weight'\nskip:\n  - '.*norm.*'\nunmatched: keep\n",
                        "skipsteal.yaml")
    [u] = make_plan(KEYS, rules).unused_rules
    assert (u.reason, u.matched, [(t.kind, t.index, t.line, t.keys) for t in u.taken_by]) == (
        "shadowed", 3, [("skip", 0, 6, 3)])
    text = render_text(make_plan(KEYS, rules), rules)
    assert ("shadowed: its 3 matching keys all went to skip pattern 0 (line 6); narrow skip pattern 0 "
            "(skip patterns are tried before every rule), or remove it") in text


def test_a_rule_whose_template_cannot_be_filled_says_why_and_for_which_key():
    rules = parse_rules("version: 1\nunmatched: drop\nrules:\n  - match: 'model\\.(norm)\\.weight'\n"
                        "    target: 'norm{1+1}.weight'\n", "grp2.yaml")
    plan = make_plan(KEYS, rules)
    [u] = plan.unused_rules
    assert (u.reason, u.matched, u.unfilled, u.taken_by) == ("unfilled", 1, 1, ())
    assert u.example == ("model.norm.weight", "{1+1} needs a number and group 1 captured 'norm'")
    text = render_text(plan, rules)
    assert ("  rule 0 (line 4): 'model\\.(norm)\\.weight': matched 1 key but its template could not be filled "
            "({1+1} needs a number and group 1 captured 'norm', for 'model.norm.weight')") in text
    assert "warning" not in text  # the key is listed as unmatched; a table or a shift may filter on purpose


def test_a_fallback_whose_keys_went_to_several_earlier_rules_is_listed_but_not_warned_about():
    rules = RuleSet("fb", (Rule(0, r"model\.layers\.(.+)", "l.{1}", line=3),
                           Rule(1, r"model\.(norm)\.weight", "n.{1}", line=5),
                           Rule(2, r"lm_head\.weight", "out", line=7),
                           Rule(3, r"model\.(\w+)\.weight", "{1|t}", line=9, tables={"t": {"norm": "n"}}),
                           Rule(4, r"model\.(.+)", "m.{1}", line=11),
                           Rule(5, r"(.+)", "{1}", line=13)))
    plan = make_plan(KEYS, rules)
    partly, fallback = plan.unused_rules
    assert fallback.reason == "shadowed" and fallback.matched == len(KEYS)
    assert [(t.index, t.keys) for t in fallback.taken_by] == [(0, 15), (1, 1), (2, 1), (4, 1)]
    text = render_text(plan, rules)
    assert "PROBLEMS" not in text and "result: clean\n" in text + "\n"
    assert ("rule 5 (line 13): '(.+)': shadowed: its 18 matching keys went to earlier ones: 15 to rule 0 (line 3), "
            "1 to rule 1 (line 5), 1 to rule 2 (line 7), 1 to rule 4 (line 11)") in text
    # rule 3: model.norm.weight went to rule 1 first; model.embed_tokens.weight has no table entry (rule 4 took it)
    assert (partly.reason, partly.matched, partly.unfilled) == ("unfilled", 2, 1)
    assert [(t.kind, t.index, t.keys) for t in partly.taken_by] == [("rule", 1, 1)]
    assert ("rule 3 (line 9): 'model\\.(\\w+)\\.weight': matched 2 keys: 1 went to rule 1 (line 5); for 1 its template could not be filled (table 't' has no entry 'embed_tokens', for "
            "'model.embed_tokens.weight')") in text


def test_the_json_form_gives_each_reason_and_the_taker():
    rules = parse_rules(STEAL, "steal.yaml")
    plan = make_plan(KEYS, rules)
    data = json.loads(plan_json(plan))
    assert data == json.loads(json.dumps(plan.to_dict()))
    assert data["unused_rules"] == [
        {"rule": 3, "match": "model\\.layers\\.(\\d+)\\.self_attn\\.(q|k|v|o)_proj\\.weight", "line": 9,
         "reason": "shadowed", "matched": 12, "taken_by": [{"rule": 2, "line": 7, "keys": 12}], "unfilled": 0,
         "example": None},
        {"rule": 4, "match": "never\\.(.+)", "line": 11, "reason": "no_match", "matched": 0, "taken_by": [],
         "unfilled": 0, "example": None}]


def _naive(keys, ruleset, plan):
    """Per unused rule: the keys it fully matches, and who took each (from the plan itself)."""
    took = {m.source: ("rule", m.rule) for m in plan.mapped}
    took.update((s.source, ("skip", [p.match for p in ruleset.skip].index(s.pattern)) if s.pattern is not None
                 else ("rule", s.rule)) for s in plan.skipped)
    out = []
    for u in plan.unused_rules:
        rule = ruleset.rules[u.rule]
        matched = [k for k in keys if rule.pattern.fullmatch(k)]
        earlier = [took[k] for k in matched if k in took and (took[k][0] == "skip" or took[k][1] < u.rule)]
        out.append((u.rule, len(matched), len(matched) - len(earlier), sorted(set(earlier))))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_reasons_agree_with_a_naive_count(seed):
    rng = random.Random(seed)
    keys = {f"{rng.choice(['enc', 'dec', 'x'])}.{rng.randrange(12)}.{rng.choice(['w', 'b', 'norm'])}": F
            for _ in range(80)}
    if seed % 2:
        keys["enc.1\n.w"] = F  # a key with a newline: the search over joined keys steps aside
    pool = [r"enc\.(\d+)\.(\w+)", r"(enc|dec)\.(.+)", r"dec\.(\d+)\.w", r".*\.norm", r"x\.(\d+)\..*", r"(.+)\.b",
            r"enc\.1\n\.(w)", r"nope\.(.+)", r"(\w+)\.(\d+)\.norm"]
    some = {"t": {k: f"t.{k}" for k in list(keys)[::3]}}  # a table that fills a third of the keys
    rules = tuple(Rule(i, p, "{0}.%d" % i, tables={}) if i % 3 else Rule(i, p, "{0|t}.%d" % i, tables=some)
                  for i, p in enumerate(rng.sample(pool, 6)))
    ruleset = RuleSet("r", rules, skip=(SkipPattern(rng.choice([r".*\.b", r"x\..*", r"dec\.1\d\..*"])),),
                      unmatched="drop")
    plan = make_plan(keys, ruleset)
    got = [(u.rule, u.matched, u.unfilled, sorted((t.kind, t.index) for t in u.taken_by)) for u in plan.unused_rules]
    assert got == _naive(keys, ruleset, plan)
    assert unused_rules(keys, ruleset, [True] * len(rules), plan.mapped, plan.skipped) == ()


def test_plan_on_the_command_line_reports_the_shadowed_rule(tmp_path, mapper):
    from tiny_safetensors import write_f32  # tests/helpers

    src = write_f32(tmp_path / "m.safetensors", {k: (2,) for k in KEYS})
    (tmp_path / "steal.yaml").write_text(STEAL)
    text = mapper("plan", src, "--rules", tmp_path / "steal.yaml")
    assert text.returncode == 0
    assert "warning: rule 3 (line 9): " in text.stdout and "all went to rule 2 (line 7)" in text.stdout
    data = json.loads(mapper("plan", src, "--rules", tmp_path / "steal.yaml", "--json").stdout)
    assert [(u["rule"], u["reason"], u["taken_by"]) for u in data["unused_rules"]] == [
        (3, "shadowed", [{"rule": 2, "line": 7, "keys": 12}]), (4, "no_match", [])]
