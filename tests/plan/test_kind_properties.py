"""Properties of the kind check and the unmatched policy (hypothesis)."""
from hypothesis import given, settings
from hypothesis import strategies as st

from mapper_core.plan import KindMismatch, make_plan
from mapper_core.rules import parse_rules
from mapper_core.specs import TensorSpec

MODULES = {  # member → rank, as real layers hold them
    "conv": {"weight": 4, "bias": 1}, "conv1d": {"weight": 3}, "linear": {"weight": 2, "bias": 1},
    "bn": {"weight": 1, "bias": 1, "running_mean": 1, "running_var": 1, "num_batches_tracked": 0},
    "norm": {"weight": 1, "bias": 1}, "attn": {"in_proj_weight": 2, "in_proj_bias": 1}, "root": {"scale": 1},
}


@st.composite
def checkpoint(draw):
    specs = {}
    for i, kind in enumerate(draw(st.lists(st.sampled_from(sorted(MODULES)), min_size=1, max_size=8))):
        prefix = draw(st.sampled_from(["", "enc.", "enc.layers."])) + str(i)
        for member, rank in MODULES[kind].items():
            if kind == "root":
                specs[f"scale{i}"] = TensorSpec("F32", (3,))
            else:
                specs[f"{prefix}.{member}"] = TensorSpec("F32", tuple([3] * rank))
    return specs


IDENTITY = parse_rules("version: 1\nrules: [{match: '(.+)', target: 'new.{1}'}]", "r.yaml")


@settings(max_examples=150, deadline=None)
@given(checkpoint())
def test_moving_a_whole_checkpoint_under_a_new_prefix_is_always_clean(specs):
    target = {f"new.{k}": v for k, v in specs.items()}
    plan = make_plan(specs, IDENTITY, target)
    assert plan.kind_mismatches == () and not plan.has_errors(strict=True)


@settings(max_examples=150, deadline=None)
@given(checkpoint(), st.sampled_from(["error", "keep", "drop"]), st.data())
def test_every_key_has_one_fate_and_only_error_fails_on_unmatched(specs, policy, data):
    taken = data.draw(st.sets(st.sampled_from(sorted(specs))))
    body = "rules:\n" + "".join(f"- {{match: '{k.replace('.', '[.]')}', target: 'new.{k}'}}\n" for k in sorted(taken))
    ruleset = parse_rules(f"version: 1\nunmatched: {policy}\n" + (body if taken else "rules: []\n"), "r.yaml")
    plan = make_plan(specs, ruleset)
    fates = [m.source for m in plan.mapped] + [s.source for s in plan.skipped] + list(plan.unmatched)
    assert sorted(fates) == sorted(specs)
    left = [k for k in specs if k not in taken]
    if policy == "keep":
        assert sorted(m.source for m in plan.passed_through) == sorted(left) and not plan.unmatched
        assert all(m.target == m.source for m in plan.passed_through)
    else:
        assert sorted(plan.unmatched) == sorted(left)
    # a module split between a rule and a pass-through is a kind finding (its members part ways)
    assert bool([e for e in plan.errors if not isinstance(e, KindMismatch)]) is (policy == "error" and bool(left))
    split = {k.source for k in plan.kind_mismatches}
    assert policy == "keep" or not split
