"""A pair's signals say what each is about: what concerns the two containers the pair sits in (name
similarity, place among like containers, how their modules were aligned) is one signal that names
them, ``containers net -> net: ...``, never a bare "name similarity 1.00" that reads as the paired
modules'. The same strings in the rules file's comments, in --json and on the Pair. From headers."""
from __future__ import annotations

import json

from cli_runner import mapper
from order_models import linear, registered_out_of_order, sequential  # tests/helpers

from mapper_core.specs import TensorSpec
from mapper_core.suggest import suggest


def block(path: str) -> dict[str, TensorSpec]:
    return {**linear(f"{path}.conv"), **linear(f"{path}.proj", 4)}


def evidence(text: str) -> str:
    return " ".join(line.strip().lstrip("# ") for line in text.splitlines() if line.strip().startswith("#"))


def test_the_containers_evidence_is_one_signal_that_names_them():
    result = suggest(sequential(), registered_out_of_order())
    first = result.pairing.pairs[0]
    assert (first.source, first.target) == ("net.0.weight", "net.out_proj.weight")
    assert first.signals == (
        "ORDER ONLY: paired by file order ('net.in_proj', 'net.hidden' fit as well)",
        "same shape",
        "containers net -> net: 3 modules by fit, renamed, name similarity 1.00, same place among like containers")
    for pair in result.pairing.pairs:
        assert not any(s.startswith(("name similarity", "same place", "same layer numbers", "best of"))
                       for s in pair.signals), pair.signals
    # the link is the containers themselves: its signals need no name
    assert result.pairing.links[0].signals == ["3 modules by fit, renamed", "name similarity 1.00",
                                               "same place among like containers"]


def test_containers_paired_by_order_say_it_of_the_containers():
    result = suggest({**block("enc"), **block("dec")}, {**block("first"), **block("second")})
    pair = next(p for p in result.pairing.pairs if p.source == "enc.conv.weight")
    assert pair.signals[0] == "ORDER ONLY: containers enc -> first paired by file order ('second' fit as well)"
    assert pair.signals[2].startswith("containers enc -> first: 2 modules by name, same place among like containers")


def test_top_level_containers_are_named_as_the_top_level():
    result = suggest({**linear("head"), **linear("body", 4)}, {**linear("classifier"), **linear("trunk", 4)})
    assert all(p.signals[-1].startswith("containers (top level) -> (top level): ") for p in result.pairing.pairs)


def test_the_rules_file_and_the_json_say_the_same_signals(tmp_path):
    source, target = tmp_path / "a.json", tmp_path / "b.json"
    for path, specs in ((source, sequential()), (target, registered_out_of_order())):
        path.write_text(json.dumps({"tensors": {k: {"dtype": s.dtype, "shape": list(s.shape)}
                                                for k, s in specs.items()}}))
    done = mapper("suggest", "--source", source, "--target", target, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    pair = report["pairs"][0]
    assert pair["signals"][-1] == ("containers net -> net: 3 modules by fit, renamed, name similarity 1.00, "
                                   "same place among like containers")
    # the comment over the pair's rule: the same signals, each apart from the next
    said = evidence(report["rules_file"])
    assert f"2 pairs: {'; '.join(pair['signals'])}; confidence 0.30" in said
    text = mapper("suggest", "--source", source, "--target", target)
    assert text.stdout == report["rules_file"]
