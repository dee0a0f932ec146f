"""A DCP source's non-tensor items (step, epoch, optimizer param_groups): a plain DCP → DCP copy
carries them over byte for byte (never unpickled), so torch's own ``dcp.load`` of the original
state-dict shape reads the same values from the copy as from the source; wherever they are not
written, the result and the report name them."""
from __future__ import annotations

import json
import warnings

import pytest

torch = pytest.importorskip("torch")
import torch.distributed.checkpoint as dcp  # noqa: E402
from torch import nn  # noqa: E402

from dcp_fixtures import save_dcp  # noqa: E402
from mapper_core.io.convert import convert  # noqa: E402
from mapper_core.rules import parse_rules  # noqa: E402

UNPREFIX = "version: 1\nname: unprefix\nunmatched: drop\nrules:\n  - match: 'model\\.(.+)'\n    target: '{1}'\n"
NON_TENSORS = {"step", "epoch", "name", "extra.cfg.lr", "extra.cfg.layers"}


def _training_state():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.8, 0.9))
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    return model, opt


def _blank_state():
    """The state dict a resuming run hands dcp.load: fresh model and optimizer, placeholder values."""
    model, opt = _training_state()
    for p in model.parameters():
        p.data.zero_()
    return {"model": model.state_dict(), "optim": opt.state_dict(), "step": 0, "epoch": 0.0, "name": "",
            "extra": {"cfg": {"lr": 0.0, "layers": []}}}


def _load(folder):
    state = _blank_state()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "assuming the intent is to load in a single process"
        dcp.load(state, checkpoint_id=str(folder), no_dist=True)
    return state


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


@pytest.fixture
def source(tmp_path):
    model, opt = _training_state()
    state = {"model": model.state_dict(), "optim": opt.state_dict(), "step": 100, "epoch": 3.5, "name": "run-a",
             "extra": {"cfg": {"lr": 1e-3, "layers": [1, 2]}}}
    return save_dcp(state, tmp_path / "ckpt")


def test_plain_copy_loads_like_the_source_with_torchs_own_dcp_load(source, tmp_path):
    out = tmp_path / "copy"
    result = convert(source, out, output_format="dcp", verify=True)
    expected, got = _load(source), _load(out)
    assert expected["step"] == 100 and expected["optim"]["param_groups"][0]["betas"] == (0.8, 0.9)
    assert _same(got, expected)
    carried = set(result.non_tensors_carried)
    assert NON_TENSORS <= carried and any(k.startswith("optim.param_groups.0.") for k in carried)
    assert result.non_tensors_left_behind == ()


def test_with_rules_non_tensors_are_named_as_not_written(source, tmp_path, mapper):
    rules = tmp_path / "unprefix.yaml"
    rules.write_text(UNPREFIX)
    result = convert(source, tmp_path / "seed", rules=parse_rules(UNPREFIX, "unprefix.yaml"), output_format="dcp")
    assert result.non_tensors_carried == () and NON_TENSORS <= set(result.non_tensors_left_behind)
    done = mapper("convert", source, tmp_path / "seed2", "--rules", rules, "--output-format", "dcp")
    assert done.returncode == 0, done.stderr
    left = len(result.non_tensors_left_behind)
    assert (f"  {left} non-tensor items not written (rules move tensors only; without --rules a DCP source's are "
            "carried over): ") in done.stdout
    done = mapper("convert", source, tmp_path / "seed3", "--rules", rules, "--output-format", "dcp", "--json")
    data = json.loads(done.stdout)
    assert data["non_tensors_carried"] == [] and set(data["non_tensors_left_behind"]) == set(result.non_tensors_left_behind)


def test_the_report_names_what_was_carried_and_what_was_not(source, tmp_path, mapper):
    done = mapper("convert", source, tmp_path / "copy", "--output-format", "dcp")
    assert done.returncode == 0, done.stderr
    carried = done.stdout.splitlines()[1]
    assert carried.startswith("  ") and "non-tensor items carried over as DCP stored them (bytes, never unpickled): " \
        in carried and "(--json lists them)" in carried
    done = mapper("convert", source, tmp_path / "copy.safetensors")
    assert done.returncode == 0, done.stderr
    assert ("non-tensor items not written (safetensors holds tensors; metadata 'mapper.extra' holds values JSON can "
            "hold, and DCP's pickled bytes are never unpickled): ") in done.stdout


def test_a_torch_source_names_only_what_mapper_extra_could_not_hold(tmp_path):
    path = tmp_path / "st.pt"
    torch.save({"w": torch.ones(2), "step": 5, "ids": {1, 2}}, path)
    result = convert(path, tmp_path / "st.safetensors")
    assert result.non_tensors_left_behind == ("ids",)  # step rides in mapper.extra
    result = convert(path, tmp_path / "st-dcp", output_format="dcp")
    assert result.non_tensors_left_behind == ("step", "ids") and result.non_tensors_carried == ()


def test_inspect_says_what_becomes_of_dcp_non_tensors(source, mapper):
    done = mapper("inspect", source)
    assert done.returncode == 0, done.stderr
    last = done.stdout.splitlines()[-1]
    assert last.startswith("non-tensor values (DCP's pickled bytes, never unpickled: convert to safetensors leaves "
                           "them behind, --output-format dcp without --rules carries them over): ")
    assert "mapper.extra" not in done.stdout
