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
