"""Synthetic clips carry the offset the manifest says, with the sign the models use."""
from __future__ import annotations

import json

import numpy as np
import pytest

from syncnet_fcn.media import read_clip
from syncnet_fcn.synthetic import MANIFEST, ClipSpec, make_dataset, render
from syncnet_media import syncnet  # tests/helpers


def measured_offset(frames: np.ndarray, audio: np.ndarray, max_offset: int) -> int:
    """Mouth opening (dark pixels per frame) against loudness (RMS per frame): the shift o
    that best matches frame t with audio frame t − o, found without any model."""
    opening = (frames.astype(int).sum(axis=3) < 150).sum(axis=(1, 2)).astype(float)
    loudness = np.sqrt((audio[:len(frames) * 640].astype(float).reshape(len(frames), 640) ** 2).mean(axis=1))
    scores = {}
    for o in range(-max_offset, max_offset + 1):
        t = np.arange(max(0, o), min(len(frames), len(frames) + o))
        scores[o] = np.corrcoef(opening[t], loudness[t - o])[0, 1]
    return max(scores, key=scores.get)


@pytest.mark.parametrize("offset", [-4, 0, 3])
def test_rendered_clip_shows_the_sound_offset_frames_later(offset):
    frames, audio = render(ClipSpec(75, offset, seed=11))
    assert frames.shape == (75, 224, 224, 3) and audio.shape == (75 * 640,)
    assert measured_offset(frames, audio, 6) == offset


def test_make_dataset_writes_clips_and_a_manifest_that_agree(tmp_path):
    manifest = make_dataset(tmp_path, train=2, heldout=1, seconds=1.6, max_offset=3, seed=5)
    saved = json.loads((tmp_path / MANIFEST).read_text())
    assert saved == manifest and saved["max_offset"] == 3 and saved["fps"] == 25
    assert [c["split"] for c in saved["clips"]] == ["train", "train", "heldout"]
    for entry in saved["clips"]:
        clip = read_clip(tmp_path / entry["file"])
        assert len(clip.frames) == entry["frames"] == 40
        assert measured_offset(clip.frames, clip.audio, 3) == entry["offset"]


def test_make_data_command_and_its_refusals(tmp_path):
    done = syncnet("make-data", tmp_path / "d", "--train", 1, "--heldout", 1, "--seconds", 0.6,
                   "--max-offset", 2)
    assert done.returncode == 0, done.stderr
    assert "Wrote 2 clips" in done.stdout
    again = syncnet("make-data", tmp_path / "d", "--train", 1, "--max-offset", 2, "--seconds", 0.6)
    assert again.returncode == 2 and "--force" in again.stderr
    short = syncnet("make-data", tmp_path / "e", "--seconds", 0.4)
    assert short.returncode == 2 and "at least 35 frames" in short.stderr
    assert "Traceback" not in again.stderr + short.stderr
