"""suggest from headers alone (no torch): renumbering tables, inflate, ambiguity, reasons, the
self-check that every rule takes exactly its keys."""
from __future__ import annotations

import re

from cli_runner import python_process

from mapper_core.plan.make import make_plan
from mapper_core.rules.load import parse_rules
from mapper_core.rules.transforms import Step
from mapper_core.specs import TensorSpec
from mapper_core.suggest import suggest


def specs(**shapes) -> dict[str, TensorSpec]:
    return {k.replace("__", "."): TensorSpec("F32", tuple(v)) for k, v in shapes.items()}


def conv(prefix: str, out: int, inp: int, *kernel: int) -> dict[str, TensorSpec]:
    return {f"{prefix}.weight": TensorSpec("F32", (out, inp, *kernel)), f"{prefix}.bias": TensorSpec("F32", (out,))}


def check(result, source, target):
    """The rules file validates, and planning it gives exactly the pairing."""
    ruleset = parse_rules(result.text, "suggested.yaml")
    plan = make_plan(source, ruleset, target)
    planned = sorted((m.source, m.target, [str(x) for x in m.transform]) for m in plan.mapped)
    paired = sorted((p.source, p.target, [str(Step(n, dict(q))) for n, q in p.steps]) for p in result.pairing.pairs)
    assert planned == paired
    assert not plan.has_errors(strict=True)
    return plan


def test_irregular_renumbering_becomes_a_table():
    source = {**conv("features.0", 8, 3, 3, 3), **conv("features.2", 16, 8, 3, 3), **conv("features.5", 32, 16, 3, 3)}
    target = {**conv("encoder.0", 8, 3, 3, 3), **conv("encoder.1", 16, 8, 3, 3), **conv("encoder.2", 32, 16, 3, 3)}
    result = suggest(source, target)
    check(result, source, target)
    [rule] = result.rules
    assert rule.target == "encoder.{1|renumber}.{2}"
    assert dict(rule.tables)["renumber"] == (("0", "0"), ("2", "1"), ("5", "2"))


def test_a_2d_kernel_is_inflated_into_3d():
    source = {**conv("stem", 8, 3, 7, 7)}
    target = {**conv("stem", 8, 3, 5, 7, 7)}
    result = suggest(source, target)
    plan = check(result, source, target)
    assert [str(s) for s in plan.mapped[0].transform] == ["inflate(dim=2, size=5, mode='repeat')"]
    assert "2D → 3D inflate" in result.text


def test_equal_candidates_are_reported_not_guessed():
    source = {**conv("enc.0", 4, 4, 1)}
    target = {**conv("a.0", 4, 4, 1), **conv("b.0", 4, 4, 1)}
    result = suggest(source, target)
    assert result.pairing.pairs == ()
    [amb] = result.pairing.ambiguous
    assert amb.source == "enc" and amb.candidates == ("a", "b")
    assert "AMBIGUOUS" in result.text
    check(result, source, target)  # nothing mapped: the keys are skipped and new, with the reason
    assert {x.reason for x in result.pairing.skipped} == {amb.reason}


def test_a_changed_layer_leaves_the_container_and_says_why():
    source = {**conv("head.0", 16, 8, 1), **conv("head.1", 10, 16, 1)}
    target = {**conv("head.0", 16, 8, 1), **conv("head.1", 12, 16, 1)}
    result = suggest(source, target)
    assert result.pairing.pairs == ()
    [pattern] = result.skips
    assert pattern.pattern == r"head\..*" and "head.1 conv [10, 16, 1] faces head.1 conv [12, 16, 1]" in pattern.reason
    check(result, source, target)


def test_skip_and_new_patterns_take_only_what_is_left():
    # 'blocks.0' is paired; 'blocks.1' in the source has no counterpart; the target adds 'extra'
    source = {**conv("blocks.0.conv", 8, 3, 3, 3), **conv("blocks.1.conv", 9, 9, 5, 5)}
    target = {**conv("layers.0.conv", 8, 3, 3, 3), **conv("extra.proj", 4, 4, 1)}
    result = suggest(source, target)
    check(result, source, target)
    assert [p.pattern for p in result.skips] == [r"blocks\.1\..*"]
    assert [p.pattern for p in result.new] == [r"extra\..*"]
    assert all(re.fullmatch(p.pattern, k) is None for p in result.skips for k in ("blocks.0.conv.weight",))


def evidence(text: str) -> str:
    """The rules file's comments as one line (a comment wraps at any space)."""
    return " ".join(line.strip().lstrip("# ") for line in text.splitlines() if line.strip().startswith("#"))


def test_the_rules_file_names_the_evidence_per_rule():
    source = {**conv("netcnnaud.0", 8, 1, 3, 3), **conv("netcnnaud.2", 8, 8, 3, 3)}
    target = {**conv("audio.layers.0", 8, 1, 3, 3), **conv("audio.layers.2", 8, 8, 3, 3)}
    result = suggest(source, target)
    check(result, source, target)
    data = result.to_dict()
    assert data["summary"]["plan_clean"] and data["summary"]["rules"] == 1
    assert "4 pairs: same shape; containers netcnnaud -> audio.layers: 2 modules in order" in evidence(result.text)
    assert {p["rule"] for p in data["pairs"]} == {0}


def test_named_children_are_said_to_pair_by_name_only_when_their_names_agree():
    source, target = {}, {}
    for i in range(2):
        source.update({**conv(f"blocks.{i}.conv", 8, 4, 3, 3), f"blocks.{i}.bn.weight": TensorSpec("F32", (8,)),
                       f"blocks.{i}.bn.bias": TensorSpec("F32", (8,))})
        target.update({**conv(f"layers.{i}.conv", 8, 4, 3, 3), f"layers.{i}.norm.weight": TensorSpec("F32", (8,)),
                       f"layers.{i}.norm.bias": TensorSpec("F32", (8,))})
    result = suggest(source, target)
    check(result, source, target)
    said = evidence(result.text)
    assert "containers blocks.0 -> layers.0: 2 modules by fit (1 of 2 with the same name)" in said
    assert "by name" not in said
    same = suggest(source, {k.replace("norm", "bn"): v for k, v in target.items()})
    assert "2 modules by name" in evidence(same.text)


def test_suggest_does_not_import_torch():
    """A fresh interpreter suggests from headers and never imports torch (the CLI's start-up too)."""
    code = ("import sys\n"
            "from mapper_core.specs import TensorSpec\n"
            "from mapper_core.suggest import suggest\n"
            "s = {'a.0.weight': TensorSpec('F32', (2, 2, 1)), 'a.0.bias': TensorSpec('F32', (2,))}\n"
            "t = {'b.0.weight': TensorSpec('F32', (2, 2, 1)), 'b.0.bias': TensorSpec('F32', (2,))}\n"
            "assert len(suggest(s, t).rules) == 1\n"
            "import mapper_core.cli.suggest, mapper_core.cli.verify\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy')))\n")
    done = python_process(code, check=True)
    assert done.stdout.strip() == "[]"


def test_keys_stored_sorted_as_text_still_get_exact_rules():
    # safetensors files store keys sorted: head.1.weight (a BatchNorm's) sits between the two Linear
    # weights that need unsqueeze, so a general rule for those would take it too
    bn = {f"head.1.{m}": TensorSpec("F32", (16,)) for m in ("weight", "bias", "running_mean", "running_var")}
    linear = {"head.0.weight": TensorSpec("F32", (16, 8)), "head.0.bias": TensorSpec("F32", (16,)),
              "head.3.weight": TensorSpec("F32", (4, 16)), "head.3.bias": TensorSpec("F32", (4,))}
    source = dict(sorted({**bn, **linear}.items()))
    target = {**conv("head.0", 16, 8, 1), **{k: v for k, v in bn.items()}, **conv("head.3", 4, 16, 1)}
    result = suggest(source, target)
    check(result, source, target)
    assert [r.match for r in result.rules] == [r"head\.(0|3)\.weight", r"head\.(\d+)\.(\w+)"]


def linear(prefix: str, out: int, inp: int, stored_in_out: bool = False) -> dict[str, TensorSpec]:
    shape = (inp, out) if stored_in_out else (out, inp)
    return {f"{prefix}.weight": TensorSpec("F32", shape), f"{prefix}.bias": TensorSpec("F32", (out,))}


def transposes(result) -> dict[str, bool]:
    return {p.source: bool(p.steps) for p in result.pairing.pairs if p.source.endswith("weight")}


def test_square_matrices_without_evidence_in_their_container_follow_the_enclosing_block():
    # attention made only of square matrices; the MLP next to it shows the [in, out] storage
    def model(prefix, in_out):
        return {**linear(f"{prefix}.attn.q", 8, 8, in_out), **linear(f"{prefix}.attn.o", 8, 8, in_out),
                **linear(f"{prefix}.mlp.up", 32, 8, in_out), **linear(f"{prefix}.mlp.down", 8, 32, in_out)}
    source, target = model("blocks.0", True), model("layers.0", False)
    result = suggest(source, target)
    check(result, source, target)
    assert transposes(result) == dict.fromkeys(["blocks.0.attn.q.weight", "blocks.0.attn.o.weight",
                                                "blocks.0.mlp.up.weight", "blocks.0.mlp.down.weight"], True)
    assert "square matrix transposed like the other matrices of 'blocks.0'" in \
        next(p.signals for p in result.pairing.pairs if p.source == "blocks.0.attn.q.weight")
    straight = suggest(model("blocks.0", False), target)
    assert not any(transposes(straight).values())


def test_square_matrices_among_disagreeing_neighbours_are_kept_and_flagged():
    source = {**linear("enc.a", 8, 8), **linear("enc.b", 16, 8, True), **linear("enc.c", 24, 8)}
    target = {**linear("dec.a", 8, 8), **linear("dec.b", 16, 8), **linear("dec.c", 24, 8)}
    result = suggest(source, target)
    check(result, source, target)
    assert transposes(result) == {"enc.a.weight": False, "enc.b.weight": True, "enc.c.weight": False}
    [signal] = [p.signals[-1] for p in result.pairing.pairs if p.source == "enc.a.weight"]
    assert signal.startswith("square matrix kept as stored: the other matrices of 'enc' disagree (1 transposed, 1 not)")


def test_known_types_decide_a_square_matrix_both_ways():
    conv1d = {**linear("h.0.attn.c_attn", 24, 8, True), **linear("h.0.attn.c_proj", 8, 8, True)}
    types = {"h.0.attn.c_attn": "Conv1D", "h.0.attn.c_proj": "Conv1D"}
    same = suggest(conv1d, conv1d, source_types=types, target_types=types)  # Conv1D → Conv1D: as stored
    check(same, conv1d, conv1d)
    assert not any(transposes(same).values())
    lin = {**linear("h.0.attn.c_attn", 24, 8), **linear("h.0.attn.c_proj", 8, 8)}
    back = suggest(lin, conv1d, source_types=dict.fromkeys(types, "Linear"), target_types=types)
    check(back, lin, conv1d)
    assert all(transposes(back).values())


def bn(prefix: str, c: int) -> dict[str, TensorSpec]:
    return {f"{prefix}.{m}": TensorSpec("F32", (c,)) for m in ("weight", "bias", "running_mean", "running_var")}


def block(prefix: str, names: tuple[str, ...]) -> dict[str, TensorSpec]:
    conv_a, norm_a, conv_b, norm_b = names
    return {**conv(f"{prefix}.{conv_a}", 8, 8, 3, 3), **bn(f"{prefix}.{norm_a}", 8),
            **conv(f"{prefix}.{conv_b}", 8, 8, 3, 3), **bn(f"{prefix}.{norm_b}", 8)}


def test_numbered_and_lettered_names_pair_in_their_order_even_when_stored_sorted():
    # conv1/conv2 and conv_a/conv_b fit each other equally: their ordinals pair them; a safetensors
    # file stores keys sorted, so the ordinal, not the storage order, is what decides
    source = dict(sorted({**block("layer1.0", ("conv1", "bn1", "conv2", "bn2")),
                          **block("layer1.1", ("conv1", "bn1", "conv2", "bn2")), **conv("fc", 10, 8)}.items()))
    target = dict(sorted({**block("stages.0.blocks.0", ("conv_a", "norm_a", "conv_b", "norm_b")),
                          **block("stages.0.blocks.1", ("conv_a", "norm_a", "conv_b", "norm_b")),
                          **conv("head.fc", 10, 8)}.items()))
    result = suggest(source, target)
    check(result, source, target)
    got = {p.source: p.target for p in result.pairing.pairs}
    assert got["layer1.1.conv2.weight"] == "stages.0.blocks.1.conv_b.weight"
    assert got["layer1.0.bn1.running_var"] == "stages.0.blocks.0.norm_a.running_var"
    assert got["fc.weight"] == "head.fc.weight"  # moved, and the only module of its shape left on both sides
    assert len(got) == len(source) and not result.pairing.ambiguous


def test_definition_order_pairs_like_modules_only_when_both_sides_keep_it():
    names_s, names_t = ("right", "left"), ("up", "down")  # no ordinals: only the order can tell
    source = {**conv("enc.stem", 8, 3, 3, 3), **conv("enc.right", 8, 8, 3, 3), **conv("enc.left", 8, 8, 3, 3)}
    target = {**conv("dec.stem", 8, 3, 3, 3), **conv("dec.up", 8, 8, 3, 3), **conv("dec.down", 8, 8, 3, 3)}
    result = suggest(source, target)  # neither is sorted as text: a state dict, in definition order
    check(result, source, target)
    got = {p.source: p.target for p in result.pairing.pairs}
    assert [got[f"enc.{n}.weight"] for n in names_s] == [f"dec.{n}.weight" for n in names_t]
    assert not result.pairing.ambiguous
    stored_sorted = dict(sorted(target.items()))  # a file's order says nothing: report, do not guess
    result = suggest(source, stored_sorted)
    check(result, source, stored_sorted)
    assert {a.source: a.candidates for a in result.pairing.ambiguous} == \
        {"enc.right": ("dec.down", "dec.up"), "enc.left": ("dec.down", "dec.up")}


def test_every_key_skipped_as_ambiguous_is_reported_as_an_ambiguity():
    # a whole container that fits in two ways, and a container whose stem pairs but two others tie
    source = dict(sorted({**conv("a.right", 8, 8, 3, 3), **conv("a.left", 8, 8, 3, 3),
                          **conv("b.stem", 4, 3, 1), **conv("b.right", 4, 4, 1), **conv("b.left", 4, 4, 1)}.items()))
    target = dict(sorted({**conv("x.up", 8, 8, 3, 3), **conv("x.down", 8, 8, 3, 3),
                          **conv("y.stem", 4, 3, 1), **conv("y.up", 4, 4, 1), **conv("y.down", 4, 4, 1)}.items()))
    result = suggest(source, target)
    check(result, source, target)
    reported = {a.source for a in result.pairing.ambiguous}
    assert reported == {"a", "b.left", "b.right"}
    ambiguous_keys = [x for x in result.pairing.skipped if x.reason.startswith("ambiguous")]
    assert {x.key.rpartition(".")[0] for x in ambiguous_keys} == {"a.left", "a.right", "b.left", "b.right"}
    assert all(x.key.rpartition(".")[0] in reported or x.key.partition(".")[0] in reported for x in ambiguous_keys)
    assert "no target container has modules that fit" not in " ".join(x.reason for x in result.pairing.skipped)
    assert all(x.reason.startswith("ambiguous") for x in result.pairing.new if not x.key.startswith("y.stem"))
    assert result.text.count("# AMBIGUOUS: ") == 3 and "ambiguous: ambiguous" not in result.text.lower()
    assert len(result.to_dict()["ambiguous"]) == 3


def test_a_container_whose_fit_went_elsewhere_says_so():
    source = {**conv("enc.a", 8, 8, 3, 3), **conv("dec.a", 8, 8, 3, 3), **conv("odd.a", 5, 5, 1)}
    target = {**conv("enc.a", 8, 8, 3, 3), **conv("new.a", 6, 6, 1)}
    result = suggest(source, target)
    check(result, source, target)
    reasons = {x.key: x.reason for x in result.pairing.skipped}
    assert reasons["dec.a.weight"] == "its best fit 'enc' is paired with 'enc' instead"
    assert reasons["odd.a.weight"] == "no target container has modules that fit those of 'odd'"
    assert {x.key: x.reason for x in result.pairing.new}["new.a.weight"] == \
        "no source container has modules that fit those of 'new'"
