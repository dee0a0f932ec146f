"""``sync`` says what it analysed: the header counts the file's frames (the same for every
model) and how many the model could use; a truncated file gets a note; ``--vshift`` is refused
where it does not apply (the FCN models) and noted where it reaches past the clip (original)."""
from __future__ import annotations

import json

import pytest

from syncnet_media import syncnet, tiny_clip  # tests/helpers

FRAMES = 12


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return tiny_clip(tmp_path_factory.mktemp("notes") / "talk.mkv", frames=FRAMES, offset=2)


@pytest.mark.parametrize("extra", [["--model", "fcn"], ["--model", "original"], ["--stream"]])
def test_the_header_counts_the_files_frames_for_every_model(clip, extra):
    done = syncnet("sync", clip, *extra)
    assert done.returncode == 0, done.stderr
    [header] = [line for line in done.stdout.splitlines() if line.startswith(f"{clip}: ")]  # --stream: after the steps
    assert header.startswith(f"{clip}: {FRAMES} frames (0.48 s) at 25 fps")
    if "original" not in extra:  # the MFCC of 12 frames of audio covers 11
        assert ", 11 of them usable (0.44 s), model fcn" in header
    text = syncnet("sync", clip, *extra, "--json").stdout
    report = json.loads(text.splitlines()[-1] if "--stream" in extra else text)
    assert report["decoded_frames"] == FRAMES


def test_a_truncated_file_is_noted(clip, tmp_path):
    whole = tiny_clip(tmp_path / "long.mkv", frames=40)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[:len(data) // 2])
    done = syncnet("sync", cut)
    assert done.returncode == 0, done.stderr
    assert "note: the file says it lasts 1.60 s, but decoding stopped at" in done.stdout
    assert "(a truncated or damaged file?); only what was decoded is analysed" in done.stdout
    assert "decoding stopped" not in syncnet("sync", whole).stdout


def test_vshift_is_refused_for_the_fcn_models(clip):
    done = syncnet("sync", clip, "--vshift", 100)
    assert done.returncode == 2
    assert "--vshift sets the offset range of --model original" in done.stderr
    assert "drop --vshift or add --model original" in done.stderr


def test_vshift_past_the_clip_is_noted_for_the_original(clip):
    done = syncnet("sync", clip, "--model", "original", "--vshift", 100)
    assert done.returncode == 0, done.stderr
    assert (f"note: --vshift 100 reaches past the clip's {FRAMES - 5} steps: offsets beyond ±{FRAMES - 6} "
            "compare the video only with the zero padding") in done.stdout
    assert "reaches past" not in syncnet("sync", clip, "--model", "original", "--vshift", 3).stdout
