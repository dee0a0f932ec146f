"""A container's own tensors (``model.pos_emb`` beside the module ``model.fc``) go where the
container went: with ``model.X`` -> ``X`` they pair with the top-level keys of the same name and
shape, instead of being skipped on one side and declared new on the other (which a strict plan
accepts and convert then drops). From headers (no torch)."""
from __future__ import annotations

from cli_runner import mapper

from mapper_core.specs import TensorSpec
from mapper_core.suggest import suggest


def specs(prefix: str, pos_rows: int = 16) -> dict[str, TensorSpec]:
    return {f"{prefix}scale": TensorSpec("F32", (8,)), f"{prefix}fc.weight": TensorSpec("F32", (4, 8)),
            f"{prefix}fc.bias": TensorSpec("F32", (4,)), f"{prefix}pos_emb": TensorSpec("F32", (pos_rows, 8))}


def test_a_prefix_modules_own_tensors_pair_with_the_top_level_keys():
    result = suggest(specs("model."), specs(""))
    assert {p.source: p.target for p in result.pairing.pairs} == {
        "model.scale": "scale", "model.fc.weight": "fc.weight", "model.fc.bias": "fc.bias",
        "model.pos_emb": "pos_emb"}
    assert result.pairing.skipped == () and result.pairing.new == ()
    assert not result.plan.has_errors(strict=True)
    own = next(p for p in result.pairing.pairs if p.source == "model.pos_emb")
    assert own.confidence == 1.0 and own.signals[:2] == ("same name", "same shape")
    assert "own tensors of containers model -> (top level)" in own.signals[2]
    assert "'model\\.(scale|pos_emb)'" in result.text or "'model\\.(pos_emb|scale)'" in result.text


def test_top_level_keys_pair_with_the_own_tensors_of_the_prefix_module():
    result = suggest(specs(""), specs("model."))
    assert {p.source: p.target for p in result.pairing.pairs} == {
        "scale": "model.scale", "fc.weight": "model.fc.weight", "fc.bias": "model.fc.bias",
        "pos_emb": "model.pos_emb"}
    assert result.pairing.skipped == () and result.pairing.new == ()


def test_a_renamed_container_takes_its_own_tensors_along():
    source = {**specs("enc."), "enc.head.weight": TensorSpec("F32", (2, 4))}
    target = {**specs("encoder."), "encoder.head.weight": TensorSpec("F32", (2, 4))}
    result = suggest(source, target)
    assert {p.source: p.target for p in result.pairing.pairs}["enc.pos_emb"] == "encoder.pos_emb"
    assert result.pairing.skipped == () and result.pairing.new == ()


def test_an_own_tensor_of_another_shape_stays_skipped_and_new():
    result = suggest(specs("model."), specs("", pos_rows=32))
    assert "model.pos_emb" in {s.key for s in result.pairing.skipped}
    assert "pos_emb" in {n.key for n in result.pairing.new}
    assert {p.source: p.target for p in result.pairing.pairs}["model.scale"] == "scale"


def test_convert_with_the_suggested_rules_writes_every_tensor(tmp_path):
    import json
    for name, prefix in (("src.json", "model."), ("tgt.json", "")):
        (tmp_path / name).write_text(json.dumps(
            {"tensors": {k: {"dtype": s.dtype, "shape": list(s.shape)} for k, s in specs(prefix).items()}}))
    rules = tmp_path / "rules.yaml"
    done = mapper("suggest", "--source", tmp_path / "src.json", "--target", tmp_path / "tgt.json", "-o", rules)
    assert done.returncode == 0, done.stderr
    assert "4 of 4 source keys paired" in done.stdout and "0 of 4 target keys new" in done.stdout
    planned = mapper("plan", tmp_path / "src.json", "--rules", rules, "--target", tmp_path / "tgt.json",
                     "--strict", "--json")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    report = json.loads(planned.stdout)
    assert sorted(m["target"] for m in report["mapped"]) == ["fc.bias", "fc.weight", "pos_emb", "scale"]
