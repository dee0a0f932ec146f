"""The full transfer `syncnet_fcn:to-fcn-full`: trunks and FC heads, through the planner and apply.

The FC heads land in ``channel_conv`` (Linear → 1×1 Conv1d by an ``unsqueeze`` step), so with
embedding_dim=1024 the encoders before ``channel_attn`` compute what ``forward_lip`` /
``forward_aud`` compute. Export takes a fine-tuned SyncNetFCN back to the original keys.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mapper_core.train.apply import apply_to_module, module_specs
from mapper_core.io.export import export_state_dict, plan_export
from mapper_core.io.formats import builtin_formats
from mapper_core.io.formats.base import choose_format
from mapper_core.plan.make import make_plan
from mapper_core.plugins import get_plugin_manager, resolve_rules
from mapper_core.plan.report import render_text
from syncnet_fcn.fcn import SyncNetFCN
from syncnet_fcn.models import SyncNet, make_syncnet_checkpoint

TOLERANCE = 1e-4
HEAD_KEYS = [f"netfc{b}.{k}" for b in ("aud", "lip")
             for k in ("0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                       "1.num_batches_tracked", "3.weight", "3.bias")]


@pytest.fixture(scope="module")
def ruleset():
    return resolve_rules("syncnet_fcn:to-fcn-full", get_plugin_manager(env={}))  # as installed


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_syncnet_checkpoint(tmp_path_factory.mktemp("syncnet") / "syncnet.model", seed=3)


@pytest.fixture(scope="module")
def original(checkpoint) -> SyncNet:
    model = SyncNet()
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    return model.eval()


def transfer(ruleset, checkpoint: Path, embedding_dim: int):
    """Plan from headers, then load through apply: the path users take."""
    model = SyncNetFCN(embedding_dim=embedding_dim, max_offset=3)
    with choose_format(checkpoint, builtin_formats()).open(checkpoint) as reader:
        plan = make_plan(reader.specs(), ruleset, module_specs(model), source_origin=str(checkpoint))
        result = apply_to_module(plan, model, reader)
    return model.eval(), plan, result


def test_heads_are_planned_with_unsqueeze_from_headers(ruleset, checkpoint):
    _, plan, result = transfer(ruleset, checkpoint, 1024)
    assert not plan.errors and not plan.unmatched and not plan.skipped
    by_source = {m.source: m for m in plan.mapped}
    assert len(by_source) == 102
    weight = by_source["netfclip.0.weight"]
    assert weight.target == "video_encoder.channel_conv.0.weight"
    assert (weight.shape, weight.result_shape) == ((512, 512), (512, 512, 1))
    assert [s.name for s in weight.transform] == ["unsqueeze"]
    assert by_source["netfcaud.1.running_var"].target == "audio_encoder.channel_conv.1.running_var"
    assert by_source["netfcaud.3.weight"].result_shape == (1024, 512, 1)
    assert len(result.loaded) == 102 and not result.mismatched and not result.unexpected
    assert all(".channel_attn." in k or k.startswith(("sync_predictor", "temporal_smoother"))
               for k in result.missing)


def test_with_512_the_last_projection_is_skipped_and_reported(ruleset, checkpoint):
    model, plan, result = transfer(ruleset, checkpoint, 512)
    assert not plan.errors
    skipped = sorted(s.source for s in plan.skipped)
    assert skipped == ["netfcaud.3.bias", "netfcaud.3.weight", "netfclip.3.bias", "netfclip.3.weight"]
    assert all(s.pattern is None and s.rule is not None for s in plan.skipped)
    weight = next(m for m in plan.mismatched if m.source == "netfcaud.3.weight")
    assert (weight.action, weight.out_shape, weight.target_shape) == ("skip", (1024, 512, 1), (512, 512, 1))
    text = render_text(plan, ruleset)
    assert "skipped: netfcaud.3.weight -> audio_encoder.channel_conv.3.weight" in text
    assert "[1024, 512, 1] after its transform" in text
    assert "audio_encoder.channel_conv.3.weight" in result.missing
    assert "audio_encoder.channel_conv.0.weight" in result.loaded


def test_video_encoder_before_attention_equals_forward_lip_on_every_window(ruleset, checkpoint, original):
    model, _, _ = transfer(ruleset, checkpoint, 1024)
    frames = 7
    video = torch.randn(1, 3, frames, 224, 224, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours = model.video_encoder.channel_conv(model.video_encoder.trunk(video))  # [1, 1024, T − 4]
        assert ours.shape == (1, 1024, frames - 4)
        for t in range(frames - 4):
            theirs = original.forward_lip(video[:, :, t:t + 5])  # [1, 1024]
            assert theirs.abs().max() > 0.1
            assert (ours[:, :, t] - theirs).abs().max() <= TOLERANCE, f"window {t}"


def test_audio_encoder_before_attention_equals_forward_aud_on_a_window(ruleset, checkpoint, original):
    model, _, _ = transfer(ruleset, checkpoint, 1024)
    mfcc = torch.randn(3, 1, 13, 20, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ours = model.audio_encoder.channel_conv(model.audio_encoder.trunk(mfcc))  # [3, 1024, 1]
        theirs = original.forward_aud(mfcc)  # [3, 1024]
    assert ours.shape == (3, 1024, 1)
    assert theirs.abs().max() > 0.1
    assert (ours[:, :, 0] - theirs).abs().max() <= TOLERANCE


def finetuned(ruleset, checkpoint) -> SyncNetFCN:
    model, _, _ = transfer(ruleset, checkpoint, 1024)
    gen = torch.Generator().manual_seed(6)
    with torch.no_grad():  # stands in for training: every floating tensor moves
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(torch.randn(value.shape, generator=gen) * 1e-3)
    return model


@pytest.mark.parametrize("with_source_specs", [False, True])
def test_export_of_a_finetuned_model_is_bit_exact(ruleset, checkpoint, with_source_specs):
    model = finetuned(ruleset, checkpoint)
    state = model.state_dict()
    specs = module_specs(SyncNet()) if with_source_specs else None
    exported = export_state_dict(ruleset, state, specs)
    assert len(exported) == 102
    for key, value in exported.items():
        branch, _, rest = key.partition(".")
        if branch in ("netcnnaud", "netcnnlip"):
            source = state[f"{'audio' if branch == 'netcnnaud' else 'video'}_encoder.conv_layers.{rest}"]
            assert torch.equal(value, source), key
    assert torch.equal(exported["netfclip.0.weight"], state["video_encoder.channel_conv.0.weight"][:, :, 0])
    assert not torch.equal(exported["netcnnlip.0.weight"], torch.load(checkpoint, weights_only=True)["netcnnlip.0.weight"])
    back = SyncNet()
    assert not back.load_state_dict(exported, strict=True).missing_keys
    # and the original model built from the export computes what the fine-tuned encoder does
    back.eval()
    mfcc = torch.randn(2, 1, 13, 20, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ours = model.audio_encoder.channel_conv(model.audio_encoder.trunk(mfcc))[:, :, 0]
        assert (ours - back.forward_aud(mfcc)).abs().max() <= TOLERANCE


def test_export_with_source_specs_leaves_a_skipped_projection_behind(ruleset, checkpoint):
    model, _, _ = transfer(ruleset, checkpoint, 512)
    with choose_format(checkpoint, builtin_formats()).open(checkpoint) as reader:
        plan = plan_export(ruleset, module_specs(model), reader.specs())
    assert len(plan.entries) == 98 and not plan.problems
    assert "audio_encoder.channel_conv.3.weight" in plan.left_behind


def test_cli_export_of_a_finetuned_model_with_new_layers(ruleset, checkpoint, tmp_path):
    """docs/syncnet.md's workflow: the whole fine-tuned SyncNetFCN (attention, predictor and smoother are
    new) exported by the command line; the new layers are left behind and listed, the rest loads strictly."""
    from cli_runner import mapper
    from safetensors.torch import load_file, save_file

    state = finetuned(ruleset, checkpoint).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "fcn.safetensors"))
    proc = mapper("export", "fcn.safetensors", "syncnet.safetensors", "--rules", "syncnet_fcn:to-fcn-full", "--verify",
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "exported 102 tensors to syncnet.safetensors" in proc.stdout
    # the rules declare them new: said as such, not as keys no rule produces
    assert "left behind 16 target keys (--unmatched keep writes them):\n  16 keys declared new (new: in the rules)" \
        in proc.stdout and "sync_predictor.0.weight" in proc.stdout
    exported = load_file(str(tmp_path / "syncnet.safetensors"))
    assert not SyncNet().load_state_dict(exported, strict=True).missing_keys
    assert torch.equal(exported["netcnnaud.0.weight"], state["audio_encoder.conv_layers.0.weight"])
