"""``python -m syncnet_fcn train DIR``: train SyncNetFCN on a make-data folder.

    python -m syncnet_fcn train data/synth --checkpoint syncnet_v2.model --out runs/frozen
                                [--strategy frozen|finetune|differential|progressive]
                                [--rules to-fcn|to-fcn-full] [--epochs 20] [--minutes M]
                                [--init RUN] [--resume]

The conv trunks come from ``--checkpoint`` through the rule set; ``--out RUN`` receives,
after every epoch, ``RUN/state/`` (the pickle-free training state: weights, optimizer,
scheduler, RNG), ``RUN/model.safetensors`` (the weights, for ``sync --checkpoint RUN``) and
``RUN/run.json`` (settings and the learning curve). ``--resume`` continues a run where it
stopped, exactly as if it had not. See :mod:`syncnet_fcn.training` for the strategies.
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch

from mapper_core.io.formats.writer import write_safetensors
from mapper_core.train import state as training_state

from .checkpoints import RUN_CONFIG, RUN_WEIGHTS, ModelConfig, read_run, read_state, stand_in, transfer_trunks
from .dataset import load_split, read_manifest
from .errors import InputError, run_command
from .training import STRATEGIES, Trainer, build_setup, train_epochs

RUN_FORMAT = "syncnet-fcn training run"
SETTINGS = ("strategy", "rules", "lr", "crop_frames", "batch", "shift", "steps_per_epoch", "seed", "trunk_bn")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m syncnet_fcn train", description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path, help="a folder written by `python -m syncnet_fcn make-data`")
    p.add_argument("--checkpoint", type=Path, help="the original syncnet_v2.model (default: a random stand-in)")
    p.add_argument("--out", type=Path, help="run folder for checkpoints and the curve (default: none kept)")
    p.add_argument("--strategy", choices=STRATEGIES, default="frozen")
    p.add_argument("--rules", choices=("to-fcn", "to-fcn-full"), default="to-fcn")
    p.add_argument("--model", choices=("fcn", "attention"), default="fcn")
    p.add_argument("--embedding-dim", type=int, default=128,
                   help="FCN embedding size (128: on the synthetic clips it learns steadier than the seed's 512)")
    p.add_argument("--audio-mode", choices=("clip", "window"), default="clip")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--steps-per-epoch", type=int, help="iterations per epoch (default: train clips / batch)")
    p.add_argument("--minutes", type=float, help="stop after this much training time")
    p.add_argument("--batch", type=int, default=8, help="crops per iteration (8)")
    p.add_argument("--crop-frames", type=int, default=30, help="frames per training crop (30)")
    p.add_argument("--no-shift", dest="shift", action="store_false",
                   help="keep audio and video crops together (no offset augmentation)")
    p.add_argument("--trunk-bn", choices=("frozen", "train"), default="frozen",
                   help="trainable trunks keep their BatchNorm statistics (frozen, default) or "
                        "re-learn them per batch as the seed's unfreeze_all_layers does (train)")
    p.add_argument("--lr", type=float, help="learning rate of the new layers (finetune: of everything, "
                                            "default 1e-4; lower it if the first epoch's loss jumps)")
    p.add_argument("--eval-every", type=int, default=1, help="evaluate held-out clips every N epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", type=Path, help="start from the weights of an earlier run (e.g. frozen → finetune)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    return p


def _settings(args: argparse.Namespace, steps: int) -> dict:
    return {"strategy": args.strategy, "rules": args.rules, "lr": args.lr, "crop_frames": args.crop_frames,
            "batch": args.batch, "shift": args.shift, "steps_per_epoch": steps, "seed": args.seed,
            "trunk_bn": args.trunk_bn}


def _check(args: argparse.Namespace, max_offset: int) -> None:
    if args.out is not None and not args.resume and (args.out / RUN_CONFIG).exists():
        raise InputError(f"{args.out}: already holds a run; pass --resume to continue it or pick another folder")
    if args.crop_frames < max_offset + 5 or args.batch < 1 or args.epochs < 1:
        raise InputError(f"--crop-frames must be ≥ {max_offset + 5} (offsets up to ±{max_offset} need that "
                         f"many), --batch and --epochs ≥ 1")


def _save(out: Path, setup, epoch: int, run: dict) -> None:
    training_state.save(out / "state", setup.model, setup.optimizer, setup.scheduler, epoch=epoch,
                        extra={"history": run["history"]}, ruleset=setup.rules)
    write_safetensors(out / RUN_WEIGHTS, {k: v.contiguous() for k, v in setup.model.state_dict().items()})
    (out / RUN_CONFIG).write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")


def _print(record: dict) -> None:
    if record.get("event") == "unfroze":
        print(f"  epoch {record['epoch']}: unfroze {record['group']} ({record['tensors']} tensors) at lr {record['lr']:g}")
        return
    line = f"epoch {record['epoch']:3d}  {record['iterations']:3d} it  loss {record['loss']:.3f}"
    if "accuracy" in record:
        line += (f"  held-out: offset {100 * record['accuracy']:5.1f}%  ±1 {100 * record['within_1']:5.1f}%  "
                 f"steps {100 * record['step_accuracy']:5.1f}%  loss {record['heldout_loss']:.3f}")
    print(f"{line}  [{record.get('seconds_with_eval', record['seconds']) / 60:.1f} min]", flush=True)


def run(args: argparse.Namespace) -> int:
    if args.resume and args.out is None:
        raise InputError("--resume needs --out RUN, the run to continue")
    if args.resume and args.init is not None:
        raise InputError("--resume continues a run with its own weights; drop --init")
    manifest = read_manifest(args.data)
    if args.resume:
        config, saved = read_run(args.out)
        for name in SETTINGS:  # a resumed run keeps its own settings
            setattr(args, name, saved["training"][name])
    elif args.init is not None:
        config, _ = read_run(args.init)
    else:
        config = ModelConfig(kind=args.model, embedding_dim=args.embedding_dim,
                             max_offset=int(manifest["max_offset"]), audio_mode=args.audio_mode)
    _check(args, config.max_offset)
    train, heldout = (load_split(args.data, manifest, s, config.max_offset) for s in ("train", "heldout"))
    if not train:
        raise InputError(f"{args.data}: the manifest lists no train clips")
    steps = args.steps_per_epoch or math.ceil(len(train) / args.batch)
    torch.manual_seed(args.seed)
    model = config.build(seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        transfer_trunks(model, args.checkpoint or stand_in(Path(tmp)), args.rules)
    if args.init is not None:
        model.load_state_dict(read_state(args.init / RUN_WEIGHTS))
    setup = build_setup(model, args.strategy, args.rules, args.lr, args.trunk_bn)
    first, history = 0, []
    if args.resume:
        resumed = training_state.load(args.out / "state", model, setup.optimizer, setup.scheduler)
        first, history = resumed.epoch, list(resumed.extra["history"])
        print(f"Resuming {args.out} at epoch {first + 1}")
    trainer = Trainer(setup, train, heldout, args.crop_frames, args.batch, args.shift)
    run_doc = {"format": RUN_FORMAT, "version": 1, "model": config.as_json(),
               "training": _settings(args, steps), "data": str(args.data),
               "checkpoint": str(args.checkpoint) if args.checkpoint else "stand-in (seed 0)",
               "init": str(args.init) if args.init else None, "history": history}
    print(f"Training {config.kind} ({args.strategy}, rules {args.rules}) on {len(train)} clips, "
          f"{len(heldout)} held out; chance is 1/{2 * config.max_offset + 1}; "
          f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable parameters")
    started = time.monotonic()
    computed = trainer.prepare()
    if computed:
        run_doc["feature_seconds"] = round(time.monotonic() - started, 1)
        print(f"Frozen video trunk: features of {computed} clips computed once in "
              f"{run_doc['feature_seconds']:.0f} s (not counted in --minutes)", flush=True)
    deadline = time.monotonic() + 60 * args.minutes if args.minutes else None

    def report(record: dict) -> None:
        _print(record)
        if "event" in record:
            return
        history.append(record)
        if args.out is not None:
            _save(args.out, setup, record["epoch"], run_doc)

    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    train_epochs(trainer, first, args.epochs, steps, args.eval_every, deadline, report)
    if args.out is not None:
        print(f"Run saved in {args.out} (sync --checkpoint {args.out}; resume with --resume)")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("python -m syncnet_fcn train", run, build_parser().parse_args(argv))
