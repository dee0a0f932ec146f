"""The SyncNet plugin's hooks: its rule set reproduces the seed's mapping; its models build lazily."""
from __future__ import annotations


import pytest

from mapper_core.plugins import contributions, get_plugin_manager, resolve_rules
from cli_runner import python_process  # tests/helpers


def test_importing_the_plugin_does_not_import_torch_or_the_models():
    code = "import sys, syncnet_fcn.plugin; print([m for m in ('torch', 'syncnet_fcn.models') if m in sys.modules])"
    out = python_process(code, check=True).stdout
    assert out.strip() == "[]"


@pytest.fixture
def syncnet_pm():
    return get_plugin_manager(["syncnet_fcn.plugin"], entry_points=False, env={})


def test_syncnet_plugin_contributes_its_rule_set_and_models(syncnet_pm):
    found = contributions(syncnet_pm)
    assert found.rule_sets["syncnet_fcn.plugin:to-fcn"].value.path.name == "to-fcn.yaml"
    assert {c.name: c.plugin for c in found.models.values()} == {
        n: "syncnet_fcn.plugin" for n in ("syncnet", "syncnet-fcn", "syncnet-fcn-attention")
    }
    assert found.models["syncnet-fcn"].qualified == "syncnet_fcn.plugin:syncnet-fcn"  # bare names still resolve


def test_syncnet_to_fcn_reproduces_the_seed_mapping():
    pm = get_plugin_manager(env={})  # as installed: plugin name from the entry point
    rs = resolve_rules("syncnet_fcn:to-fcn", pm)
    assert rs.origin == "syncnet_fcn:to-fcn"

    def target(key):
        return next((t for t in (r.apply(key) for r in rs.rules) if t is not None), None)

    assert target("netcnnaud.0.weight") == "audio_encoder.conv_layers.0.weight"
    assert target("netcnnaud.19.running_var") == "audio_encoder.conv_layers.19.running_var"
    assert target("netcnnlip.18.bias") == "video_encoder.conv_layers.18.bias"
    assert target("netfcaud.0.weight") is None
    assert all(any(s.pattern.fullmatch(k) for s in rs.skip) for k in ("netfcaud.0.weight", "netfclip.3.bias"))
    assert not any(s.pattern.fullmatch("netcnnaud.0.weight") for s in rs.skip)
    frozen = rs.freeze_group("pretrained_conv")
    assert frozen.matches("video_encoder.conv_layers.0.weight")
    assert not frozen.matches("video_encoder.channel_conv.0.weight")
    groups = {g.name: g for g in rs.param_groups}
    assert groups["pretrained_conv"].options["lr"] == pytest.approx(1e-5)
    assert groups["new_layers"].default and groups["new_layers"].options["lr"] == pytest.approx(1e-3)


def test_syncnet_model_factory_builds_the_model(syncnet_pm):
    import torch

    model = contributions(syncnet_pm).models["syncnet"].value.build()
    assert isinstance(model, torch.nn.Module)
    assert len(model.state_dict()) == 102
