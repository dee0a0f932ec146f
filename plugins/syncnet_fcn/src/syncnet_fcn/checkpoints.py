"""Which model a sub-command runs, and where its weights come from.

- An original SyncNet checkpoint (``syncnet_v2.model``, any format mapper-core reads):
  ``--model original`` loads it as is; the FCN models get its conv trunks through a rule set
  (``to-fcn`` by default), and their new layers stay untrained.
- A training run folder written by ``python -m syncnet_fcn train`` (``run.json`` +
  ``model.safetensors``): the FCN it trained, built from the recorded configuration.
- Nothing: a SyncNet-shaped stand-in with a fixed seed (the real file cannot be downloaded
  here), said loudly, since its offsets mean nothing.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from mapper_core.errors import MapperError
from mapper_core.io.formats import open_checkpoint
from mapper_core.plan import make_plan
from mapper_core.train.apply import apply_to_module, module_specs

from .attention import DEFAULT_ATTENTION_RADIUS, SyncNetFCN_WithAttention
from .errors import InputError
from .fcn import DEFAULT_SQUEEZE_RADIUS, SyncNetFCN
from .models import SyncNet, make_syncnet_checkpoint
from .transfer import syncnet_rules

RUN_CONFIG = "run.json"
RUN_WEIGHTS = "model.safetensors"
FCN_KINDS = ("fcn", "attention")
UNTRAINED = ("the FCN's new layers (channel_conv, the correlation head) are untrained, so its "
             "offsets mean nothing yet; train them: python -m syncnet_fcn train DATA --checkpoint "
             "syncnet_v2.model --out RUN, then sync --checkpoint RUN")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild an FCN: kept in a run's ``run.json``."""

    kind: str = "fcn"
    embedding_dim: int = 512
    max_offset: int = 15
    squeeze_radius: int | None = DEFAULT_SQUEEZE_RADIUS
    attention_radius: int | None = DEFAULT_ATTENTION_RADIUS
    num_heads: int = 8
    audio_mode: str = "clip"

    def build(self, seed: int = 0) -> SyncNetFCN:
        """The model, its fresh layers initialised from ``seed`` (the global RNG is left alone)."""
        if self.kind not in FCN_KINDS:
            raise InputError(f"model kind {self.kind!r}: use one of {list(FCN_KINDS)}")
        common = dict(embedding_dim=self.embedding_dim, max_offset=self.max_offset,
                      squeeze_radius=self.squeeze_radius, audio_mode=self.audio_mode)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if self.kind == "attention":
                return SyncNetFCN_WithAttention(num_heads=self.num_heads,
                                                attention_radius=self.attention_radius, **common)
            return SyncNetFCN(**common)

    @classmethod
    def from_json(cls, data: dict, origin: Path) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InputError(f"{origin}: unknown model settings {sorted(unknown)}; was it written "
                             f"by a newer syncnet-fcn?")
        return cls(**data)

    def as_json(self) -> dict:
        return asdict(self)


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint file, through mapper-core's readers (weights_only)."""
    if not path.exists():
        raise InputError(f"{path}: no such checkpoint; check the path")
    try:
        with open_checkpoint(path) as reader:
            return {key: reader.get_tensor(key) for key in reader.specs()}
    except MapperError as exc:
        raise InputError(f"{path}: cannot read it as a checkpoint ({exc})") from None


def is_original(state: dict[str, torch.Tensor]) -> bool:
    return any(key.startswith(("netcnnaud.", "netcnnlip.")) for key in state)


def transfer_trunks(model: SyncNetFCN, checkpoint: Path, rules: str = "to-fcn") -> None:
    """Load an original SyncNet checkpoint into ``model`` by the named rule set (plan first:
    collisions and shape mismatches are refused before any tensor moves)."""
    ruleset = syncnet_rules(rules)
    try:
        with open_checkpoint(checkpoint) as reader:
            plan = make_plan(reader.specs(), ruleset, module_specs(model),
                             source_origin=str(checkpoint), target_origin=type(model).__name__)
            apply_to_module(plan, model, reader)
    except MapperError as exc:
        raise InputError(f"{checkpoint}: cannot transfer it into {type(model).__name__} ({exc})") from None


def stand_in(folder: Path) -> Path:
    """A SyncNet-shaped checkpoint with seed 0, statistics at media scale, in ``folder``."""
    return make_syncnet_checkpoint(folder / "syncnet_standin.model", seed=0, media_scale=True)


def load_original(checkpoint: Path | None) -> tuple[SyncNet, list[str]]:
    """The original SyncNet for ``--model original``, with notes for the user."""
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        if checkpoint is None:
            checkpoint = stand_in(Path(tmp))
            notes.append("no --checkpoint: using a SyncNet-shaped stand-in with random weights "
                         "(seed 0); pass the real syncnet_v2.model for meaningful offsets")
        elif (checkpoint / RUN_CONFIG).exists() if checkpoint.is_dir() else False:
            raise InputError(f"{checkpoint}: is a trained FCN run; --model original needs an original "
                             f"SyncNet checkpoint (syncnet_v2.model); use --model fcn or attention")
        state = read_state(checkpoint)
    if not is_original(state):
        raise InputError(f"{checkpoint}: has no netcnnaud/netcnnlip tensors, so it is not an original "
                         f"SyncNet checkpoint; give syncnet_v2.model")
    model = SyncNet()
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"{checkpoint}: does not fit the original SyncNet ({str(exc)[:300]})") from None
    return model.eval(), notes


def read_run(folder: Path) -> tuple[ModelConfig, dict]:
    """(model configuration, the whole run.json) of a training run folder."""
    path = folder / RUN_CONFIG
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        config = data["model"]
    except FileNotFoundError:
        raise InputError(f"{folder}: has no {RUN_CONFIG}; give a folder written by "
                         f"`python -m syncnet_fcn train --out`, or a SyncNet checkpoint file") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: cannot read the run's settings ({exc}); the run folder is damaged") from None
    return ModelConfig.from_json(config, path), data


def load_fcn(checkpoint: Path | None, kind: str | None, audio_mode: str | None,
             rules: str = "to-fcn") -> tuple[SyncNetFCN, ModelConfig, list[str]]:
    """The FCN for ``sync``: from a run folder, from an original checkpoint, or the stand-in."""
    notes: list[str] = []
    if checkpoint is not None and checkpoint.is_dir():
        config, _ = read_run(checkpoint)
        if kind is not None and kind != config.kind:
            raise InputError(f"{checkpoint}: the run trained a {config.kind!r} model, not {kind!r}; "
                             f"drop --model or pass --model {config.kind}")
        if audio_mode is not None and audio_mode != config.audio_mode:
            notes.append(f"the run trained with audio mode {config.audio_mode!r}; running it with "
                         f"{audio_mode!r} as asked")
            config = ModelConfig(**{**config.as_json(), "audio_mode": audio_mode})
        model = config.build()
        state = read_state(checkpoint / RUN_WEIGHTS)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise InputError(f"{checkpoint / RUN_WEIGHTS}: does not fit the model in {RUN_CONFIG} "
                             f"({str(exc)[:300]})") from None
        return model.eval(), config, notes
    config = ModelConfig(kind=kind or "fcn", audio_mode=audio_mode or "clip")
    model = config.build()
    with tempfile.TemporaryDirectory() as tmp:
        if checkpoint is None:
            checkpoint = stand_in(Path(tmp))
            notes.append("no --checkpoint: the trunks come from a SyncNet-shaped stand-in with random "
                         "weights (seed 0)")
        elif not is_original(read_state(checkpoint)):
            raise InputError(f"{checkpoint}: is neither an original SyncNet checkpoint nor a training "
                             f"run folder; give syncnet_v2.model or the folder `train --out` wrote")
        transfer_trunks(model, checkpoint, rules)
    notes.append(UNTRAINED)
    return model.eval(), config, notes
