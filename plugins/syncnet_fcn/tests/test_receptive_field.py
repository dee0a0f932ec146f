"""What makes the FCN streamable: every output step reads a bounded stretch of time, the
per-window audio mode is the original's, and eval mode runs fixed calls."""
from __future__ import annotations

import pytest
import torch

from syncnet_fcn.attention import SyncNetFCN_WithAttention, band_mask
from syncnet_fcn.fcn import PREDICTOR_REACH, STEPS_PER_CALL, ChannelAttention, SyncNetFCN

K, RADIUS, STEPS = 2, 3, 40


def head_outputs(model, audio, video):
    with torch.no_grad():
        return model.eval().from_trunks(audio, video)[0][0]


@pytest.mark.parametrize(("model", "reach"), [
    (SyncNetFCN(embedding_dim=32, max_offset=K, squeeze_radius=RADIUS), RADIUS + K + PREDICTOR_REACH),
    (SyncNetFCN_WithAttention(embedding_dim=32, max_offset=K, num_heads=4, squeeze_radius=RADIUS,
                              attention_radius=2), RADIUS + 4 + K + PREDICTOR_REACH),
])
def test_a_step_never_reads_beyond_its_reach(model, reach):
    torch.manual_seed(0)
    audio, video = torch.randn(1, 512, STEPS), torch.randn(1, 512, STEPS)
    base = head_outputs(model, audio, video)
    for far in (0, STEPS - 1):  # change the first and the last step, of each modality
        for which in (audio, video):
            changed = which.clone()
            changed[:, :, far] += 5.0
            out = head_outputs(model, *((changed, video) if which is audio else (audio, changed)))
            moved = (out - base).abs().amax(dim=0) > 1e-6
            steps = torch.nonzero(moved).flatten()
            assert len(steps) and (steps - far).abs().max() <= reach


def test_local_squeeze_is_the_global_one_on_short_clips():
    torch.manual_seed(0)
    local, whole = ChannelAttention(16, radius=RADIUS), ChannelAttention(16, radius=None)
    whole.load_state_dict(local.state_dict())
    short, long = torch.randn(2, 16, RADIUS + 1), torch.randn(2, 16, 3 * RADIUS)
    assert torch.allclose(local(short), whole(short), atol=1e-6)
    assert not torch.allclose(local(long), whole(long), atol=1e-3)
    with pytest.raises(ValueError, match="radius"):
        ChannelAttention(16, radius=-1)


def test_band_mask():
    mask = band_mask(5, 1)
    assert mask.tolist()[2] == [True, False, False, False, True]
    assert band_mask(5, None) is None


def test_window_audio_mode_is_netcnnaud_on_each_window():
    torch.manual_seed(0)
    model = SyncNetFCN(embedding_dim=32, max_offset=K, audio_mode="window").eval()
    assert model.audio_mode == "window"
    mfcc = torch.randn(1, 1, 13, 4 * 9) * 10
    windows = torch.cat([mfcc[..., 4 * t:4 * t + 20] for t in range(5)])  # as syncnet_python slices
    with torch.no_grad():
        ours = model.audio_encoder.trunk(mfcc)
        original = model.audio_encoder.conv_layers(windows).flatten(1).T[None]
    assert ours.shape == (1, 512, 5) and torch.equal(ours, original)
    long = torch.randn(1, 1, 13, 4 * 80) * 10  # 76 windows: more than one call's worth
    with torch.no_grad():
        every = model.audio_encoder.conv_layers(long.unfold(3, 20, 4)[0].permute(2, 0, 1, 3)).flatten(1).T
        assert torch.allclose(model.audio_encoder.trunk(long)[0], every, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="audio_mode"):
        SyncNetFCN(audio_mode="frames")


def test_eval_mode_runs_the_video_trunk_in_fixed_calls():
    torch.manual_seed(0)
    model = SyncNetFCN(embedding_dim=32, max_offset=K).eval()
    frames = torch.rand(1, 3, STEPS_PER_CALL + 10, 224, 224) * 255
    with torch.no_grad():
        whole = model.video_encoder.trunk(frames)
        calls = torch.cat([model.video_encoder.conv_layers(frames[:, :, i:i + STEPS_PER_CALL + 4]).flatten(2)
                           for i in (0, STEPS_PER_CALL)], dim=2)
        one_call = model.video_encoder.conv_layers(frames).flatten(2)
    assert torch.equal(whole, calls)
    assert torch.allclose(whole, one_call, rtol=1e-4, atol=1e-3)  # the same sums in another order
