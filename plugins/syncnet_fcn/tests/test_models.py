"""SyncNet, SyncNetFCN and SyncNetFCN_WithAttention: layouts, shapes, gradients."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from syncnet_fcn.attention import SyncNetFCN_WithAttention
from syncnet_fcn.fcn import OffsetCorrelation, SyncNetFCN
from syncnet_fcn.models import SyncNet, make_syncnet_checkpoint
from syncnet_keys import BRANCHES, renamed_trunks  # tests/helpers (pytest pythonpath)

FCN_VARIANTS = [SyncNetFCN, SyncNetFCN_WithAttention]

# DESIGN.md's SyncNet facts, written out independently of the trunk builders.
AUDIO_LAYOUT = [
    ("Conv2d", (1, 64, (3, 3), (1, 1), (1, 1))), ("BatchNorm2d", 64), ("ReLU", None),
    ("MaxPool2d", ((1, 1), (1, 1), 0)),
    ("Conv2d", (64, 192, (3, 3), (1, 1), (1, 1))), ("BatchNorm2d", 192), ("ReLU", None),
    ("MaxPool2d", ((3, 3), (1, 2), 0)),
    ("Conv2d", (192, 384, (3, 3), (1, 1), (1, 1))), ("BatchNorm2d", 384), ("ReLU", None),
    ("Conv2d", (384, 256, (3, 3), (1, 1), (1, 1))), ("BatchNorm2d", 256), ("ReLU", None),
    ("Conv2d", (256, 256, (3, 3), (1, 1), (1, 1))), ("BatchNorm2d", 256), ("ReLU", None),
    ("MaxPool2d", ((3, 3), (2, 2), 0)),
    ("Conv2d", (256, 512, (5, 4), (1, 1), (0, 0))), ("BatchNorm2d", 512), ("ReLU", None),
]
VIDEO_LAYOUT = [
    ("Conv3d", (3, 96, (5, 7, 7), (1, 2, 2), (0, 0, 0))), ("BatchNorm3d", 96), ("ReLU", None),
    ("MaxPool3d", ((1, 3, 3), (1, 2, 2), 0)),
    ("Conv3d", (96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1))), ("BatchNorm3d", 256), ("ReLU", None),
    ("MaxPool3d", ((1, 3, 3), (1, 2, 2), (0, 1, 1))),
    ("Conv3d", (256, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1))), ("BatchNorm3d", 256), ("ReLU", None),
    ("Conv3d", (256, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1))), ("BatchNorm3d", 256), ("ReLU", None),
    ("Conv3d", (256, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1))), ("BatchNorm3d", 256), ("ReLU", None),
    ("MaxPool3d", ((1, 3, 3), (1, 2, 2), 0)),
    ("Conv3d", (256, 512, (1, 6, 6), (1, 1, 1), (0, 0, 0))), ("BatchNorm3d", 512), ("ReLU", None),
]


def describe(module: nn.Module) -> tuple[str, object]:
    kind = type(module).__name__
    if kind.startswith("Conv"):
        return kind, (module.in_channels, module.out_channels, module.kernel_size,
                      module.stride, module.padding)
    if kind.startswith("BatchNorm"):
        return kind, module.num_features
    if kind.startswith("MaxPool"):
        as_tuple = (lambda v: v if isinstance(v, (int, tuple)) else tuple(v))
        return kind, (as_tuple(module.kernel_size), as_tuple(module.stride),
                      as_tuple(module.padding))
    return kind, None



def test_syncnet_state_dict_has_original_size():
    state = SyncNet().state_dict()
    assert len(state) == 102
    assert sum(t.numel() for t in state.values()) == 13_640_270
    assert {k.split(".")[0] for k in state} == {"netcnnaud", "netfcaud", "netfclip", "netcnnlip"}


@pytest.mark.parametrize(("trunk", "layout"), [("netcnnaud", AUDIO_LAYOUT),
                                               ("netcnnlip", VIDEO_LAYOUT)])
def test_syncnet_trunks_follow_design(trunk, layout):
    assert [describe(m) for m in getattr(SyncNet(), trunk)] == layout


def test_syncnet_forward_shapes():
    model = SyncNet().eval()  # eval: BatchNorm1d cannot train on a batch of one
    with torch.no_grad():
        assert model.forward_aud(torch.randn(2, 1, 13, 20)).shape == (2, 1024)
        frames = torch.randn(1, 3, 5, 224, 224)
        assert model.forward_lip(frames).shape == (1, 1024)
        assert model.forward_lipfeat(frames).shape == (1, 512)
    assert SyncNet(num_layers_in_fc_layers=256).netfcaud[3].out_features == 256


@pytest.mark.slow
def test_make_syncnet_checkpoint_is_plain_seeded_and_nontrivial(tmp_path):
    before = torch.random.get_rng_state()
    first = torch.load(make_syncnet_checkpoint(tmp_path / "a.model", seed=0), weights_only=True)
    assert torch.equal(torch.random.get_rng_state(), before)  # global RNG left alone
    again = torch.load(make_syncnet_checkpoint(tmp_path / "b.model", seed=0), weights_only=True)
    other = torch.load(make_syncnet_checkpoint(tmp_path / "c.model", seed=1), weights_only=True)
    assert isinstance(first, dict) and list(first) == list(SyncNet().state_dict())
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["netcnnaud.0.weight"], other["netcnnaud.0.weight"])
    SyncNet().load_state_dict(first)  # strict: names and shapes are the original ones
    for bn in ("netcnnaud.1", "netcnnaud.19", "netcnnlip.5", "netcnnlip.19", "netfclip.1"):
        assert first[f"{bn}.running_mean"].abs().max() > 1e-3
        assert (first[f"{bn}.running_var"] - 1).abs().max() > 1e-2
        assert (first[f"{bn}.weight"] - 1).abs().max() > 1e-2
        assert first[f"{bn}.bias"].abs().max() > 1e-2
        assert first[f"{bn}.num_batches_tracked"] > 0


@pytest.mark.slow
def test_media_scale_checkpoint_keeps_real_input_near_unit_scale(tmp_path):
    unit = torch.load(make_syncnet_checkpoint(tmp_path / "unit.model", seed=0), weights_only=True)
    media = torch.load(make_syncnet_checkpoint(tmp_path / "media.model", seed=0, media_scale=True),
                       weights_only=True)
    measured = {k for k in unit if k.endswith(("running_mean", "running_var"))}
    assert all(torch.equal(unit[k], media[k]) for k in unit if k not in measured)  # same weights
    assert all(not torch.equal(unit[k], media[k]) for k in measured)  # statistics of other input
    gen = torch.Generator().manual_seed(5)
    frames = torch.randint(0, 256, (1, 3, 5, 224, 224), generator=gen).float()  # as the original reads them
    mfcc = torch.randn(1, 1, 13, 20, generator=gen) * 10
    spread = {}
    for name, state in (("unit", unit), ("media", media)):
        model = SyncNet().eval()
        model.load_state_dict(state)
        with torch.no_grad():
            spread[name] = (model.netcnnlip(frames).std().item(), model.netcnnaud(mfcc).std().item())
    assert max(spread["media"]) < 20  # measured about 4 and 0.7
    assert spread["unit"][0] > 100 and spread["unit"][1] > 10  # about 430 and 26: far past calibration


@pytest.mark.parametrize("model_cls", FCN_VARIANTS)
def test_fcn_conv_layers_match_original_trunks(model_cls):
    source = {k: v.shape for k, v in renamed_trunks(SyncNet().state_dict()).items()}
    target = {k: v.shape for k, v in model_cls().state_dict().items()
              if ".conv_layers." in k}
    assert len(source) == 84
    assert source == target  # same keys, same shapes: zero unmatched, zero mismatched
    model, original = model_cls(), SyncNet()
    for branch, prefix in BRANCHES.items():
        ours = model.get_submodule(prefix)
        assert [describe(m) for m in ours] == [describe(m) for m in getattr(original, branch)]


@pytest.mark.parametrize("model_cls", FCN_VARIANTS)
def test_channel_conv_sits_in_the_places_of_the_fc_layers(model_cls):
    fc = SyncNet().state_dict()
    ours = model_cls(embedding_dim=1024).state_dict()
    for branch, head in (("audio_encoder", "netfcaud"), ("video_encoder", "netfclip")):
        for index in (0, 1, 3):
            for name in ("weight", "bias"):
                theirs = fc[f"{head}.{index}.{name}"].shape
                mine = ours[f"{branch}.channel_conv.{index}.{name}"].shape
                # A Linear weight [out, in] is a kernel-1 Conv1d weight [out, in, 1].
                assert mine == theirs or mine == (*theirs, 1)


@pytest.mark.slow
@pytest.mark.parametrize("model_cls", FCN_VARIANTS)
def test_fcn_forward_shapes_and_gradients(model_cls):
    torch.manual_seed(0)
    frames, k, embed = 9, 3, 64
    model = model_cls(embedding_dim=embed, max_offset=k)
    audio = torch.randn(1, 1, 13, 4 * frames)
    video = torch.randn(1, 3, frames, 224, 224)
    probs, audio_features, video_features = model(audio, video)
    assert probs.shape == (1, 2 * k + 1, frames - 4)
    assert audio_features.shape == video_features.shape == (1, embed, frames - 4)
    assert torch.allclose(probs.sum(dim=1), torch.ones(1, frames - 4))
    valid = model.correlation.valid_mask(frames - 4)
    assert (probs[0][~valid] == 0).all() and (probs[0][valid] > 0).all()

    (-probs[:, k].clamp_min(1e-9).log().mean()).backward()  # NLL of offset 0
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    modules = ["audio_encoder.conv_layers", "video_encoder.conv_layers",
               "audio_encoder.channel_conv", "video_encoder.channel_attn",
               "sync_predictor", "temporal_smoother"]
    if model_cls is SyncNetFCN_WithAttention:
        modules += ["temporal_attn_audio", "temporal_attn_video", "cross_attn"]
    for prefix in modules:
        norm = sum(p.grad.abs().sum() for p in model.get_submodule(prefix).parameters())
        assert norm > 0, prefix


def test_correlation_peaks_at_the_true_offset():
    k, steps, shift = 3, 8, 2
    video = torch.randn(2, 16, steps)
    # audio step t − shift carries video step t's content: offset o = shift.
    audio = torch.randn(2, 16, steps)
    audio[:, :, : steps - shift] = video[:, :, shift:]
    corr = OffsetCorrelation(k)(video, audio)
    assert corr.shape == (2, 2 * k + 1, steps)
    assert torch.allclose(corr[:, k + shift, shift:], torch.ones(2, steps - shift), atol=1e-6)
    valid = OffsetCorrelation(k).valid_mask(steps)
    assert (corr[:, ~valid] == 0).all()
    assert valid[k].all()  # offset 0 is always in range
    assert valid[0, 0] and not valid[0, steps - 1]  # offset −K reads audio t + K
    assert not valid[2 * k, 0] and valid[2 * k, steps - 1]  # offset +K reads audio t − K


def test_temporal_smoother_starts_as_identity():
    model = SyncNetFCN(embedding_dim=32, max_offset=2)
    x = torch.randn(1, 5, 7)
    assert torch.allclose(model.temporal_smoother(x), x)


def test_audio_is_cut_to_four_columns_per_frame():
    model = SyncNetFCN(embedding_dim=32, max_offset=1).eval()
    audio, video = torch.randn(1, 1, 13, 4 * 6 + 7), torch.randn(1, 3, 6, 224, 224)
    with torch.no_grad():
        longer = model(audio, video)[0]
        exact = model(audio[..., : 4 * 6], video)[0]
    assert torch.equal(longer, exact)


@pytest.mark.parametrize(("audio_shape", "video_shape", "message"), [
    ((1, 13, 36), (1, 3, 9, 224, 224), "audio_mfcc"),
    ((1, 1, 13, 35), (1, 3, 9, 224, 224), "≥36"),
    ((1, 1, 13, 36), (1, 3, 9, 112, 112), "224"),
    ((1, 1, 13, 36), (1, 3, 4, 224, 224), "T ≥ 5"),
])
def test_bad_input_shapes_are_named(audio_shape, video_shape, message):
    model = SyncNetFCN(embedding_dim=32, max_offset=1).eval()
    with pytest.raises(ValueError, match=message), torch.no_grad():
        model(torch.randn(audio_shape), torch.randn(video_shape))


def test_attention_heads_must_divide_embedding():
    with pytest.raises(ValueError, match="num_heads"):
        SyncNetFCN_WithAttention(embedding_dim=60, num_heads=8)
