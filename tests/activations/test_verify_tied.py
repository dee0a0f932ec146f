"""verify with a source model that ties two weights (lm_head.weight is wte.weight): a checkpoint
written the way save_pretrained writes it, the tied weight once, fits that model."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import save_file  # noqa: E402
from torch import nn  # noqa: E402

from mapper_core.activations import verify  # noqa: E402
from mapper_core.activations.load import load_source  # noqa: E402
from mapper_core.errors import BadInputError  # noqa: E402
from mapper_core.io.formats import open_checkpoint  # noqa: E402
from mapper_core.io.torch_dtypes import spec_of  # noqa: E402
from mapper_core.rules import parse_rules  # noqa: E402

SAME_NAMES = "version: 1\nrules:\n  - match: '(.*)'\n    target: '{1}'\n"


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(10, 4)
        self.mid = nn.Linear(4, 4)
        self.lm_head = nn.Linear(4, 10, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, ids):
        return self.lm_head(self.mid(self.wte(ids)))


def _saved_once(tmp_path):
    torch.manual_seed(0)
    model = Tied()
    state = {k: v.clone() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(tmp_path / "model.safetensors"))
    return model, tmp_path / "model.safetensors"


def test_a_weight_the_model_ties_to_a_loaded_one_is_not_missing(tmp_path):
    saved, path = _saved_once(tmp_path)
    with open_checkpoint(path) as reader:
        assert "lm_head.weight" not in reader.specs()
        result = verify(parse_rules(SAME_NAMES, "same.yaml"), reader, reader.specs(), Tied(), Tied(),
                        [torch.tensor([[1, 2, 3]])], origin=str(path))
    assert result.passed and result.complete
    source = Tied()
    load_source(source, {k: v for k, v in saved.state_dict().items() if k != "lm_head.weight"}, "m")
    assert source.lm_head.weight is source.wte.weight and torch.equal(source.lm_head.weight, saved.wte.weight)


def test_a_weight_missing_without_a_tie_is_still_missing():
    model = Tied()
    state = {k: v for k, v in model.state_dict().items() if k not in ("lm_head.weight", "wte.weight")}
    with pytest.raises(BadInputError, match=r"m: does not fit the source model: 2 missing"):
        load_source(Tied(), state, "m")
    state = {k: v for k, v in model.state_dict().items() if k != "mid.bias"}
    with pytest.raises(BadInputError, match=r"1 missing \(e\.g\. mid\.bias\)"):
        load_source(Tied(), state, "m")


class Renamed(nn.Module):
    """Tied's layout under other names (emb, proj, out), tied or not."""

    def __init__(self, tie=True):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.proj = nn.Linear(4, 4)
        self.out = nn.Linear(4, 10, bias=False)
        if tie:
            self.out.weight = self.emb.weight

    def forward(self, ids):
        return self.out(self.proj(self.emb(ids)))


# the head is skipped: the tie in both models carries it
RENAME = ("version: 1\nrules:\n  - match: 'wte\\.weight'\n    target: 'emb.weight'\n  - match: 'mid\\.(.+)'\n"
          "    target: 'proj.{1}'\nskip: ['lm_head\\..*']\n")


def _verify_renamed(target):
    torch.manual_seed(0)
    source = Tied()
    state = source.state_dict()  # lm_head.weight and wte.weight: one tensor
    specs = {k: spec_of(v) for k, v in state.items()}
    return verify(parse_rules(RENAME, "rename.yaml"), state, specs, Tied(), target,
                  [torch.tensor([[1, 2, 3]])], origin="tied.pt")


def test_a_skipped_key_tied_to_a_loaded_one_is_loaded_through_the_tie():
    from mapper_core.activations import TiedKey, render_text

    result = _verify_renamed(Renamed())
    assert result.left_behind == () and result.complete
    assert result.tied == (TiedKey("lm_head.weight", "wte.weight", "emb.weight", "out.weight"),)
    assert result.to_dict()["tied"] == [{"source": "lm_head.weight", "tied_to": "wte.weight", "into": "emb.weight",
                                         "target": "out.weight"}]
    text = render_text(result)
    assert "not loaded" not in text
    assert ("loaded through a tie: lm_head.weight (tied to wte.weight, which was loaded into emb.weight; the target "
            "ties out.weight to that)") in text


def test_without_the_tie_in_the_target_the_key_is_not_loaded_and_says_why():
    result = _verify_renamed(Renamed(tie=False))
    assert result.tied == () and not result.passed  # out.weight kept its own values: the outputs differ
    (gone,) = result.left_behind
    assert gone.keys == ("lm_head.weight",)
    assert gone.reasons == ("skipped by 'lm_head\\..*'; tied to 'wte.weight', which was loaded into 'emb.weight', "
                            "but the target model ties nothing to that",)
