"""export with --source-specs restores a tied key of the source the rules do not export (a skipped
lm_head that is the embedding): as the same tensor, stored once, as convert writes aliases."""
from __future__ import annotations

import json

import pytest

from mapper_core.io.export import plan_export
from mapper_core.rules import parse_rules
from mapper_core.specs import TensorSpec

RULES = """\
version: 1
rules:
  - match: 'model\\.embed\\.weight'
    target: 'tok.weight'
  - match: 'model\\.norm\\.weight'
    target: 'norm.weight'
skip: ['lm_head\\..*']
"""
E, N = TensorSpec("F32", (6, 4)), TensorSpec("F32", (4,))
SOURCE = {"model.embed.weight": E, "model.norm.weight": N, "lm_head.weight": E}
TARGET = {"tok.weight": E, "norm.weight": N}
ALIASES = {"lm_head.weight": "model.embed.weight"}


def test_the_plan_restores_the_tied_key_from_its_exported_partner():
    plan = plan_export(parse_rules(RULES, "r.yaml"), TARGET, SOURCE, ALIASES)
    assert plan.restored == (("lm_head.weight", "model.embed.weight"),)
    data = plan.to_dict()
    assert data["restored_aliases"] == [{"source": "lm_head.weight", "same_as": "model.embed.weight"}]
    assert data["summary"]["restored_aliases"] == 1


def test_either_name_of_the_tie_comes_back_from_the_other():
    rules = RULES.replace("model\\.embed\\.weight", "lm_head\\.weight").replace("lm_head\\..*", "model\\.embed.*")
    assert "skip: ['model\\.embed.*']" in rules
    plan = plan_export(parse_rules(rules, "r.yaml"), TARGET, SOURCE, ALIASES)
    assert [e.source for e in plan.entries if e.target == "tok.weight"] == ["lm_head.weight"]
    assert plan.restored == (("model.embed.weight", "lm_head.weight"),)


def test_nothing_is_restored_without_the_aliases_or_when_no_name_of_the_tie_is_exported():
    assert plan_export(parse_rules(RULES, "r.yaml"), TARGET, SOURCE).restored == ()
    only_norm = {"norm.weight": N}
    assert plan_export(parse_rules(RULES, "r.yaml"), only_norm, SOURCE, ALIASES).restored == ()


def test_the_exported_file_loads_strictly_into_the_tied_source_model(tmp_path, mapper):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file
    from torch import nn

    from mapper_core.io.formats.aliases import load_safetensors
    from mapper_core.io.export import export_state_dict
    from mapper_core.io.formats import open_checkpoint

    def tied():
        net = nn.Module()
        net.model = nn.Module()
        net.model.embed = nn.Embedding(6, 4)
        net.model.norm = nn.LayerNorm(4, bias=False)
        net.lm_head = nn.Linear(4, 6, bias=False)
        net.lm_head.weight = net.model.embed.weight
        return net

    torch.manual_seed(0)
    original = tied()
    torch.save(original.state_dict(), tmp_path / "src.pt")
    tuned = {"tok.weight": original.model.embed.weight.detach() + 1, "norm.weight": original.model.norm.weight.detach()}
    save_file(tuned, str(tmp_path / "tuned.safetensors"))
    (tmp_path / "r.yaml").write_text(RULES)
    done = mapper("export", "tuned.safetensors", "back.safetensors", "--rules", "r.yaml", "--source-specs", "src.pt",
                  cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert ("  restored 1 tied key the rules do not export, as --source-specs ties them to exported keys: "
            "lm_head.weight = model.embed.weight\n  1 tied key stored once (metadata 'mapper.aliases')") in done.stdout
    back = tied()
    assert str(back.load_state_dict(load_safetensors(tmp_path / "back.safetensors"), strict=True)) == \
        "<All keys matched successfully>"
    assert torch.equal(back.lm_head.weight, tuned["tok.weight"])
    as_json = json.loads(mapper("export", "tuned.safetensors", "back2.safetensors", "--rules", "r.yaml",
                                "--source-specs", "src.pt", "--json", cwd=tmp_path).stdout)
    assert as_json["restored_aliases"] == [{"source": "lm_head.weight", "same_as": "model.embed.weight"}]
    assert as_json["written"]["aliases"] == 1 and as_json["written"]["left_behind"] == 0
    with open_checkpoint(tmp_path / "src.pt") as reader:  # Python: the same, the tie kept in memory
        out = export_state_dict(parse_rules(RULES, "r.yaml"), tuned, reader.specs(), source_aliases=reader.aliases())
    assert out["lm_head.weight"] is out["model.embed.weight"]


def test_a_target_key_tied_to_an_exported_one_goes_back_with_it_not_left_behind():
    target = {**TARGET, "head.weight": E}  # a tied target: head.weight is tok.weight (convert's mapper.aliases)
    rules = parse_rules(RULES, "r.yaml")
    assert plan_export(rules, target, SOURCE, ALIASES).left_behind == ("head.weight",)  # without the target's ties
    plan = plan_export(rules, target, SOURCE, ALIASES, target_aliases={"head.weight": "tok.weight"})
    assert plan.left_behind == () and plan.tied == (("head.weight", "tok.weight"),)
    assert plan.to_dict()["tied"] == [{"target": "head.weight", "same_as": "tok.weight"}]
    reverse = plan_export(rules, target, SOURCE, ALIASES, target_aliases={"tok.weight": "head.weight"})
    assert reverse.tied == (("head.weight", "tok.weight"),)  # whichever name the checkpoint stores
    untied = plan_export(rules, {"head.weight": E, "norm.weight": N}, SOURCE, ALIASES,
                         target_aliases={"head.weight": "tok.weight"})  # its partner is not exported either
    assert untied.left_behind == ("head.weight",) and untied.tied == ()
