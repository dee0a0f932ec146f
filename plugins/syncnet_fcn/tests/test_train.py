"""``python -m syncnet_fcn train``: a smoke run whose loss goes down, exact resume, the
strategies' optimizer groups, and the run folder that ``sync`` reads."""
from __future__ import annotations

import json

import pytest
import torch

from mapper_core.io.formats.aliases import load_safetensors
from mapper_core.train.freeze import stats_frozen
from syncnet_fcn.checkpoints import ModelConfig, transfer_trunks
from syncnet_fcn.dataset import IGNORE, Example, sample_crop, step_labels
from syncnet_fcn.errors import InputError
from syncnet_fcn.models import make_syncnet_checkpoint
from syncnet_fcn.synthetic import make_dataset
from syncnet_fcn.training import audio_trunk_steps, build_setup, video_trunk_frozen
from syncnet_media import syncnet  # tests/helpers

SMALL = ["--embedding-dim", 16, "--crop-frames", 8, "--batch", 4, "--steps-per-epoch", 4]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    make_dataset(root / "data", train=1, heldout=1, seconds=0.48, max_offset=2, seed=1)
    return root / "data", make_syncnet_checkpoint(root / "syncnet.model", seed=0)


def train(data, out, *extra):
    directory, checkpoint = data
    done = syncnet("train", directory, "--checkpoint", checkpoint, "--out", out, *SMALL, *extra)
    assert done.returncode == 0, done.stderr
    return done, json.loads((out / "run.json").read_text())


def test_smoke_the_loss_goes_down_and_the_run_is_saved(data, tmp_path):
    done, run = train(data, tmp_path / "run", "--epochs", 3)
    losses = [r["loss"] for r in run["history"]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert {"accuracy", "within_1", "step_accuracy", "heldout_loss"} <= set(run["history"][-1])
    assert run["model"]["max_offset"] == 2 and run["training"]["strategy"] == "frozen"
    assert "chance is 1/5" in done.stdout
    assert (tmp_path / "run" / "state" / "training_state.json").exists()
    report = syncnet("sync", data[0] / "heldout" / "clip-0000.mkv", "--checkpoint", tmp_path / "run", "--json")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["offsets"] == [-2, -1, 0, 1, 2]  # the run's model, not the default


def test_resume_continues_exactly_as_an_uninterrupted_run(data, tmp_path):
    train(data, tmp_path / "straight", "--epochs", 2)
    train(data, tmp_path / "split", "--epochs", 1)
    done, run = train(data, tmp_path / "split", "--epochs", 2, "--resume")
    assert "Resuming" in done.stdout and len(run["history"]) == 2
    straight = load_safetensors(tmp_path / "straight" / "model.safetensors")
    resumed = load_safetensors(tmp_path / "split" / "model.safetensors")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


@pytest.mark.parametrize(("strategy", "groups", "video_frozen"), [
    ("frozen", [("new_layers", 1e-3)], True),
    ("finetune", [(None, 1e-4)], False),
    ("differential", [("pretrained_conv", 1e-5), ("new_layers", 1e-3)], False),
    ("progressive", [("new_layers", 1e-3)], True),
])
def test_strategies_freeze_and_group_by_the_rules(data, strategy, groups, video_frozen):
    model = ModelConfig(embedding_dim=16, max_offset=2).build()
    transfer_trunks(model, data[1])
    setup = build_setup(model, strategy, "to-fcn", None)
    assert [(g.get("name"), g["lr"]) for g in setup.optimizer.param_groups] == groups
    assert video_trunk_frozen(model) is video_frozen
    assert (setup.scheduler is not None) is (strategy == "progressive")
    norms = [m for m in model.video_encoder.conv_layers.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert all(stats_frozen(m) for m in norms)  # trunk statistics stay the pretrained ones
    if strategy == "finetune":  # unless asked to re-learn them, as the seed's unfreeze_all_layers
        again = ModelConfig(embedding_dim=16, max_offset=2).build()
        build_setup(again, strategy, "to-fcn", None, trunk_bn="train")
        assert not any(stats_frozen(m) for m in again.modules())
    with pytest.raises(InputError, match="no schedule"):
        build_setup(ModelConfig(embedding_dim=16, max_offset=2).build(), "progressive", "to-fcn-full", None)


@pytest.mark.parametrize("audio_mode", ["clip", "window"])
def test_a_crops_audio_features_are_the_whole_clips(audio_mode):
    torch.manual_seed(0)
    model = ModelConfig(embedding_dim=16, max_offset=2, audio_mode=audio_mode).build().eval()
    example = Example("x", 0, frames=None, mfcc=torch.randn(13, 4 * 30) * 10)
    with torch.no_grad():
        whole = model.audio_encoder.trunk(example.mfcc[None, None])[0]
        for start, steps in ((0, 6), (1, 6), (7, 10), (20, 6)):  # clip start, inside, clip end
            crop = audio_trunk_steps(model, example, start, steps)
            assert torch.allclose(crop, whole[:, start:start + steps], atol=1e-5, rtol=0)


def test_labels_and_shifted_crops():
    assert step_labels(1, 4, 2).tolist() == [IGNORE, 3, 3, 3]  # step 0 would read audio step −1
    example = Example("x", offset=2, frames=torch.zeros(20, 1).numpy(), mfcc=torch.zeros(13, 80))
    rng = __import__("numpy").random.default_rng(0)
    for _ in range(200):
        crop = sample_crop(rng, example, 0, 10, 3, shift=True)
        assert 0 <= crop.audio <= 10 and abs(crop.offset) <= 3
        assert crop.offset == 2 - (crop.video - crop.audio)  # moving the audio moves the offset


def test_bad_input_exits_2(data, tmp_path):
    for args, message in ((["train", tmp_path / "none"], "no such folder"),
                          (["train", data[0], "--resume"], "--resume needs --out"),
                          (["train", data[0], "--crop-frames", 3], "--crop-frames must be")):
        done = syncnet(*args)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
