"""Training that learns: held-out offset accuracy over a few minutes of CPU training.

Runs the real commands (``make-data``, ``train``) in child processes and prints each run's
curve from its ``run.json``. The runs:

- ``frozen``: transferred trunks frozen, new layers trained (the seed's strategy 1);
- ``finetune``: everything at the default (the seed's 1e-4), started from the ``frozen`` run
  (the seed's strategy 2, "after strategy 1 converges");
- ``finetune-lr-1e-6``: the same at 1e-6 (see ``syncnet_fcn.training`` on why it may matter);
- ``finetune-from-transfer``: the default rate straight from the transferred trunks.

Chance is 1/31 (offsets −15…15).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import table  # noqa: E402

DATA = ["--train", "40", "--heldout", "16", "--seconds", "2.4", "--seed", "1"]


def syncnet(*args: object) -> None:
    command = [sys.executable, "-m", "syncnet_fcn", *map(str, args)]
    print("  $ " + " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)


def curve(run: Path) -> dict:
    doc = json.loads((run / "run.json").read_text())
    return {"history": doc["history"], "feature_seconds": doc.get("feature_seconds")}


def show(name: str, run: dict) -> None:
    history = run["history"]
    rows = [[r["epoch"], f"{r.get('seconds_with_eval', r['seconds']) / 60:.1f}", f"{r['loss']:.3f}",
             f"{100 * r['accuracy']:.0f}%" if "accuracy" in r else "",
             f"{100 * r['within_1']:.0f}%" if "within_1" in r else "",
             f"{100 * r['step_accuracy']:.0f}%" if "step_accuracy" in r else ""] for r in history]
    extra = (f" (frozen trunk features computed once first: {run['feature_seconds']:.0f} s)"
             if run["feature_seconds"] else "")
    print(f"{name}{extra}:")
    print(table(rows, ["epoch", "minutes", "train loss", "held-out offset", "within ±1", "per step"]))


def run(work: Path, checkpoint: Path, frozen_minutes: float, finetune_minutes: float,
        from_transfer: bool = True) -> dict:
    data = work / "synth"
    if not (data / "manifest.json").exists():
        syncnet("make-data", data, *DATA)
    runs = work / "runs"
    common = ["--checkpoint", checkpoint]
    syncnet("train", data, *common, "--out", runs / "frozen", "--strategy", "frozen", "--epochs", 400,
            "--steps-per-epoch", 25, "--eval-every", 2, "--minutes", frozen_minutes)
    finetune = ["--strategy", "finetune", "--epochs", 100, "--steps-per-epoch", 3, "--batch", 2,
                "--minutes", finetune_minutes]
    syncnet("train", data, *common, "--out", runs / "finetune", *finetune, "--init", runs / "frozen")
    syncnet("train", data, *common, "--out", runs / "finetune-lr-1e-6", *finetune, "--init", runs / "frozen",
            "--lr", 1e-6)
    names = ["frozen", "finetune", "finetune-lr-1e-6"]
    if from_transfer:
        syncnet("train", data, *common, "--out", runs / "finetune-from-transfer", *finetune)
        names.append("finetune-from-transfer")
    results = {name: curve(runs / name) for name in names}
    for name, history in results.items():
        show(name, history)
    return results
