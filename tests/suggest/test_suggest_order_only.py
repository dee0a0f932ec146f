"""Pairs that only the order of definition decided are marked as such: a low confidence, the
signal ``ORDER ONLY``, an ``order_only`` entry and flag in --json, a comment and a warning that
say to prove them with `mapper verify`. Names that agree (with or without the order) keep the
pair's confidence. From headers (no torch) except the last test, which runs verify."""
from __future__ import annotations

import json
import textwrap

import pytest
from cli_runner import mapper
from order_models import linear, registered_out_of_order, sequential  # tests/helpers

from mapper_core.suggest import suggest


def weights(result) -> dict[str, tuple[str, float, bool]]:
    return {p.source: (p.target, p.confidence, p.order_only) for p in result.pairing.pairs
            if p.source.endswith(".weight")}


def test_siblings_that_only_order_tells_apart_are_marked_not_trusted():
    result = suggest(sequential(), registered_out_of_order())
    paired = weights(result)
    # paired (order is often right), but every one of them marked, with a low confidence
    assert {s: t for s, (t, _, _) in paired.items()} == {
        "net.0.weight": "net.out_proj.weight", "net.2.weight": "net.in_proj.weight",
        "net.4.weight": "net.hidden.weight"}
    assert all(order_only and confidence <= 0.3 for _, confidence, order_only in paired.values())
    assert [(o.source, o.target, o.candidates) for o in result.pairing.order_only] == [
        ("net.0", "net.out_proj", ("net.out_proj", "net.in_proj", "net.hidden")),
        ("net.2", "net.in_proj", ("net.in_proj", "net.out_proj", "net.hidden")),
        ("net.4", "net.hidden", ("net.hidden", "net.out_proj", "net.in_proj"))]
    first = result.pairing.pairs[0]
    # a checkpoint's headers: their order is the file's, never presented as the model's
    assert first.signals[0] == "ORDER ONLY: paired by file order ('net.in_proj', 'net.hidden' fit as well)"
    # the rules file says it at the top, at each rule, and what to do
    text = " ".join(line.lstrip("# ") for line in result.text.splitlines() if line.lstrip().startswith("#"))
    assert "ORDER ONLY: 'net.0' -> 'net.out_proj': 'net.in_proj', 'net.hidden' fit it as well" in text
    assert text.count("ORDER ONLY: paired by file order") == 3
    assert "prove these pairs with `mapper verify`, or rename the modules or write their rules by hand" in text
    assert "confidence 0.30" in text and "confidence 1.00" not in text


def test_the_json_flags_each_pair_and_lists_each_decision():
    report = suggest(sequential(), registered_out_of_order()).to_dict()
    assert [p["order_only"] for p in report["pairs"]] == [True] * 6
    assert report["summary"]["order_only"] == 3
    [entry, *_] = report["order_only"]
    assert entry["source"] == "net.0" and entry["target"] == "net.out_proj"
    assert entry["candidates"] == ["net.out_proj", "net.in_proj", "net.hidden"]
    assert entry["reason"].startswith("order only: 'net.0' -> 'net.out_proj'")
    assert report["links"][0]["order_only"] is False  # the containers themselves: one each, nothing to choose


@pytest.mark.parametrize("source, target", [
    ({**linear("net.q"), **linear("net.k"), **linear("net.v")},  # the same names
     {**linear("net.q"), **linear("net.k"), **linear("net.v")}),
    ({**linear("net.fc1"), **linear("net.fc2"), **linear("net.fc3")},  # ordinals in the names agree
     {**linear("net.layer_a"), **linear("net.layer_b"), **linear("net.layer_c")}),
    ({**linear("h.0.a"), **linear("h.0.b", 4), **linear("h.1.a"), **linear("h.1.b", 4)},  # numbered blocks
     {**linear("layers.0.a"), **linear("layers.0.b", 4), **linear("layers.1.a"), **linear("layers.1.b", 4)}),
    ({**linear("layer1.0.a"), **linear("layer1.1.a")},  # the blocks' own numbers rank them alike
     {**linear("stages.0.blocks.0.a"), **linear("stages.0.blocks.1.a")}),
])
def test_names_that_agree_with_the_order_keep_the_confidence(source, target):
    result = suggest(source, target)
    assert len(result.pairing.pairs) == len(source)
    assert result.pairing.order_only == ()
    assert all(not p.order_only and p.confidence >= 0.8 for p in result.pairing.pairs)
    assert "ORDER ONLY" not in result.text


def test_only_the_siblings_no_name_tells_apart_are_marked():
    result = suggest({**linear("net.q"), **linear("net.0"), **linear("net.1")},
                     {**linear("net.q"), **linear("net.x"), **linear("net.y")})
    paired = weights(result)
    assert paired["net.q.weight"] == ("net.q.weight", 1.0, False)
    assert paired["net.0.weight"][2] and paired["net.1.weight"][2]
    assert max(paired["net.0.weight"][1], paired["net.1.weight"][1]) < paired["net.q.weight"][1]
    assert [o.source for o in result.pairing.order_only] == ["net.0", "net.1"]


def test_containers_that_only_their_place_tells_apart_are_marked():
    block = lambda p: {**linear(f"{p}.conv"), **linear(f"{p}.proj", 4)}  # noqa: E731
    result = suggest({**block("enc"), **block("dec")}, {**block("first"), **block("second")})
    assert {p.source: p.target for p in result.pairing.pairs}["dec.proj.bias"] == "second.proj.bias"
    assert all(p.order_only and p.confidence <= 0.3 for p in result.pairing.pairs)
    assert [(o.source, o.target, o.candidates) for o in result.pairing.order_only] == [
        ("enc", "first", ("first", "second")), ("dec", "second", ("second", "first"))]
    assert "so the order of the containers' keys in the checkpoint decided" in result.pairing.order_only[0].reason
    assert all(link.order_only and link.confidence <= 0.3 for link in result.pairing.links)
    # names that tell them apart win, and nothing is marked
    named = suggest({**block("encoder"), **block("decoder")}, {**block("enc"), **block("dec")})
    assert named.pairing.order_only == () and min(p.confidence for p in named.pairing.pairs) >= 0.8


def _spec_file(path, specs):
    path.write_text(json.dumps({"tensors": {k: {"dtype": s.dtype, "shape": list(s.shape)} for k, s in specs.items()}}))
    return path


def test_the_command_warns_once_with_the_pairs_and_what_to_do(tmp_path):
    source = _spec_file(tmp_path / "a.json", sequential())
    target = _spec_file(tmp_path / "b.json", registered_out_of_order())
    done = mapper("suggest", "--source", source, "--target", target, "-o", tmp_path / "rules.yaml")
    assert done.returncode == 0, done.stderr
    [warning] = [line for line in done.stderr.splitlines() if "warning" in line]
    assert ("3 pairings by file order alone, as the names do not tell the candidates apart: "
            "'net.0' -> 'net.out_proj', 'net.2' -> 'net.in_proj', 'net.4' -> 'net.hidden'") in warning
    assert "`mapper verify`" in warning
    assert "the order of the keys in a checkpoint need not be the order its modules are defined in" in warning
    assert "ORDER ONLY" in (tmp_path / "rules.yaml").read_text()


PLUGIN = textwrap.dedent('''
    from mapper_core.plugins import ModelFactory, hookimpl


    def _source():
        from torch import nn
        return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))


    def _target():
        from torch import nn

        class Target(nn.Module):  # registered out_proj, in_proj, hidden; run in_proj, hidden, out_proj
            def __init__(self):
                super().__init__()
                self.out_proj, self.in_proj, self.hidden = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)

            def forward(self, x):
                return self.out_proj(self.hidden(self.in_proj(x).relu()).relu())

        return Target()


    @hookimpl
    def mapper_models():
        return [ModelFactory("seq", _source), ModelFactory("named", _target)]
''')


def test_verify_disproves_what_suggest_marked(tmp_path):
    torch = pytest.importorskip("torch")
    (tmp_path / "ordermodels.py").write_text(PLUGIN)
    env = {"PYTHONPATH": str(tmp_path)}
    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.ReLU(),
                              torch.nn.Linear(8, 8))
    torch.save(seq.state_dict(), tmp_path / "seq.pt")  # a state dict keeps the order of definition
    rules = tmp_path / "rules.yaml"
    done = mapper("--plugin", "ordermodels", "suggest", "--source", tmp_path / "seq.pt", "--target", "model:named",
                  "-o", rules, env=env)
    assert done.returncode == 0, done.stderr
    assert "by file order alone" in done.stderr  # seq.pt's order, though model:named's is its definition
    checked = mapper("--plugin", "ordermodels", "verify", "--rules", rules, "--source", tmp_path / "seq.pt",
                     "--source-model", "model:seq", "--target-model", "model:named", "--input", "2x8", env=env)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "first divergent module: 0 -> out_proj" in checked.stdout


def test_only_two_built_models_are_said_to_pair_by_definition_order():
    types = lambda specs: {k.rpartition(".")[0]: "Linear" for k in specs}  # noqa: E731
    source, target = sequential(), registered_out_of_order()
    built = suggest(source, target, source_types=types(source), target_types=types(target))
    assert built.pairing.pairs[0].signals[0].startswith("ORDER ONLY: paired by definition order")
    assert built.pairing.order_only[0].reason.endswith("so the order the modules are defined in decided")
    assert "the order modules are defined in need not be the order they run in" in built.text
    assert "checkpoint" not in built.text
