"""The seed's four strategies as a real training loop: per-step cross-entropy over offsets.

- ``frozen``: the rules' freeze groups are frozen (BatchNorm statistics too); the optimizer
  takes the trainable parameters with the rules' param groups (new layers at 1e-3).
- ``finetune``: everything trainable at one learning rate (the seed's 1e-4), the seed's
  strategy 2; start it from a finished ``frozen`` run with ``--init RUN`` as the seed advises.
  The trunks read raw pixels (0…255, all positive), so Adam's first step moves every weight of
  a filter the same way, by the rate. With the unit-scale stand-in, whose BatchNorm statistics
  make real frames ~100× larger than calibrated, 1e-4 threw a converged frozen run off
  (held-out accuracy to chance) where 1e-6 kept it; with statistics measured at media scale, as
  a real checkpoint's are, that has not been measured, so the default stays the seed's. If the
  loss jumps on the first fine-tuning epoch, lower ``--lr`` (``benchmarks/bench_lr.py``
  measures one step per rate).
- ``differential``: nothing frozen; the rules' param groups (trunks 1e-5, new layers 1e-3).
- ``progressive``: ``frozen`` plus the rules' ``schedule`` (the trunks join the same
  optimizer at epoch 10 at 0.1 × the base rate) through ``UnfreezeScheduler``.

Trainable trunks keep their BatchNorm statistics by default (``trunk_bn="frozen"``): their
weights learn, their running statistics stay the pretrained ones. The seed's
``unfreeze_all_layers`` lets them re-learn statistics from each batch instead
(``trunk_bn="train"``); with batches of a few crops those statistics are far from the
pretrained ones, and a model trained on frozen trunks collapses (measured: a frozen run's
held-out accuracy fell to 0 % and its loss rose from 0.1 to 10 on the first fine-tuning epoch).

A crop's trunk features are the whole clip's features at its steps: video steps are the same
either way (no temporal padding); audio steps are computed with the columns of context the
padded convs read, as StreamSync does, so a crop sees what the whole clip sees. A frozen
trunk therefore computes the same features every epoch, and while it is frozen they are
computed once per clip (in eval mode, the mode a frozen trunk runs in) and sliced: only the
new layers run per iteration. Once a trunk thaws, its cache is dropped.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mapper_core.train.apply import param_groups
from mapper_core.train.freeze import freeze, freeze_stats, norm_types, stats_frozen, unfreeze_all
from mapper_core.train.schedule import UnfreezeScheduler

from .errors import InputError
from .dataset import IGNORE, Example, sample_crop, step_labels
from .features import frames_tensor
from .fcn import SyncNetFCN
from .inference import eval_mode, summarise, video_trunk_features
from .models import AUDIO_WINDOW, MFCC_PER_FRAME, VIDEO_WINDOW
from .stream_stages import CLIP_COLUMNS_NEEDED, CLIP_CONTEXT_STEPS
from .transfer import syncnet_rules

STRATEGIES = ("frozen", "finetune", "differential", "progressive")
FINETUNE_LR = 1e-4  # the seed's; see the module docstring
TRUNK_BN = ("frozen", "train")


@dataclass
class Setup:
    """A model with its optimizer (and scheduler) built the same way at start and on resume."""

    model: SyncNetFCN
    optimizer: torch.optim.Optimizer
    scheduler: UnfreezeScheduler | None
    rules: object
    trunk_bn: str = "frozen"

    def after_unfreezing(self) -> None:
        """Keep the trunks' BatchNorm statistics fixed (unless ``trunk_bn == "train"``)."""
        if self.trunk_bn == "frozen":
            for trunk in (self.model.audio_encoder.conv_layers, self.model.video_encoder.conv_layers):
                for module in trunk.modules():
                    if isinstance(module, norm_types()):
                        freeze_stats(module)


def build_setup(model: SyncNetFCN, strategy: str, rules_name: str, lr: float | None,
                trunk_bn: str = "frozen") -> Setup:
    """Freeze and group ``model`` for ``strategy``; ``lr`` overrides the new layers' rate
    (and the single rate of ``finetune``); ``trunk_bn`` see the module docstring."""
    rules = syncnet_rules(rules_name)
    overrides = {"new_layers": {"lr": lr}} if lr is not None else None
    scheduler = None
    if strategy in ("frozen", "progressive"):
        freeze(model, rules)
        optimizer = torch.optim.Adam(param_groups(model, rules, trainable_only=True, overrides=overrides),
                                     lr=1e-3 if lr is None else lr)
        if strategy == "progressive":
            if not rules.schedule:
                raise InputError(f"rules {rules_name} have no schedule; progressive needs one (use to-fcn)")
            scheduler = UnfreezeScheduler(model, optimizer, rules)
    elif strategy == "finetune":
        unfreeze_all(model)
        optimizer = torch.optim.Adam(model.parameters(), lr=FINETUNE_LR if lr is None else lr)
    elif strategy == "differential":
        unfreeze_all(model)
        optimizer = torch.optim.Adam(param_groups(model, rules, overrides=overrides))
    else:
        raise ValueError(f"strategy {strategy!r} is not one of {list(STRATEGIES)}")
    setup = Setup(model, optimizer, scheduler, rules, trunk_bn)
    setup.after_unfreezing()
    return setup


def trunk_frozen(trunk: nn.Module) -> bool:
    """True when ``trunk`` cannot change: no trainable parameter, norm statistics frozen."""
    norms = [m for m in trunk.modules() if isinstance(m, norm_types())]
    return not any(p.requires_grad for p in trunk.parameters()) and all(stats_frozen(m) for m in norms)


def video_trunk_frozen(model: SyncNetFCN) -> bool:
    return trunk_frozen(model.video_encoder.conv_layers)


def audio_trunk_steps(model: SyncNetFCN, example: Example, start: int, steps: int) -> torch.Tensor:
    """Audio trunk steps ``start`` … ``start + steps − 1`` [512, steps] as the whole clip has
    them: the crop's columns plus the context the padded convs read (clip mode)."""
    window = model.audio_encoder.per_window
    first = start if window else max(0, start - CLIP_CONTEXT_STEPS)
    needed = AUDIO_WINDOW if window else CLIP_COLUMNS_NEEDED
    end = min(example.mfcc.shape[1], MFCC_PER_FRAME * (start + steps - 1) + needed)
    out = model.audio_encoder.trunk(example.mfcc[None, None, :, MFCC_PER_FRAME * first:end])[0]
    return out[:, start - first:start - first + steps]


class TrunkCache:
    """Whole-clip trunk features per clip and modality, kept while that trunk is frozen."""

    def __init__(self) -> None:
        self.features: dict[str, dict[str, torch.Tensor]] = {"audio": {}, "video": {}}

    def get(self, model: SyncNetFCN, example: Example, modality: str) -> torch.Tensor:
        store = self.features[modality]
        if example.name not in store:
            with eval_mode(model):
                store[example.name] = (model.audio_encoder.trunk(example.mfcc[None, None])[0]
                                       if modality == "audio" else video_trunk_features(model, example.frames)[0])
        return store[example.name]


@dataclass
class Trainer:
    """Runs iterations and evaluations over decoded clips."""

    setup: Setup
    train: list[Example]
    heldout: list[Example]
    crop_frames: int = 30
    batch: int = 2
    shift: bool = True
    cache: TrunkCache = field(default_factory=TrunkCache)

    @property
    def model(self) -> SyncNetFCN:
        return self.setup.model

    def prepare(self) -> int:
        """Compute the frozen trunks' features of every clip now (nothing for a trunk that
        trains); returns how many clips needed their video features."""
        computed = 0
        for modality in ("audio", "video"):
            if self._frozen(modality):
                for example in self.train + self.heldout:
                    computed += modality == "video" and example.name not in self.cache.features["video"]
                    self.cache.get(self.model, example, modality)
        return computed

    def _frozen(self, modality: str) -> bool:
        encoder = self.model.audio_encoder if modality == "audio" else self.model.video_encoder
        if trunk_frozen(encoder.conv_layers):
            return True
        self.cache.features[modality].clear()  # the trunk thawed: its cached features are stale
        return False

    def iteration(self) -> float:
        """One optimizer step on ``batch`` random crops; returns the loss."""
        model, k, length = self.model, self.model.max_offset, self.crop_frames
        steps = length - (VIDEO_WINDOW - 1)
        # drawn from torch's RNG, which the training state saves: a resumed run draws the
        # crops an uninterrupted one would have drawn
        rng = np.random.default_rng(int(torch.randint(2**62, (1,))))
        crops = [sample_crop(rng, self.train[i], int(i), length, k, self.shift)
                 for i in rng.integers(0, len(self.train), self.batch)]
        labels = torch.stack([step_labels(c.offset, steps, k) for c in crops])
        model.train()
        if self._frozen("audio"):
            audio = [self.cache.get(model, self.train[c.index], "audio")[:, c.audio:c.audio + steps] for c in crops]
        else:
            audio = [audio_trunk_steps(model, self.train[c.index], c.audio, steps) for c in crops]
        if self._frozen("video"):
            video = torch.stack([self.cache.get(model, self.train[c.index], "video")[:, c.video:c.video + steps]
                                 for c in crops])
        else:  # one batch, so that training BatchNorm sees the batch's statistics
            video = model.video_encoder.trunk(torch.cat([
                frames_tensor(self.train[c.index].frames[c.video:c.video + length]) for c in crops]))
        logits = model.from_trunks(torch.stack(audio), video, logits=True)[0]
        loss = nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE)
        self.setup.optimizer.zero_grad()
        loss.backward()
        self.setup.optimizer.step()
        return float(loss.detach())

    def evaluate(self) -> dict[str, float]:
        """Held-out clips, whole: clip accuracy (argmax of the mean probabilities), within ±1
        frame, per-step accuracy and loss over the steps whose true offset is in range."""
        model, k = self.model, self.model.max_offset
        exact = near = steps_right = steps_total = 0
        loss_sum = 0.0
        frozen_audio, frozen_video = self._frozen("audio"), self._frozen("video")
        with eval_mode(model):
            for example in self.heldout:
                audio = (self.cache.get(model, example, "audio") if frozen_audio
                         else model.audio_encoder.trunk(example.mfcc[None, None])[0])[None]
                video = (self.cache.get(model, example, "video") if frozen_video
                         else video_trunk_features(model, example.frames)[0])[None]
                logits = model.from_trunks(audio, video, logits=True)[0][0]
                result = summarise(model, torch.softmax(logits, dim=0))
                exact += result.offset == example.offset
                near += abs(result.offset - example.offset) <= 1
                labels = step_labels(example.offset, logits.shape[1], k)
                keep = labels != IGNORE
                steps_right += int((logits.argmax(dim=0)[keep] == labels[keep]).sum())
                steps_total += int(keep.sum())
                loss_sum += float(nn.functional.cross_entropy(logits.T[keep], labels[keep], reduction="sum"))
        count = max(1, len(self.heldout))
        return {"accuracy": exact / count, "within_1": near / count,
                "step_accuracy": steps_right / max(1, steps_total), "heldout_loss": loss_sum / max(1, steps_total)}


def train_epochs(trainer: Trainer, first_epoch: int, epochs: int, steps_per_epoch: int,
                 eval_every: int, deadline: float | None, report) -> list[dict]:
    """Epochs ``first_epoch`` … ``epochs − 1``; ``report(record)`` after each. Stops early at
    ``deadline`` (a time.monotonic() value), after evaluating where it stopped."""
    history = []
    started = time.monotonic()
    for epoch in range(first_epoch, epochs):
        if trainer.setup.scheduler is not None:
            changes = trainer.setup.scheduler.step(epoch)
            if changes:
                trainer.setup.after_unfreezing()
            for change in changes:
                report({"event": "unfroze", "epoch": epoch, "group": change.group, "lr": change.lr,
                        "tensors": len(change.added)})
        losses, stop = [], False
        for _ in range(steps_per_epoch):
            losses.append(trainer.iteration())
            if deadline is not None and time.monotonic() >= deadline:
                stop = True
                break
        record = {"epoch": epoch + 1, "iterations": len(losses), "loss": float(np.mean(losses)),
                  "seconds": round(time.monotonic() - started, 1)}
        if stop or (epoch + 1) % eval_every == 0 or epoch + 1 == epochs:
            record.update(trainer.evaluate())
            record["seconds_with_eval"] = round(time.monotonic() - started, 1)
        history.append(record)
        report(record)
        if stop:
            break
    return history
