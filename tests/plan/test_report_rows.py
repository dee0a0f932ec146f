"""The text report's long lists, built a column at a time (plan/rows.py), are byte for byte the report
formatted one row at a time: ``reference_text`` below is that report, written row by row."""
from collections import defaultdict

import pytest

from mapper_core.plan import Mapped, Plan, Skipped
from mapper_core.plan.make import make_plan
from mapper_core.plan.report import render_text
from mapper_core.plan.rows import block, key_rows, padding, shown_all
from mapper_core.plan.text import shown
from mapper_core.rules.load import parse_rules
from mapper_core.specs import TensorSpec, format_shape

RULES = """\
version: 1
name: 'wide\\u202e'
rules:
  - match: 'a\\.(\\d+)\\.(weight|bias)'
    target: 'b.{1}.{2}'
  - match: 'u\\.(\\d+)\\.weight'
    target: 'v.{1}.weight'
    transform: [{unsqueeze: {dim: 0}}]
  - match: 'c\\.(.+)'
    target: 'k.{1}'
    transform: [{cast: {dtype: F32}}]
  - match: '(x)\\.(.+)'
    target: '{1|odd}{2}'
    tables: {odd: {x: 'y.é"\\\\'}}  # a target cannot hold a backslash; a table entry can
    on_shape_mismatch: skip
  - match: 'never\\..*'
    target: 'z'
skip:
  - 'head\\..*'
  - 'h\\tx\\..*'
new:
  - 'fresh\\..*'
"""
ODD = ["x.\u00e9\u2603\n", "x.\x1b[2J", "x.\u202eevil", "x.tab\tbed", "x.ends\\", "x.\u00a0nbsp", "x.\u6f22\u5b57",
       "x.a", "x." + "long" * 20]  # control characters, bidi, non-ASCII, a backslash, wide and long keys


def source_specs() -> dict[str, TensorSpec]:
    specs = {"a.0.weight": TensorSpec("F32", (4, 3)), "a.0.bias": TensorSpec("F32", (4,)),
             "a.10.weight": TensorSpec("F16", (4, 3)), "u.1.weight": TensorSpec("BF16", (2, 2)),
             "u.2.weight": TensorSpec("BF16", ()), "c.ok": TensorSpec("F16", (3, 3)), "c.bad": TensorSpec("C64", (3,)),
             "head.w": TensorSpec("F32", (1,)), "h\tx.w": TensorSpec("F32", (1,)), "lost": TensorSpec("U8", (0, 5)),
             "lost\x07bell": TensorSpec("F32", (2,)), "": TensorSpec("F32", (1,))}
    specs.update((key, TensorSpec("I64", (i, 2))) for i, key in enumerate(ODD))
    return specs


def target_specs() -> dict[str, TensorSpec]:
    specs = {"b.0.weight": TensorSpec("F16", (4, 3)), "b.0.bias": TensorSpec("F32", (5,)),
             "v.1.weight": TensorSpec("BF16", (1, 2, 2)), "spare\n": TensorSpec("F32", (1,)),
             "fresh.w": TensorSpec("F32", (1,)), "fresh.\x1b": TensorSpec("F32", (1,))}
    # the rule's target 'y.é"\\{1}': its shape differs from every other source's
    specs.update(("y.é\"\\\\" + key[2:], TensorSpec("I64", (i if i % 2 else i + 1, 2))) for i, key in enumerate(ODD))
    return specs


def plans():
    """Plans with every list the report has, under each unmatched policy, with and without a target."""
    rules = parse_rules(RULES, "r.yaml")
    source = source_specs()
    for unmatched in ("error", "keep", "drop"):
        yield make_plan(source, rules, unmatched=unmatched, source_origin="src\n.safetensors"), rules
        yield make_plan(source, rules, target_specs(), unmatched=unmatched, target_origin="t.safetensors"), rules
    yield make_plan(source, rules, unmatched="keep"), None  # rule sections without the rules' patterns
    steps = next(m.transform for m in make_plan(source, rules).mapped if m.transform)
    yield Plan("hand-made", (Mapped("p\x85", "q\u2028", 7, "F8", (1,)),
                             Mapped("p.ok", "q\u202eok", 7, "F8", (2,), None, None, steps, "F8", (1, 2)),
                             Mapped("p.kept\r", "p.kept\r", -1, "F8", (1,))),
               (Skipped("s.\x00", None, 7), Skipped("s", "s\\..*", None)), ("un\x1b",), ("ui\n",), (), (), (),
               4, 3, expected_uninitialized=("new\x7f",)), None


def reference_sections(plan: Plan, ruleset) -> list[str]:
    """The report's long lists, title and rows, as render_text made them: one f-string per row."""
    sections: list[list[str]] = []
    by_rule: dict[int, list] = defaultdict(list)
    for m in plan.mapped:
        by_rule[m.rule].append(m)
    for index in sorted(i for i in by_rule if i >= 0):
        entries, count = by_rule[index], f"{len(by_rule[index])} key{'s' if len(by_rule[index]) != 1 else ''}"
        if ruleset is not None and index < len(ruleset.rules):
            rule = ruleset.rules[index]
            rows = [f"Rule {index}: {shown(rule.match)}  ->  {shown(rule.target)}  ({count})"]
        else:
            rows = [f"Rule {index} ({count})"]
        width = max(len(shown(m.source)) for m in entries)
        for m in entries:
            via = ""
            if m.transform:
                result = (f"{m.result_dtype} {format_shape(m.out_shape)}" if m.out_shape is not None else
                          "(the transform cannot apply: see the error above)")
                via = f" -> {result} via {', '.join(str(s) for s in m.transform)}"
                if m.out_shape is not None and m.target_dtype is not None and m.target_dtype != m.result_dtype:
                    via += f" (target {m.target_dtype})"
            elif m.target_dtype is not None and m.target_dtype != m.dtype:
                via = f" (target {m.target_dtype})"
            rows.append(f"  {shown(m.source):<{width}}  ->  {shown(m.target)}  {m.dtype} {format_shape(m.shape)}{via}")
        sections.append(rows)
    passed = plan.passed_through
    if passed:
        sections.append([f"Passed through ({len(passed)}): no rule takes them; kept under their own names "
                         "(unmatched: keep)"]
                        + [f"  {shown(m.source)}  {m.dtype} {format_shape(m.shape)}"
                           + (f" (target {m.target_dtype})" if m.target_dtype not in (None, m.dtype) else "")
                           for m in passed])
    if plan.skipped:
        width = max(len(shown(s.source)) for s in plan.skipped)
        sections.append([f"Skipped ({len(plan.skipped)})"] + [
            f"  {shown(s.source):<{width}}  by " + (f"skip pattern {shown(s.pattern)}" if s.pattern is not None
                                                     else f"rule {s.rule}: shape mismatch, on_shape_mismatch: skip")
            for s in plan.skipped])
    fate = {"drop": "left behind (unmatched: drop)", "error": "an error (unmatched: error)"}[plan.unmatched_policy] \
        if plan.unmatched_policy != "keep" else "keep"
    for title, keys in ((f"Unmatched source keys ({len(plan.unmatched)}): no rule or skip pattern takes them; {fate}",
                         plan.unmatched),
                        (f"Uninitialized target keys ({len(plan.uninitialized)}): nothing fills them",
                         plan.uninitialized),
                        (f"New target keys ({len(plan.expected_uninitialized)}): nothing fills them, as the rules' "
                         "`new:` patterns declare; they keep their initialisation", plan.expected_uninitialized)):
        if keys:
            sections.append([title] + [f"  {shown(k)}" for k in keys])
    return ["\n".join(rows) for rows in sections]


@pytest.mark.parametrize("strict", [False, True])
def test_the_lists_are_the_row_by_row_ones(strict):
    seen = set()
    for plan, ruleset in plans():
        text = render_text(plan, ruleset, strict)
        parts = text.split("\n\n")  # the report's sections: no row holds a blank line (keys are shown escaped)
        expected = reference_sections(plan, ruleset)
        at = [parts.index(section) for section in expected]  # each list whole, title and rows
        assert at == sorted(at) and len(set(at)) == len(at)  # in order
        lists = ("Rule ", "Passed through (", "Skipped (", "Unmatched source keys (", "Uninitialized target keys (",
                 "New target keys (")
        assert sum(part.startswith(lists) for part in parts) == len(expected)  # and no other list
        seen.update(word for word in ("Rule 0:", "Rule 7 (", "Passed through", "Skipped", "Unmatched source keys",
                                      "Uninitialized target keys", "New target keys", " via ", "cannot apply",
                                      "\\u202e", "\\x1b", "\\n", "\\t", "\u6f22", "\u00e9") if word in text)
    assert len(seen) == 15  # every list and kind of row was there to compare


def test_rows_are_padded_to_the_longest_source_of_their_rule():
    plan, rules = next(plans())
    text = render_text(plan, rules)
    assert "  a.0.weight   ->  b.0.weight  F32 [4, 3]\n  a.0.bias     ->  b.0.bias  F32 [4]\n" \
           "  a.10.weight  ->  b.10.weight  F16 [4, 3]\n" in text
    assert "  u.2.weight  ->  v.2.weight  BF16 [] -> BF16 [1] via unsqueeze(dim=0)" in text
    assert "  x.\\x1b[2J" in text and "\x1b" not in text and "\n  x.\u00e9\u2603\\n" in text
    assert "  head.w  by skip pattern head\\..*\n  h\\tx.w  by skip pattern h\\tx\\..*\n" in text


def test_block_interleaves_its_columns():
    assert block(["a", "bb"], ["-", "="], ["x\n  ", "y\n  "]) == "  a-x\n  bb=y"
    assert block(["only"], iter(["\n  "])) == "  only"
    with pytest.raises(ValueError):  # a short column fails loudly instead of shifting the rows
        block(["a", "b"], ["x\n  "])


def test_padding_left_justifies_like_a_format_spec():
    texts = ["ab", "", "a\u00e9\u2603", "abcd"]
    assert [t + p for t, p in zip(texts, padding(texts, "|"))] == [f"{t:<4}|" for t in texts]
    assert padding([], "|") == []


def test_keys_are_shown_escaped_only_when_needed():
    keys = ["plain", "two\nlines"]
    assert shown_all(keys[:1]) is not None and list(shown_all(keys[:1])) == ["plain"]
    assert list(shown_all(keys)) == ["plain", "two\\nlines"]
    assert key_rows(keys, "    ") == "    plain\n    two\\nlines"
    assert key_rows([""]) == "  "


def test_a_row_says_when_the_target_holds_another_dtype():
    """A BF16 source loaded into an F32 target is cast by the load: the report says so, not only --json."""
    ruleset = parse_rules("version: 1\nrules:\n  - match: 'a\\.(.+)'\n    target: 'b.{1}'\n", "r.yaml")
    plan = make_plan({"a.w": TensorSpec("BF16", (2,)), "a.v": TensorSpec("F32", (2,))}, ruleset,
                     {"b.w": TensorSpec("F32", (2,)), "b.v": TensorSpec("F32", (2,))})
    text = render_text(plan, ruleset)
    assert "a.w  ->  b.w  BF16 [2] (target F32)" in text and "a.v  ->  b.v  F32 [2]\n" in text + "\n"
