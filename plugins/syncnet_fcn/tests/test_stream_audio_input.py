"""StreamSync.push_audio checks its samples as push_video checks frames: 16 kHz mono at int16
scale. Stereo is refused (flattened, it counted as twice the samples: audio time ran twice as
fast as the video's), and so are NaN, float audio in [-1, 1] and values beyond int16; each
error says what was expected and how to convert. A refused chunk is not counted."""
from __future__ import annotations

import numpy as np
import pytest

from syncnet_fcn.errors import InputError
from syncnet_fcn.fcn import SyncNetFCN
from syncnet_fcn.stream import StreamSync
from syncnet_fcn.synthetic import ClipSpec, render


@pytest.fixture(scope="module")
def model():
    return SyncNetFCN(embedding_dim=16, max_offset=1, squeeze_radius=1).eval()


@pytest.fixture(scope="module")
def clip():
    return render(ClipSpec(12, 0, seed=7))


@pytest.mark.parametrize("samples, message", [
    (np.zeros((1600, 2), np.int16), r"got int16 \[1600, 2\]: mix the channels down to one first \(samples\.mean"),
    (np.zeros((2, 1600), np.int16), r"axis=0 for \[channels, n\]"),
    (np.zeros((1600, 1), np.int16), r"one channel, so pass samples\.reshape\(-1\)"),
    (np.zeros((2, 2, 400), np.int16), r"expected 16 kHz mono samples \[n\] at int16 scale"),
    (np.array([0.0, np.nan, 3.0]), r"sample 1 is nan; samples must be finite"),
    (np.array([0.0, 5.0, -np.inf]), r"sample 2 is -inf"),
    (np.random.default_rng(0).uniform(-1, 1, 1600).astype(np.float32),
     r"all within \[-1, 1\]: float audio; scale it to int16, e\.g\. np\.clip\(samples \* 32768"),
    (np.array([0, 70000, -5], np.int32), r"values from -5 to 70000: beyond int16"),
    (np.array(["a", "b"]), r"int16 samples are needed"),
    (np.array([True, False]), r"int16 samples are needed"),
])
def test_bad_audio_is_refused_with_what_to_do(model, samples, message):
    stream = StreamSync(model)
    with pytest.raises(InputError, match=message) as caught:
        stream.push_audio(samples)
    assert str(caught.value).startswith("StreamSync.push_audio: expected 16 kHz mono samples [n] at int16 scale")
    assert stream.mfcc.samples == 0  # nothing of it was counted


def test_stereo_no_longer_runs_audio_time_twice_as_fast(model, clip):
    frames, audio = clip
    stream = StreamSync(model)
    stream.push_video(frames)
    with pytest.raises(InputError):
        stream.push_audio(np.stack([audio, audio], axis=1))
    stream.push_audio(np.stack([audio, audio], axis=1).mean(axis=1))  # the advice, followed
    assert stream.mfcc.samples == len(audio)


def test_int16_scale_samples_of_other_dtypes_give_the_same_steps(model, clip):
    frames, audio = clip
    results = []
    for samples in (audio, audio.astype(np.float64), audio.astype(np.int32), audio.astype(np.float32)):
        stream = StreamSync(model)
        stream.push_video(frames)
        steps = stream.push_audio(samples) + stream.push_audio(np.zeros(0, np.float32)) + stream.finish()
        results.append([step.probs for step in steps])
    assert len(results[0]) > 0
    for other in results[1:]:
        assert all((a == b).all() for a, b in zip(results[0], other, strict=True))


def test_digital_silence_in_float_is_accepted(model):
    stream = StreamSync(model)
    stream.push_audio(np.zeros(1600, np.float32))
    assert stream.mfcc.samples == 1600
