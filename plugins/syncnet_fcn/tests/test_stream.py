"""StreamSync gives the whole clip's outputs from chunks, early, with bounded buffers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from syncnet_fcn.attention import SyncNetFCN_WithAttention
from syncnet_fcn.errors import InputError
from syncnet_fcn.features import mfcc
from syncnet_fcn.fcn import SyncNetFCN
from syncnet_fcn.inference import fcn_outputs
from syncnet_fcn.stream import StreamSync
from syncnet_fcn.synthetic import ClipSpec, render

K = 2


@pytest.fixture(scope="module")
def clip():
    return render(ClipSpec(38, 1, seed=3))  # 34 steps: enough for steps to leave before the end


def irregular_chunks(frames, audio, seed=0):
    """Audio and video in random sizes and a random interleaving, as a decoder might deliver them."""
    rng = np.random.default_rng(seed)
    f = a = 0
    while f < len(frames) or a < len(audio):
        if f < len(frames) and (a >= len(audio) or rng.random() < 0.5):
            size = int(rng.integers(1, 7))
            yield "video", frames[f:f + size]
            f += size
        else:
            size = int(rng.integers(1, 5000))
            yield "audio", audio[a:a + size]
            a += size


def streamed(model, frames, audio, seed=0):
    stream, steps, before, sizes = StreamSync(model), [], 0, []
    for kind, chunk in irregular_chunks(frames, audio, seed):
        steps += stream.push_video(chunk) if kind == "video" else stream.push_audio(chunk)
        sizes.append(stream.buffered())
    before = len(steps)
    steps += stream.finish()
    return steps, before, sizes


@pytest.mark.parametrize("audio_mode", ["clip", "window"])
def test_fcn_stream_equals_the_whole_clip(clip, audio_mode):
    frames, audio = clip
    torch.manual_seed(0)
    model = SyncNetFCN(embedding_dim=32, max_offset=K, squeeze_radius=2, audio_mode=audio_mode).eval()
    probs, audio_features, video_features = fcn_outputs(model, mfcc(audio), frames)
    steps, before, _ = streamed(model, frames, audio)
    assert [s.index for s in steps] == list(range(probs.shape[1]))
    assert 0 < before < len(steps)  # steps leave before the stream ends
    assert torch.equal(torch.stack([s.video_feature for s in steps], 1), video_features)
    assert torch.allclose(torch.stack([s.audio_feature for s in steps], 1), audio_features, atol=1e-5, rtol=0)
    assert torch.allclose(torch.stack([s.probs for s in steps], 1), probs, atol=1e-5, rtol=0)
    assert torch.equal(torch.stack([s.valid for s in steps], 1), model.correlation.valid_mask(probs.shape[1]))
    assert steps[3].time == pytest.approx(0.12) and -K <= steps[3].offset <= K and steps[3].confidence >= 0


def test_attention_stream_equals_the_whole_clip(clip):
    frames, audio = clip
    torch.manual_seed(0)
    model = SyncNetFCN_WithAttention(embedding_dim=32, max_offset=K, num_heads=4, squeeze_radius=1,
                                     attention_radius=1).eval()
    probs, audio_features, video_features = fcn_outputs(model, mfcc(audio), frames)
    steps, before, _ = streamed(model, frames, audio, seed=1)
    assert 0 < before and len(steps) == probs.shape[1]
    for got, want in ((torch.stack([s.probs for s in steps], 1), probs),
                      (torch.stack([s.video_feature for s in steps], 1), video_features),
                      (torch.stack([s.audio_feature for s in steps], 1), audio_features)):
        assert torch.allclose(got, want, atol=1e-5, rtol=0)


def test_buffers_stay_bounded_however_long_the_stream():
    frames, audio = render(ClipSpec(56, 0, seed=4))
    model = SyncNetFCN(embedding_dim=16, max_offset=1, squeeze_radius=1).eval()
    stream, sizes, emitted = StreamSync(model), [], 0
    for t in range(0, 56, 8):  # 8 frames and their audio at a time: the state repeats per chunk
        emitted += len(stream.push_video(frames[t:t + 8]))
        emitted += len(stream.push_audio(audio[t * 640:(t + 8) * 640]))
        sizes.append(stream.buffered())
    assert emitted >= 30
    assert sizes[4] == sizes[5] == sizes[6]  # steady state: nothing accumulates
    assert sizes[-1]["frames"] <= 12 and sizes[-1]["columns"] <= 64


def test_bad_streams_are_refused_clearly():
    model = SyncNetFCN(embedding_dim=16, max_offset=1, squeeze_radius=1).eval()
    frames, audio = render(ClipSpec(8, 0, seed=5))
    short = StreamSync(model)
    short.push_video(frames[:4])
    short.push_audio(audio[:4 * 640])
    with pytest.raises(InputError, match="at least 5"):
        short.finish()
    with pytest.raises(RuntimeError, match="finished"):
        short.push_audio(audio[:10])
    skewed = StreamSync(model, max_skew_seconds=0.1)
    with pytest.raises(InputError, match="video ran .* ahead"):
        skewed.push_video(frames)
    with pytest.raises(ValueError, match="uint8 frames"):
        StreamSync(model).push_video(frames.astype(np.float32))
    with pytest.raises(ValueError, match="finite radius"):
        StreamSync(SyncNetFCN(embedding_dim=16, max_offset=1, squeeze_radius=None))
