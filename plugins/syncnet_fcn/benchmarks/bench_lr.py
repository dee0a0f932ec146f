"""Which rate ``finetune`` tolerates: fine-tuning steps from a trained run, per learning rate.

    .venv/bin/python plugins/syncnet_fcn/benchmarks/bench_lr.py RUN DATA
        [--lr 1e-4 1e-5 1e-6] [--steps 3] [--clips 8]

Loads RUN (a converged ``frozen`` run), makes everything trainable as ``train --strategy
finetune`` does, and takes ``--steps`` Adam steps at each rate, every step on the same batch
of crops: the loss before the first step and after each step. A rate the trained head
tolerates keeps the loss where it was (or lowers it); one that is too large throws it up.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run(run_folder: Path, data: Path, rates: list[float], steps: int, clips: int, batch: int = 2) -> dict:
    import torch

    from syncnet_fcn.checkpoints import RUN_WEIGHTS, read_run, read_state
    from syncnet_fcn.dataset import load_split, read_manifest
    from syncnet_fcn.training import Trainer, build_setup

    config, saved = read_run(run_folder)
    manifest = read_manifest(data)
    first = [c for c in manifest["clips"] if c["split"] == "train"][:clips]  # decoding all would dominate
    train = load_split(data, {**manifest, "clips": first}, "train", config.max_offset)
    results = {}
    for lr in rates:
        model = config.build()
        model.load_state_dict(read_state(run_folder / RUN_WEIGHTS))
        setup = build_setup(model, "finetune", saved["training"]["rules"], lr)
        trainer = Trainer(setup, train, [], saved["training"]["crop_frames"], batch, True)
        torch.manual_seed(0)
        same_batch = torch.random.get_rng_state()
        losses = []
        for _ in range(steps + 1):  # the loss each step reports is before its update
            torch.random.set_rng_state(same_batch)
            losses.append(trainer.iteration())
        results[f"{lr:g}"] = losses
        print(f"  lr {lr:g}: loss on one batch " + " → ".join(f"{x:.3g}" for x in losses), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a train --out folder (a converged frozen run)")
    parser.add_argument("data", type=Path, help="the make-data folder it was trained on")
    parser.add_argument("--lr", type=float, nargs="+", default=[1e-4, 1e-5, 1e-6])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--clips", type=int, default=8, help="train clips the batch is drawn from (8)")
    args = parser.parse_args(argv)
    run(args.run, args.data, args.lr, args.steps, args.clips)
    return 0


if __name__ == "__main__":
    sys.exit(main())
