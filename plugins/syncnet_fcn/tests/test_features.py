"""MFCC as syncnet_python computes it, the same columns from a stream, and frame tensors."""
from __future__ import annotations

import numpy as np
import pytest
import python_speech_features
import torch

from syncnet_fcn.features import StreamingMFCC, frames_tensor, mfcc, mfcc_columns


def signal(samples: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(samples) * 3000).astype(np.int16)


def test_mfcc_is_python_speech_features_with_its_defaults():
    audio = signal(16000)
    reference = python_speech_features.mfcc(audio, 16000)  # what syncnet_python calls
    ours = mfcc(audio)
    assert ours.dtype == torch.float32 and ours.shape == (13, 99)
    assert torch.equal(ours, torch.from_numpy(reference.T.copy()).float())


@pytest.mark.parametrize("samples", [100, 400, 401, 560, 16000, 16123, 40007])
def test_column_count_follows_python_speech_features(samples):
    assert mfcc(signal(samples)).shape[1] == mfcc_columns(samples)


def test_exactly_t_frames_of_audio_give_4t_minus_1_columns():
    assert mfcc_columns(640 * 25) == 4 * 25 - 1


@pytest.mark.parametrize(("samples", "seed"), [(300, 0), (401, 1), (16123, 2), (32007, 3)])
def test_streaming_columns_equal_the_whole_signal_bit_for_bit(samples, seed):
    audio = signal(samples, seed)
    rng = np.random.default_rng(seed)
    stream, parts, start = StreamingMFCC(), [], 0
    while start < samples:
        size = int(rng.integers(1, 3000))
        parts.append(stream.push(audio[start:start + size]))
        start += size
    parts.append(stream.finish())
    assert torch.equal(torch.cat(parts, dim=1), mfcc(audio))
    assert stream.finish().shape == (13, 0)  # a second finish adds nothing
    with pytest.raises(RuntimeError, match="after finish"):
        stream.push(audio[:10])


def test_frames_tensor_keeps_values_and_channel_order():
    frames = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    tensor = frames_tensor(frames)
    assert tensor.shape == (1, 3, 3, 224, 224) and tensor.dtype == torch.float32
    assert tensor[0, 2, 1, 5, 7] == float(frames[1, 5, 7, 2])  # channel 2 stays channel 2 (R of BGR)
    with pytest.raises(ValueError, match="224, 224, 3"):
        frames_tensor(np.zeros((3, 112, 112, 3), np.uint8))
