"""`unmatched:`, `new:` and `on_kind_mismatch:` are schema-checked with line numbers, like every key."""
import pytest

from mapper_core.errors import RulesError
from mapper_core.rules import parse_rules

BAD = """version: 1
unmatched: ignore
new: ['head(']
rules:
  - match: 'a'
    target: 'b'
    on_kind_mismatch: skip
"""


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_bad_values_are_reported_together_with_their_lines(fmt):
    text = BAD if fmt == "yaml" else (
        '{\n"version": 1,\n"unmatched": "ignore",\n"new": ["head("],\n"rules": [\n'
        '  {"match": "a", "target": "b",\n   "on_kind_mismatch": "skip"}]}\n')
    with pytest.raises(RulesError) as info:
        parse_rules(text, f"r.{fmt}")
    lines = {(p.line, p.path) for p in info.value.problems}
    assert lines == ({(2, "$.unmatched"), (3, "$.new[0]"), (7, "$.rules[0].on_kind_mismatch")} if fmt == "yaml"
                     else {(3, "$.unmatched"), (4, "$.new[0]"), (7, "$.rules[0].on_kind_mismatch")})
    messages = " | ".join(p.message for p in info.value.problems)
    assert 'one of "error", "keep", "drop"' in messages and 'one of "error", "warn"' in messages
    assert "invalid regular expression 'head('" in messages


def test_the_values_reach_the_ruleset_with_their_defaults():
    rs = parse_rules("version: 1\nrules: [{match: a, target: b}]", "r.yaml")
    assert rs.unmatched == "error" and rs.new == () and rs.rules[0].on_kind_mismatch == "error"
    rs = parse_rules("version: 1\nunmatched: keep\nnew: ['head\\..*']\n"
                     "rules: [{match: a, target: b, on_kind_mismatch: warn}]", "r.yaml")
    assert rs.unmatched == "keep" and [n.match for n in rs.new] == ["head\\..*"] and rs.new[0].line == 3
    assert rs.rules[0].on_kind_mismatch == "warn"
