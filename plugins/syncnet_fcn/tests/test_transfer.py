"""The seed's API over mapper_core: load, freeze, param groups, the verbose report, the main job."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mapper_core.errors import PlanError
from syncnet_fcn.attention import SyncNetFCN_WithAttention
from syncnet_fcn.fcn import SyncNetFCN
from syncnet_fcn.main import run as run_main_job
from syncnet_fcn.models import make_syncnet_checkpoint
from syncnet_fcn.transfer import (freeze_pretrained_layers, get_optimizer_param_groups, load_pretrained_syncnet,
                                  unfreeze_all_layers)

MAX_OFFSET = 2


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_syncnet_checkpoint(tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model", seed=0)


@pytest.mark.parametrize("cls", [SyncNetFCN, SyncNetFCN_WithAttention])
def test_every_conv_key_maps_with_zero_mismatches(ckpt, cls):
    model = cls(max_offset=MAX_OFFSET)
    stats = load_pretrained_syncnet(model, ckpt, freeze_conv_layers=False, verbose=False)
    plan = stats["plan"]
    assert plan.mismatched == () and plan.collisions == () and plan.unmatched == ()
    assert (stats["audio_loaded"], stats["video_loaded"], stats["fc_skipped"]) == (42, 42, 18)
    assert stats["audio_skipped"] == stats["video_skipped"] == 0
    conv_targets = {k for k in model.state_dict() if ".conv_layers." in k}
    assert set(stats["load_result"].loaded) == conv_targets
    assert not any(".conv_layers." in k for k in plan.uninitialized)
    state = torch.load(ckpt, weights_only=True)
    assert torch.equal(model.audio_encoder.conv_layers[19].running_var, state["netcnnaud.19.running_var"])


def test_verbose_report_has_the_seed_sections_with_real_counts(ckpt, capsys):
    model = SyncNetFCN(max_offset=MAX_OFFSET)
    stats = load_pretrained_syncnet(model, ckpt, freeze_conv_layers=True, verbose=True)
    out = capsys.readouterr().out
    for heading in ("TRANSFER LEARNING: Loading pretrained SyncNet weights", "AUDIO ENCODER: Mapping netcnnaud.*",
                    "VIDEO ENCODER: Mapping netcnnlip.*", "TRANSFER LEARNING SUMMARY", "Freezing loaded conv layers",
                    "MODEL PARAMETER SUMMARY"):
        assert heading in out
    assert "Total parameters in checkpoint: 102" in out
    assert "✓ netcnnlip.0.weight → video_encoder.conv_layers.0.weight [96, 3, 5, 7, 7]" in out
    assert "Audio conv layers loaded:   42" in out and "FC layers skipped:          18" in out
    assert f"Frozen parameters:     {stats['frozen_params']:,}" in out


def test_quiet_load_prints_nothing(ckpt, capsys):
    load_pretrained_syncnet(SyncNetFCN(max_offset=MAX_OFFSET), ckpt, verbose=False)
    assert capsys.readouterr().out == ""


class ShiftedAudioTrunk(SyncNetFCN):
    """The seed's trap: an audio trunk one module shorter (no MaxPool(1×1) at index 3)."""

    def __init__(self):
        super().__init__(max_offset=MAX_OFFSET)
        layers = list(self.audio_encoder.conv_layers)
        del layers[3]
        self.audio_encoder.conv_layers = nn.Sequential(*layers)


def test_naive_index_layout_is_caught_by_the_plan_not_loaded(ckpt):
    model = ShiftedAudioTrunk()
    bn_bias = model.audio_encoder.conv_layers[4].bias.detach().clone()  # a BatchNorm now sits at index 4
    with pytest.raises(PlanError) as info:
        load_pretrained_syncnet(model, ckpt, verbose=False)
    plan = info.value.plan
    mismatched = {m.source: (m.shape, m.target_shape) for m in plan.mismatched}
    assert mismatched["netcnnaud.4.weight"] == ((192, 64, 3, 3), (192,))
    assert plan.uninitialized  # the shifted layout leaves target keys nothing fills
    assert torch.equal(model.audio_encoder.conv_layers[4].bias, bn_bias), "nothing may be loaded"


def _train(model, optimizer, steps=2):
    g = torch.Generator().manual_seed(0)
    frames = 6
    for _ in range(steps):
        audio = torch.randn(1, 1, 13, 4 * frames, generator=g)
        video = torch.randn(1, 3, frames, 224, 224, generator=g)
        optimizer.zero_grad()
        probs, _, _ = model(audio, video)
        loss = -torch.log(probs[:, MAX_OFFSET].clamp_min(1e-8)).mean()
        loss.backward()
        optimizer.step()


def test_frozen_parameters_do_not_change_and_trainable_ones_do(ckpt):
    model = SyncNetFCN(max_offset=MAX_OFFSET)
    load_pretrained_syncnet(model, ckpt, freeze_conv_layers=True, verbose=False)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n in before if ".conv_layers." in n}
    _train(model, torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3))
    after = dict(model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in frozen)
    changed = {n for n in before if n not in frozen and not torch.equal(before[n], after[n])}
    assert "audio_encoder.channel_conv.0.weight" in changed and "sync_predictor.0.weight" in changed
    assert unfreeze_all_layers(model, verbose=False) == sum(p.numel() for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    freeze_pretrained_layers(model, verbose=False)
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == frozen


def test_param_groups_carry_the_declared_learning_rates(ckpt):
    model = SyncNetFCN_WithAttention(max_offset=MAX_OFFSET)
    load_pretrained_syncnet(model, ckpt, freeze_conv_layers=False, verbose=False)
    groups = get_optimizer_param_groups(model, pretrained_lr=2e-5, new_layers_lr=3e-3)
    optimizer = torch.optim.Adam(groups)
    by_name = {g["name"]: g for g in optimizer.param_groups}
    assert by_name["pretrained_conv"]["lr"] == 2e-5 and by_name["new_layers"]["lr"] == 3e-3
    conv = {id(p) for n, p in model.named_parameters() if ".conv_layers." in n}
    assert {id(p) for p in by_name["pretrained_conv"]["params"]} == conv
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


@pytest.mark.slow
def test_main_job_plans_converts_loads_and_freezes(tmp_path, capsys):
    result = run_main_job(None, tmp_path)
    assert result["convert"].tensors == 84 and result["convert"].checked == 84
    assert result["convert"].left_behind == 18
    assert result["video_diff"] == 0.0
    assert (tmp_path / "syncnet_fcn_init.safetensors").exists()
    out = capsys.readouterr().out
    assert "MODEL PARAMETER SUMMARY" in out and "84 verified bit for bit" in out
