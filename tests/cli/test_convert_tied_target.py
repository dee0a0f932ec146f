"""convert --target model:NAME of a model with tied weights: a target name filled only through its tie
is recorded as its partner's alias (one copy of the bytes), so a strict load of the output into
that model finds every name, through mapper's loader, safetensors' own and DCP's."""
from __future__ import annotations

import json
import warnings

import pytest

torch = pytest.importorskip("torch")
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, load_model, save_file  # noqa: E402
from torch import nn  # noqa: E402

from cli_runner import mapper  # noqa: E402  tests/helpers
from mapper_core.io.formats import open_checkpoint  # noqa: E402
from mapper_core.io.formats.aliases import load_safetensors  # noqa: E402
from tied_plugin import PLUGIN  # noqa: E402

SKIP_HEAD = "version: 1\nrules:\n  - match: 'emb\\.weight'\n    target: 'wte.weight'\nskip: ['head\\..*']\n"
SAME = "version: 1\nrules:\n  - match: '(.+)'\n    target: '{1}'\n"


def tied_net() -> nn.Module:
    """What model:tiedlm builds: an embedding and a head sharing one weight."""
    net = nn.Module()
    net.wte = nn.Embedding(6, 4)
    net.lm_head = nn.Linear(4, 6, bias=False)
    net.lm_head.weight = net.wte.weight
    return net


def convert(tmp_path, src, dst, *options, rules=SKIP_HEAD):
    (tmp_path / "tiedlm_plugin.py").write_text(PLUGIN)
    (tmp_path / "r.yaml").write_text(rules)
    done = mapper("--plugin", "tiedlm_plugin", "convert", src, dst, "--rules", tmp_path / "r.yaml", "--target",
                  "model:tiedlm", "--strict", "--verify", *options, env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    return done


def source(tmp_path, kind: str) -> tuple:
    torch.manual_seed(0)
    state = {"emb.weight": torch.randn(6, 4), "head.weight": torch.randn(6, 4)}  # the head is not kept
    path = tmp_path / f"src.{kind}"
    torch.save(state, path) if kind == "pt" else save_file(state, str(path))
    return path, state["emb.weight"]


@pytest.mark.parametrize("kind", ["pt", "safetensors"])  # a torch source is walked key by key; safetensors in columns
def test_the_output_keeps_one_copy_and_loads_strictly_into_the_tied_model(tmp_path, kind):
    src, weight = source(tmp_path, kind)
    out = tmp_path / "out.safetensors"
    convert(tmp_path, src, out)
    assert list(load_file(out)) == ["wte.weight"]  # one copy: safetensors cannot say two names are one tensor
    with safe_open(out, framework="pt") as f:
        assert json.loads(f.metadata()["mapper.aliases"]) == {"lm_head.weight": "wte.weight"}
    state = load_safetensors(out)
    assert state["lm_head.weight"] is state["wte.weight"]
    net = tied_net()
    result = net.load_state_dict(state, strict=True)
    assert result.missing_keys == [] and torch.equal(net.lm_head.weight, weight)
    assert net.lm_head.weight is net.wte.weight
    assert load_model(tied_net(), out, strict=True) == (set(), [])  # safetensors' own tie-aware load agrees
    with open_checkpoint(out) as reader:  # mapper's readers list the name, as the model's state dict does
        assert reader.aliases() == {"lm_head.weight": "wte.weight"}
        assert list(reader.specs()) == ["wte.weight", "lm_head.weight"]


def test_the_output_is_a_clean_strict_source_for_the_same_model_again(tmp_path):
    src, _ = source(tmp_path, "pt")
    out = tmp_path / "out.safetensors"
    convert(tmp_path, src, out)
    again = convert(tmp_path, out, tmp_path / "again.safetensors", rules=SAME)  # both names map, one tensor
    assert "tied weights" not in again.stderr and "filled through a tie" not in again.stdout
    assert load_safetensors(tmp_path / "again.safetensors").keys() == {"wte.weight", "lm_head.weight"}


def test_a_sharded_output_records_the_tie_in_its_index(tmp_path):
    src, weight = source(tmp_path, "safetensors")
    index = tmp_path / "sharded" / "model.safetensors.index.json"
    index.parent.mkdir()
    convert(tmp_path, src, index, "--max-shard-size", "1B")
    assert json.loads(json.loads(index.read_text())["metadata"]["mapper.aliases"]) == {"lm_head.weight": "wte.weight"}
    net = tied_net()
    assert net.load_state_dict(load_safetensors(index), strict=True).missing_keys == []
    assert torch.equal(net.lm_head.weight, weight)


def test_a_dcp_output_loads_into_the_tied_model(tmp_path):
    dcp = pytest.importorskip("torch.distributed.checkpoint")
    src, weight = source(tmp_path, "pt")
    convert(tmp_path, src, tmp_path / "dcp", "--output-format", "dcp")
    net = tied_net()
    state = net.state_dict()
    with warnings.catch_warnings():  # no process group: DCP says it loads in a single process
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(state, checkpoint_id=str(tmp_path / "dcp"))  # every name of the model's state dict is there
    net.load_state_dict(state, strict=True)
    assert torch.equal(net.lm_head.weight, weight)



def test_the_output_exports_back_to_the_tied_source_layout(tmp_path):
    torch.manual_seed(0)
    emb = torch.randn(6, 4)
    torch.save({"emb.weight": emb, "head.weight": emb}, tmp_path / "src.pt")  # the source is tied too
    out = tmp_path / "out.safetensors"
    convert(tmp_path, tmp_path / "src.pt", out)
    done = mapper("export", out, tmp_path / "back.safetensors", "--rules", tmp_path / "r.yaml", "--source-specs",
                  tmp_path / "src.pt", "--unmatched", "error")  # nothing of out.safetensors is left behind
    assert done.returncode == 0, done.stderr
    assert ("1 tied target key not left behind, as " in done.stdout
            and "holds it as one tensor with an exported key, which goes back: lm_head.weight = wte.weight" in done.stdout)
    back = load_safetensors(tmp_path / "back.safetensors")
    assert back["head.weight"] is back["emb.weight"] and torch.equal(back["emb.weight"], emb)
