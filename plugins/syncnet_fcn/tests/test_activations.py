"""Proof by activations: the FCN trunks, loaded from a SyncNet checkpoint, compute what
the original trunks compute — and the seed's naive index mapping would not.

Weights are moved by plain key renaming here (netcnnaud.N.* → audio_encoder.conv_layers.N.*),
independent of the mapping engine, so these tests check the models themselves.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.functional import cosine_similarity, normalize

from syncnet_fcn.attention import SyncNetFCN_WithAttention
from syncnet_fcn.fcn import SyncNetFCN
from syncnet_fcn.models import SyncNet, audio_trunk, make_syncnet_checkpoint
from syncnet_keys import renamed_trunks  # tests/helpers (pytest pythonpath)

TOLERANCE = 1e-5

pytestmark = pytest.mark.slow  # full SyncNet forward passes over whole clips



@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> dict[str, torch.Tensor]:
    path = make_syncnet_checkpoint(tmp_path_factory.mktemp("syncnet") / "syncnet.model", seed=0)
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def original(checkpoint) -> SyncNet:
    model = SyncNet()
    model.load_state_dict(checkpoint)
    return model.eval()


def loaded(model_cls: type[SyncNetFCN], checkpoint: dict[str, torch.Tensor]) -> SyncNetFCN:
    model = model_cls(embedding_dim=64, max_offset=3)
    result = model.load_state_dict(renamed_trunks(checkpoint), strict=False)
    assert result.unexpected_keys == []
    assert not [k for k in result.missing_keys if ".conv_layers." in k]
    return model.eval()


def test_running_stats_are_nontrivial(checkpoint):
    # Otherwise eval-mode BatchNorm is near-identity and a misplaced bias could hide.
    for key in ("netcnnaud.1", "netcnnaud.19", "netcnnlip.1", "netcnnlip.19"):
        assert checkpoint[f"{key}.running_mean"].abs().max() > 1e-3
        assert (checkpoint[f"{key}.running_var"] - 1).abs().max() > 1e-2


@pytest.mark.parametrize("model_cls", [SyncNetFCN, SyncNetFCN_WithAttention])
def test_video_trunk_equals_original_on_every_window(model_cls, checkpoint, original):
    frames = 9
    model = loaded(model_cls, checkpoint)
    video = torch.randn(1, 3, frames, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        clip = model.video_encoder.conv_layers(video)  # [1, 512, T − 4, 1, 1]
        assert clip.shape == (1, 512, frames - 4, 1, 1)
        assert torch.equal(model.video_encoder.trunk(video), clip.flatten(2))
        for t in range(frames - 4):
            window = original.netcnnlip(video[:, :, t:t + 5])  # [1, 512, 1, 1, 1]
            assert window.abs().max() > 0.1  # a real signal, not all zeros
            assert (clip[:, :, t] - window[:, :, 0]).abs().max() <= TOLERANCE, f"window {t}"


@pytest.mark.parametrize("model_cls", [SyncNetFCN, SyncNetFCN_WithAttention])
def test_audio_trunk_equals_original_on_one_window(model_cls, checkpoint, original):
    model = loaded(model_cls, checkpoint)
    mfcc = torch.randn(3, 1, 13, 20, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = model.audio_encoder.conv_layers(mfcc)
        theirs = original.netcnnaud(mfcc)
    assert ours.shape == theirs.shape == (3, 512, 1, 1)
    assert theirs.abs().max() > 0.1
    assert (ours - theirs).abs().max() <= TOLERANCE


def test_whole_clip_audio_steps_align_with_their_windows(checkpoint, original):
    """Step t of the audio trunk over 4T columns belongs to the window at column 4t.

    Not equal (the clip's neighbours replace the window's zero padding, see fcn.py), so the
    proof is: each step is most similar to its own window, and shifting the windows by one
    to four columns either way makes the match worse.
    """
    frames = 13
    model = loaded(SyncNetFCN, checkpoint)
    mfcc = torch.randn(1, 1, 13, 4 * frames + 8, generator=torch.Generator().manual_seed(3))
    clip_cols = slice(4, 4 + 4 * frames)  # 4 spare columns each side for shifted windows
    with torch.no_grad():
        clip = model.audio_encoder.trunk(mfcc[..., clip_cols])[0]  # [512, T − 4]

        def windows(shift: int) -> torch.Tensor:  # [512, T − 4]
            starts = [4 + 4 * t + shift for t in range(frames - 4)]
            return torch.cat([original.netcnnaud(mfcc[..., s:s + 20])[0, :, 0] for s in starts],
                             dim=1)

        aligned = windows(0)
    assert clip.shape == (512, frames - 4)
    similarity = normalize(clip, dim=0).T @ normalize(aligned, dim=0)  # [step, window]
    assert similarity.argmax(dim=1).tolist() == list(range(frames - 4))
    own = similarity.diagonal()
    assert own.mean() > 0.6
    with torch.no_grad():
        for shift in (-4, -2, -1, 1, 2, 4):
            assert cosine_similarity(clip, windows(shift), dim=0).mean() < own.mean(), shift


def naive_index_mapping(source: dict[str, torch.Tensor], target: nn.Module,
                        src_prefix: str, dst_prefix: str) -> list[tuple[str, str]]:
    """The seed's rule: netcnnaud.N.p → conv_layers.N.p, kept when the shapes agree."""
    wanted = target.state_dict()
    pairs = []
    for key, value in source.items():
        if key.startswith(src_prefix + "."):
            dst = dst_prefix + key[len(src_prefix):]
            if dst in wanted and wanted[dst].shape == value.shape:
                pairs.append((key, dst))
    return pairs


def test_naive_mapping_puts_conv_biases_into_batchnorm_when_one_module_is_missing(
        checkpoint, original):
    # Same audio trunk without the MaxPool(1×1) at index 3: every later index moves by one.
    shifted = nn.Module()
    shifted.conv_layers = nn.Sequential(*[m for i, m in enumerate(audio_trunk()) if i != 3])
    pairs = naive_index_mapping(checkpoint, shifted, "netcnnaud", "conv_layers")

    def kind(model: nn.Module, key: str) -> str:
        return type(model.get_submodule(key.rsplit(".", 1)[0])).__name__

    wrong_kind = {(src, kind(original, src), kind(shifted, dst))
                  for src, dst in pairs if kind(original, src) != kind(shifted, dst)}
    # Shapes agree (the filter let them through), module kinds do not.
    assert wrong_kind == {(f"netcnnaud.{i}.bias", "Conv2d", "BatchNorm2d")
                          for i in (4, 8, 11, 14, 18)}

    # Loaded anyway, the trunk computes something else than the original.
    shifted.conv_layers.load_state_dict(
        {dst[len("conv_layers."):]: checkpoint[src] for src, dst in pairs}, strict=False)
    mfcc = torch.randn(2, 1, 13, 20, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        diff = (shifted.conv_layers.eval()(mfcc) - original.netcnnaud(mfcc)).abs().max()
    assert diff > 1e-2

    # Our layout has no such pair: every mapped tensor lands in a module of the same kind.
    ours = SyncNetFCN(embedding_dim=64, max_offset=3).audio_encoder
    ours_pairs = naive_index_mapping(checkpoint, ours, "netcnnaud", "conv_layers")
    assert len(ours_pairs) == 42
    assert all(kind(original, s) == kind(ours, d) for s, d in ours_pairs)
