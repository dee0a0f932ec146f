"""The SyncNet proof: `mapper suggest` finds the hand-written rule sets on its own.

`--source model:syncnet --target model:syncnet-fcn` gives a plan equal to `syncnet_fcn:to-fcn`
(same mapped pairs with the same steps, same skipped keys); with `embedding_dim=1024` it equals
`to-fcn-full`, the unsqueeze transforms included. The suggested file validates and plans clean
under --strict.
"""
from __future__ import annotations

import json

import pytest
import torch
from cli_runner import mapper
from safetensors.torch import save_file

from mapper_core.plugins import get_plugin_manager, resolve_rules
from mapper_core.rules.load import load_rules
from mapper_core.train.apply import module_specs, plan_for_module
from syncnet_fcn import SyncNet, SyncNetFCN



def _fingerprint(plan):
    mapped = {(m.source, m.target, tuple(str(s) for s in m.transform)) for m in plan.loadable}
    return mapped, {s.source for s in plan.skipped}


@pytest.mark.parametrize("embedding, hand_written", [(512, "to-fcn"), (1024, "to-fcn-full")])
def test_suggested_plan_equals_the_hand_written_rules(tmp_path, embedding, hand_written):
    out = tmp_path / "suggested.yaml"
    result = mapper("suggest", "--source", "model:syncnet", "--target", "model:syncnet-fcn",
                    "--model-arg", f"embedding_dim={embedding}", "-o", out)
    assert result.returncode == 0, result.stderr
    source = module_specs(SyncNet())
    target = SyncNetFCN(embedding_dim=embedding)
    suggested = plan_for_module(source, load_rules(out), target)
    reference = plan_for_module(source, resolve_rules(f"syncnet_fcn:{hand_written}",
                                                      get_plugin_manager()), target)
    assert _fingerprint(suggested) == _fingerprint(reference)
    assert not suggested.has_errors(strict=True)
    if embedding == 1024:  # the Linear heads go into the 1x1 convs through unsqueeze
        steps = {m.source: [str(s) for s in m.transform] for m in suggested.loadable}
        assert steps["netfcaud.3.weight"] == steps["netfclip.0.weight"] == ["unsqueeze(dim=2)"]
        assert steps["netfcaud.3.bias"] == []


def test_suggested_file_validates_and_plans_clean_from_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / "syncnet.safetensors"
    save_file(SyncNet().state_dict(), str(ckpt))  # safetensors stores keys sorted as text
    out = tmp_path / "rules.yaml"
    assert mapper("suggest", "--source", ckpt, "--target", "model:syncnet-fcn",
                  "-o", out).returncode == 0
    assert mapper("validate", out).returncode == 0
    plan = mapper("plan", ckpt, "--rules", out, "--target", "model:syncnet-fcn", "--strict")
    assert plan.returncode == 0, plan.stdout
    assert "result: clean" in plan.stdout
    report = json.loads(mapper("suggest", "--source", ckpt, "--target", "model:syncnet-fcn", "--json").stdout)
    reasons = {x["source"]: x["reason"] for x in report["skipped"]}
    assert sorted(reasons) == sorted(k for k in SyncNet().state_dict() if k.startswith("netfc"))
    assert "netfcaud.3 linear [1024, 512] faces audio_encoder.channel_conv.3 Conv1d [512, 512, 1]" \
        in reasons["netfcaud.0.weight"]
    assert report["rules_file"] == out.read_text()
    assert all(p["confidence"] == 1.0 for p in report["pairs"])
