"""One template value renders, explains, prints and inverts, and the four answers agree."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mapper_core.plan.explain import explain
from mapper_core.plan.make import make_plan
from mapper_core.rules.regex_syntax import plain_sequence
from mapper_core.rules.ruleset import Rule, RuleSet
from mapper_core.rules.template import Field, Template, TemplateError, TemplateNotInvertible
from mapper_core.specs import TensorSpec
from cli_runner import mapper, python_process  # tests/helpers

PACKAGE = Path(__file__).resolve().parents[2] / "mapper_core"
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


# --- any template against any pattern: render, trace, explain and the planner agree --------

# (pattern piece, groups it opens, strategy for text it matches). "٣" is a decimal digit that
# \d matches; "²" is \w and isdigit() but not decimal, so a shift must refuse it.
PIECES = [
    ("a", 0, st.just("a")), (r"\.", 0, st.just(".")), ("[ab]", 0, st.sampled_from("ab")),
    (".*", 0, st.text("a.1", max_size=2)), (r"(\d+)", 1, st.text("01٣", min_size=1, max_size=2)),
    ("(a|b)", 1, st.sampled_from("ab")), ("(x)?", 1, st.sampled_from(["", "x"])),
    (r"(\w+)", 1, st.text("a1²", min_size=1, max_size=2)), ("(a*)", 1, st.text("a", max_size=2)),
    (r"(?P<n>\d)", 1, st.sampled_from("03")),
]
ANY_TABLES = {"t": {"1": "one", "a": "A", "0": "zero", "²": "sq"}}


@st.composite
def any_rule_and_key(draw):
    idx = draw(st.lists(st.integers(0, len(PIECES) - 1), min_size=1, max_size=4))
    if sum(PIECES[i][0] == r"(?P<n>\d)" for i in idx) > 1:  # a name may be defined once
        idx = [i for i in idx if PIECES[i][0] != r"(?P<n>\d)"] or [0]
    match = "".join(PIECES[i][0] for i in idx)
    groups = sum(PIECES[i][1] for i in idx)
    refs = [0, *range(1, groups + 1)] + (["n"] if "(?P<n>" in match else [])
    fields = [draw(st.sampled_from(refs)) for _ in range(draw(st.integers(0, 3)))]
    kinds = ["", "+1", "-1", "+12", "|t", ":02", "+1:03", "-1:01"]
    target = draw(st.sampled_from(["T", "", "{{T}}.", "%s%%."])) + ".".join(  # % is literal text too
        f"{{{ref}{draw(st.sampled_from(kinds))}}}" for ref in fields)
    key = "".join(draw(PIECES[i][2]) for i in idx)
    return Rule(0, match, target, tables=ANY_TABLES), key


@PROPS
@given(any_rule_and_key())
def test_render_trace_explain_and_plan_agree(case):
    rule, key = case
    m = rule.pattern.fullmatch(key)
    assert m is not None
    rendered, trace = rule.template.render(m), rule.template.trace(m)
    assert rendered == trace.key  # the compiled renderer against the field-by-field reference
    assert rule.template.render(m, dict(rule.tables)) == rendered  # other tables: the slow path
    assert (trace.reason is None) == (rendered is not None)
    ruleset = RuleSet("t", (rule,))
    why = explain(key, ruleset)
    plan = make_plan({key: TensorSpec("F32", (1,))}, ruleset)
    if rendered is None:
        assert why.outcome == "unmatched" and plan.unmatched == (key,)
        assert why.candidates[0].reason == f"full match, but {trace.reason}"
    else:
        assert why.target == rendered == plan.mapped[0].target == rule.apply(key)
    try:
        inversion = rule.template.invert(rule.pattern)
    except TemplateNotInvertible:
        return
    if rendered is not None:
        inversion.source_of(rendered)  # a guess (export checks it forwards), but never an exception


def test_literal_braces_and_named_groups_render_like_the_template():
    rule = Rule(0, r"(?P<layer>\d+)\.(w)", "{{x}}.{layer}.{2}.{{")
    m = rule.pattern.fullmatch("3.w")
    assert rule.template.render(m) == rule.template.trace(m).key == "{x}.3.w.{"
    fixed = Rule(0, r"a", "{{fixed}}")
    assert fixed.template.render(fixed.pattern.fullmatch("a")) == "{fixed}"


def test_templates_of_one_layout_share_a_renderer_maker_yet_keep_their_text_and_tables():
    # {1+1}.{2|t} twice: one written function serves both, with each rule's format and table
    first = Rule(0, r"a(\d+)\.(\w)", "x{1+1}.{2|t}%", tables={"t": {"w": "W", "b": "B"}})
    second = Rule(1, r"a(\d+)\.(\w)", "y.{1+1}-{2|t}", tables={"t": {"w": "weight"}})
    m = first.pattern.fullmatch("a9.w")
    assert (first.template.render(m), second.template.render(m)) == ("x10.W%", "y.10-weight")
    b = first.pattern.fullmatch("a9.b")
    assert (first.template.render(b), second.template.render(b)) == ("x10.B%", None)
    plain = [Rule(i, r"(a)(b)?", t) for i, t in enumerate(("{1}.{2}", "{2}:{1}"))]
    assert [r.template.render(r.pattern.fullmatch("ab")) for r in plain] == ["a.b", "b:a"]
    assert [r.template.render(r.pattern.fullmatch("a")) for r in plain] == [None, None]


@pytest.mark.parametrize("match, target, key, reason", [
    (r"z(\.\d)?", "z{1}", "z", "group 1 took no part, so {1} has no value"),
    (r"b\.(\w+)", "b.{1+1}", "b.²", "{1+1} needs a number and group 1 captured '²'"),
    (r"b\.(?P<i>\d+)", "b.{i-3}", "b.2", "{i-3} would give -1, below 0"),
    (r"b\.(\w+)", "{1|names}", "b.x", "table 'names' has no entry 'x'"),
    (r"b\.(\w+)", "b.{1:03}", "b.x", "{1:03} needs a number and group 1 captured 'x'"),
    (r"b\.(\d+)", "b.{1-1:02}", "b.0", "{1-1:02} would give -1, below 0"),
])
def test_trace_says_why_there_is_no_key(match, target, key, reason):
    rule = Rule(0, match, target, tables={"names": {"1": "one"}})
    m = rule.pattern.fullmatch(key)
    assert rule.template.trace(m).reason == reason and rule.template.render(m) is None


def test_tables_given_at_render_time_still_work_and_missing_ones_raise():
    template = Template.parse("{1|t}.x")
    m = re.fullmatch("(a)", "a")
    assert template.render(m, {"t": {"a": "A"}}) == "A.x"
    with pytest.raises(KeyError):
        template.render(m)


# --- zero padding ------------------------------------------------------------------------------

@pytest.mark.parametrize("target, key, rendered", [
    ("b.{1+1}.w", "blk_007.w", "b.8.w"),          # a number is written as int() gives it: no padding kept
    ("b.{1+1:03}.w", "blk_007.w", "b.008.w"),     # :0W pads to at least W digits
    ("b.{1:03}.w", "blk_7.w", "b.007.w"),         # padding without a shift
    ("b.{1:02}.w", "blk_007.w", "b.07.w"),        # the width is the target's, whatever the source's was
    ("b.{1+1:03}.w", "blk_999.w", "b.1000.w"),    # a longer number is never cut
    ("b.{1}.w", "blk_007.w", "b.007.w"),          # a plain field copies the text as it is
])
def test_a_width_pads_the_number_with_zeros(target, key, rendered):
    rule = Rule(0, r"blk_(\d+)\.w", target)
    m = rule.pattern.fullmatch(key)
    assert rule.template.render(m) == rule.template.trace(m).key == rendered
    assert make_plan({key: TensorSpec("F32", (1,))}, RuleSet("t", (rule,))).mapped[0].target == rendered


def test_a_padded_field_prints_and_inverts():
    rule = Rule(0, r"blk_(?P<i>\d+)\.(\w)", "b.{i+1:03}.{2}.{1:02}")
    assert [str(f) for f in rule.template.fields] == ["{i+1:03}", "{2}", "{1:02}"]
    # the source's own padding is not known without its specs: the number comes back plainly
    assert rule.template.invert(rule.pattern).source_of("b.008.w.07") == "blk_7.w"


@pytest.mark.parametrize("target, said", [
    ("b.{1:3}", "field '{1:3}' at column 3 has width ':3', which would pad with spaces; keys are padded "
                "with zeros, written ':0W' ({1:03})"),
    ("b.{1+1:x}", "field '{1+1:x}' at column 3 has ':x', not a width; write ':0W' to pad the number "
                  "with zeros to W digits, e.g. {1+1:03} (:03 writes 7 as 007)"),
    ("b.{1:}", "field '{1:}' at column 3 has ':', not a width"),
    ("b.{1:0}", "field '{1:0}' at column 3 has width 0; a width is 1 to 32 digits"),
    ("b.{1:033}", "field '{1:033}' at column 3 has width 33; a width is 1 to 32 digits"),
    ("b.{1:0" + "9" * 5000 + "}", "has width 99999999999999999999; a width is 1 to 32 digits"),
    ("b.{1|t:03}", "field '{1|t:03}' at column 3 pads a table's entry; entries are written as they are, so "
                   "write the padded text in the table (e.g. '7': '007') and the field as {1|t}"),
])
def test_a_bad_width_says_what_a_width_is(target, said, tmp_path):
    with pytest.raises(TemplateError) as info:
        Template.parse(target)
    assert said in str(info.value)
    rules = tmp_path / "pad.yaml"
    rules.write_text(f"version: 1\nrules:\n  - match: 'blk_(\\d+)'\n    target: '{target}'\n"
                     "    tables: {t: {'7': '007'}}\n")
    done = mapper("validate", rules)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{rules}:4: $.rules[0].target: invalid target template: " in done.stderr and said in done.stderr


# --- printing fields -------------------------------------------------------------------------

field_strategy = st.builds(Field, st.one_of(st.integers(0, 12), st.sampled_from(["i", "p_2", "Name"])),
                           st.integers(-20, 20), st.none(), st.integers(0, 32))
table_field = st.builds(Field, st.integers(0, 12), st.just(0), st.sampled_from(["t", "names", "a-b"]))


@given(st.lists(st.one_of(field_strategy, table_field, st.text("ab.{}_", min_size=1)), max_size=6))
def test_printed_fields_parse_back(parts):
    text = "".join(escape(p) if isinstance(p, str) else str(p) for p in parts)
    assert Template.parse(text).text == text
    reprinted = "".join(escape(p) if isinstance(p, str) else str(p) for p in Template.parse(text).parts)
    assert Template.parse(reprinted).parts == Template.parse(text).parts
    for f in (p for p in parts if isinstance(p, Field)):
        assert Template.parse(str(f)).parts == (f,)


# --- inverting: render then invert gives the source key back ----------------------------------

# Group kinds: (pattern body, capture strategy, field suffixes). Captures never hold a
# separator character, and numbers have no leading zero, so the way back is unambiguous.
KINDS = {
    "num": (r"\d+", st.integers(0, 120).map(str), ["", "+1", "+3", "-1", ":03", "+1:02", "-1:04"]),
    "word": ("[a-z]+", st.text("abc", min_size=1, max_size=3), [""]),
    "branch": ("aud|lip", st.sampled_from(["aud", "lip"]), ["|branch"]),
}
TABLES = {"branch": {"aud": "audio", "lip": "video"}, "many": {"aud": "same", "lip": "same"}}
SOURCE_SEP = st.text(".-_XQ", min_size=1, max_size=2)
TARGET_SEP = st.text(".-_/{}X", min_size=1, max_size=2)


@st.composite
def invertible_rule_and_key(draw):
    kinds = draw(st.lists(st.sampled_from(sorted(KINDS)), min_size=1, max_size=3))
    seps = [draw(st.text(".-_XQ", max_size=2))] + [draw(SOURCE_SEP) for _ in kinds[1:]] + [draw(st.text(".X", max_size=1))]
    named = [draw(st.booleans()) for _ in kinds]
    match, key = re.escape(seps[0]), seps[0]
    for g, kind in enumerate(kinds, 1):
        body, capture, _ = KINDS[kind]
        match += f"(?P<g{g}>{body})" if named[g - 1] else f"({body})"
        key += draw(capture) + seps[g]
        match += re.escape(seps[g])
    # every group at least once, in any order, some twice; a literal between two fields
    order = draw(st.permutations(range(1, len(kinds) + 1)))
    order += draw(st.lists(st.integers(1, len(kinds)), max_size=2))
    target = escape(draw(st.text(".X", max_size=1)))
    for n, g in enumerate(order):
        ref = f"g{g}" if named[g - 1] and draw(st.booleans()) else str(g)
        target += f"{{{ref}{draw(st.sampled_from(KINDS[kinds[g - 1]][2]))}}}"
        target += escape(draw(TARGET_SEP)) if n + 1 < len(order) else escape(draw(st.text("./", max_size=1)))
    return Rule(0, match, target, tables=TABLES), key


@pytest.mark.slow
@PROPS
@given(invertible_rule_and_key())
def test_inverting_a_rendered_key_gives_the_source_key_back(case):
    rule, key = case
    assert rule.template.check(rule.pattern) == []
    m = rule.pattern.fullmatch(key)
    target = rule.template.render(m)
    if target is None:  # a shift below 0: the rule does not take the key, nothing to invert
        assert rule.template.trace(m).reason.endswith("below 0")
        return
    assert rule.template.invert(rule.pattern).source_of(target) == key


@pytest.mark.slow
@PROPS
@given(invertible_rule_and_key(), st.sampled_from(["class", "drop", "many"]))
def test_invert_refuses_with_the_reason(case, spoil):
    rule, _ = case
    if spoil == "class":
        rule = Rule(0, rule.match + "[ab]", rule.target, tables=TABLES)
        expected = f"its match '{rule.match}' is not plain literal text and capture groups"
    elif spoil == "drop":  # group 1 no longer appears in the target
        target = "t." + ".".join(str(f) for f in rule.template.fields if f.ref not in (1, "g1"))
        rule = Rule(0, rule.match, target, tables=TABLES)
        name = "g1" if "(?P<g1>" in rule.match else 1
        expected = f"group(s) {{{name}}} of match '{rule.match}' do not appear in target '{target}'"
    else:
        if "|branch}" not in rule.target:
            return
        rule = Rule(0, rule.match, rule.target.replace("|branch}", "|many}"), tables=TABLES)
        expected = "table 'many' sends several captured values to one value"
    with pytest.raises(TemplateNotInvertible) as info:
        rule.template.invert(rule.pattern)
    assert str(info.value) == expected


def test_the_whole_key_inverts_and_a_repeated_field_must_repeat():
    whole = Rule(0, r"a\.(\d+)", "x.{0}")
    assert whole.template.invert(whole.pattern).source_of("x.a.3") == "a.3"
    twice = Rule(0, r"a\.(\w+)", "{1}.{1}")
    inversion = twice.template.invert(twice.pattern)
    assert inversion.source_of("b.b") == "a.b" and inversion.source_of("b.c") is None


@pytest.mark.parametrize("pattern, sequence", [
    (r"blocks\.(\d+)\.(?P<p>.+)", ("blocks.", 1, ".", 2)),
    (r"(a|b)x", (1, "x")),
    (r"x[ab]", None), (r"(?i)ab", ("ab",)), (r"a?", None), (r"", ()),
])
def test_plain_sequence(pattern, sequence):
    assert plain_sequence(re.compile(pattern)) == sequence


# --- structure --------------------------------------------------------------------------------

def test_only_regex_syntax_reads_the_private_regex_parser():
    users = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                   if re.search(r"\bre\._(parser|compiler)\b|\bfrom re import _|\bsre_(parse|compile)\b|\bimport _sre\b",
                             p.read_text()))
    assert users == ["rules/regex_syntax.py"]


def test_rules_and_plan_import_no_torch():
    # A fresh interpreter: the process's imports are the subject.
    code = (
        "import importlib, pkgutil, sys\n"
        "import mapper_core.rules, mapper_core.plan\n"
        "for pkg in (mapper_core.rules, mapper_core.plan):\n"
        "    for info in pkgutil.iter_modules(pkg.__path__):\n"
        "        importlib.import_module(pkg.__name__ + '.' + info.name)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'numpy', 'safetensors'}))\n"
    )
    done = python_process(code, check=True)
    assert done.stdout.strip() == "[]"
