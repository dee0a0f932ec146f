"""The baseline evaluation, read against syncnet_python's SyncNetInstance.evaluate."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from syncnet_fcn.features import frames_tensor
from syncnet_fcn.models import SyncNet
from syncnet_fcn.original import evaluate_original, offset_distances, summarise_distances, window_count


def test_distances_compare_video_t_with_audio_t_minus_offset():
    torch.manual_seed(0)
    video, audio, v = torch.randn(6, 8), torch.randn(6, 8), 2
    dists = offset_distances(video, audio, v)
    padded = torch.cat([torch.zeros(v, 8), audio, torch.zeros(v, 8)])
    for t in range(6):
        expected = torch.nn.functional.pairwise_distance(video[t].repeat(2 * v + 1, 1), padded[t:t + 2 * v + 1])
        assert torch.equal(dists[t], expected)


def test_readout_of_a_known_table():
    v = 2
    dists = torch.full((12, 5), 10.0)
    dists[:, 1] = 4.0  # column 1 = offset v − 1 = +1 everywhere
    dists[3, 4] = 1.0  # one step prefers column 4 (offset −2)
    result = summarise_distances(dists, v)
    assert result.offset == 1
    assert result.min_dist == pytest.approx(4.0)
    assert result.confidence == pytest.approx(10.0 - 4.0)  # median − minimum of the mean
    assert result.offsets[3] == -2 and set(result.offsets) == {1, -2}
    assert result.confidences[0] == pytest.approx(10.0 - 4.0)
    assert len(result.smoothed_confidences) == 12


def test_window_count_leaves_out_the_last_window_as_the_original_does():
    assert window_count(frames=30, samples=30 * 640) == 25  # min_length − 5
    assert window_count(frames=30, samples=20 * 640) == 15  # the shorter stream decides
    assert window_count(frames=5, samples=5 * 640) == 0


def test_each_window_goes_through_forward_lip_and_forward_aud():
    torch.manual_seed(0)
    model = SyncNet().eval()
    frames = np.random.default_rng(0).integers(0, 256, (8, 224, 224, 3), dtype=np.uint8)
    mfcc = torch.randn(13, 31) * 10
    result = evaluate_original(model, mfcc, frames, samples=8 * 640, vshift=3, batch_size=2)
    assert result.dists.shape == (3, 7)
    with torch.no_grad():
        video = torch.cat([model.forward_lip(frames_tensor(frames[t:t + 5])) for t in range(3)])
        audio = torch.cat([model.forward_aud(mfcc[None, None, :, 4 * t:4 * t + 20]) for t in range(3)])
    assert torch.allclose(result.dists, offset_distances(video, audio, 3), rtol=1e-5)
    assert not model.training
    with pytest.raises(ValueError, match="no window"):
        evaluate_original(model, mfcc, frames[:5], samples=5 * 640)
