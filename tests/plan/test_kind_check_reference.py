"""The kind check against its reference (the per-entry version it replaced): the same findings, in the
same order, with the same texts, and the same module labels, on random checkpoints whose members
are sent to random modules (splits, mixes, kind changes, transforms that change a rank, real
module types)."""
from hypothesis import given, settings
from hypothesis import strategies as st
from kind_check_reference import reference_check_kinds

from mapper_core.plan.kind_check import check_kinds
from mapper_core.plan.plan import PASS_THROUGH, Mapped
from mapper_core.specs import TensorSpec

MODULES = {  # member → rank, as real layers hold them
    "conv": {"weight": 4, "bias": 1}, "conv1d": {"weight": 3}, "linear": {"weight": 2, "bias": 1},
    "matrix": {"weight": 2}, "bn": {"weight": 1, "bias": 1, "running_mean": 1, "running_var": 1,
                                    "num_batches_tracked": 0},
    "norm": {"weight": 1, "bias": 1}, "attn": {"in_proj_weight": 2, "in_proj_bias": 1}, "odd": {"weight": 6},
}
PREFIXES = ["", "enc.", "enc.layers.", "dec."]
TYPES = ["Conv2d", "BatchNorm2d", "Linear", "LayerNorm", "Embedding", "Mystery"]


@st.composite
def modules(draw, max_size=6):
    """{module name: {member: rank}}; a name of '' holds root members (keys without a dot)."""
    out = {}
    for i, kind in enumerate(draw(st.lists(st.sampled_from(sorted(MODULES)), min_size=1, max_size=max_size))):
        name = "" if draw(st.integers(0, 9)) == 0 else draw(st.sampled_from(PREFIXES)) + str(i)
        out.setdefault(name, {}).update(MODULES[kind])
    return out


def specs_of(mods):
    return {f"{name}.{member}" if name else member: TensorSpec("F32", (3,) * rank)
            for name, members in mods.items() for member, rank in members.items()}


def split(key):
    module, _, member = key.rpartition(".")
    return module, member


@st.composite
def case(draw):
    source = specs_of(draw(modules()))
    target_mods = draw(modules())
    target_names = sorted(target_mods) + ["elsewhere", ""]
    mapped = []
    for key in draw(st.lists(st.sampled_from(sorted(source)), unique=True)):
        module, member = split(key)
        how = draw(st.integers(0, 4))
        if how == 0:  # the whole module moves together (an index shift)
            to = "moved." + module if module else "moved"
        elif how == 1:
            to = draw(st.sampled_from(target_names))
        else:  # into the target module of the same position, if any
            to = target_names[hash(module) % len(target_names)] if how == 2 else module
        t_member = member if draw(st.booleans()) else draw(st.sampled_from(["weight", "bias", "running_mean", "x"]))
        target = f"{to}.{t_member}" if to else t_member
        rule = draw(st.sampled_from([PASS_THROUGH, 0, 1, 2]))
        out_shape = draw(st.sampled_from([None, None, (), (3,), (3, 3, 1, 1)]))
        spec = source[key]
        mapped.append(Mapped(key, target, rule, spec.dtype, spec.shape, out_shape=out_shape))
    targets = mapped and [m.target for m in mapped]
    if draw(st.booleans()):  # members the target lacks, or holds under other names
        seen = set()
        mapped = [m for m in mapped if not (m.target in seen or seen.add(m.target))]
    target_specs = draw(st.sampled_from([None, specs_of(target_mods)]))
    if target_specs is not None and targets and draw(st.booleans()):
        target_specs = {**target_specs, **{t: TensorSpec("F32", (3,) * draw(st.integers(0, 4))) for t in targets}}
    types = None
    if draw(st.booleans()):
        names = sorted({split(m.target)[0] for m in mapped} | set(target_mods))
        types = {n: draw(st.sampled_from(TYPES)) for n in draw(st.lists(st.sampled_from(names), unique=True))} \
            if names else {}
    actions = [draw(st.sampled_from(["error", "warn"])) for _ in range(3)]
    return mapped, source, target_specs, actions, types


@settings(max_examples=600, deadline=None)
@given(case())
def test_the_kind_check_agrees_with_its_reference(args):
    mapped, source, target_specs, actions, types = args
    found, labels = check_kinds(mapped, source, target_specs, actions, types)
    expected, expected_labels = reference_check_kinds(mapped, source, target_specs, actions, types)
    assert found == expected
    assert labels == expected_labels


def test_the_cases_reach_every_kind_of_finding():
    """The strategy above is not idle: it makes kind mismatches, splits and mixes."""
    details = set()

    @settings(max_examples=600, deadline=None, database=None, derandomize=True)
    @given(case())
    def collect(args):
        for k in check_kinds(*args)[0]:
            details.add(k.detail.split(" ")[0])

    collect()
    assert {"a", "leaves", "mixes"} <= details


def test_labels_without_a_target_are_worked_out_when_read_and_behave_as_a_dict():
    import pickle

    from mapper_core.plan import make_plan
    from mapper_core.rules import parse_rules

    source = {"a.0.weight": TensorSpec("F32", (4, 1, 3, 3)), "a.0.bias": TensorSpec("F32", (4,)),
              "a.1.weight": TensorSpec("F32", (4,))}
    plan = make_plan(source, parse_rules("version: 1\nrules: [{match: 'a\\.(.+)', target: 'b.{1}'}]", "r.yaml"))
    labels, targets = plan.module_kinds
    expected = {"a.0": "conv(weight[4d],bias)", "a.1": "norm(weight[1d])"}
    assert labels == expected and expected == labels and targets == {}
    assert dict(labels) == expected and len(labels) == 2 and "a.0" in labels and labels["a.1"] == "norm(weight[1d])"
    assert repr(labels) == repr(dict(labels)) and pickle.loads(pickle.dumps(labels)) == expected
