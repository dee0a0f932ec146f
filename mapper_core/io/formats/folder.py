"""A model folder given as a checkpoint: the weights file inside it.

``save_pretrained``, the hubs and most training loops write a folder (config, tokenizer, the
weights as ``model.safetensors``, an index and its shards, or ``pytorch_model.bin``). Given such a
folder, :func:`checkpoint_in` finds the one checkpoint in it:

- safetensors wins over torch when a folder holds both (``save_pretrained`` writes the same weights
  in either), whether as one file or as an index and its shards, and the others are named in a note;
- within a format, an index (``*.safetensors.index.json``, ``*.bin.index.json``) stands for the
  shards it names (``model-00001-of-00002.safetensors``);
- a trainer's state beside the weights (``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth``,
  ``training_args.bin``; Accelerate's ``optimizer_1.bin``, ``sampler.bin``) is never taken for them;
- two candidates of the same format are refused, each named, since only the user knows which one
  is meant (an index beside a file that is not one of its shards: a stale index, or a file saved
  after it); so are shards without their index.

A DCP folder (``.metadata`` inside) is a format of its own and never comes here. Nothing is read
but the names in the folder and the first bytes of files that some format claims.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

from ...errors import CheckpointError
from ...text import listed

Format = Any  # a base.Format: base opens this module when a folder is given, so no import back

MAX_ENTRIES = 10_000  # a folder with more is not a model folder; searching it is not worth the time
# What a trainer saves beside the weights, its state and not the model's: transformers' Trainer (optimizer.pt,
# scheduler.pt, scaler.pt, rng_state_N.pth, training_args.bin) and Accelerate's save_state (optimizer.bin,
# scheduler.bin, sampler.bin, one per prepared object: optimizer_1.bin, ...; random_states_N.pkl).
TRAINING_STATE = re.compile(r"(optimizer|scheduler|sampler|scaler)(_\d+)?\.(pt|pth|bin)|training_args\.bin"
                            r"|(rng_state|random_states)(_\d+)?\.(pt|pth|pkl)")
_INDEX = re.compile(r".*\.(safetensors|bin|pt|pth)\.index\.json", re.IGNORECASE)
_SHARD = re.compile(r".*-\d{5}-of-\d{5}\.[^.]+")


def checkpoint_in(folder: Path, formats: Sequence[Format], only: Format | None = None,
                  ) -> tuple[Path, Format, str | None]:
    """(the checkpoint file in ``folder``, its format, a note for the user or None), or a
    CheckpointError naming the folder, what it holds and what to do. ``only``: the format the user
    named (``--format``), whose checkpoint is read whatever else the folder holds."""
    try:
        with os.scandir(folder) as it:
            names = []
            for entry in it:
                if len(names) == MAX_ENTRIES:
                    raise CheckpointError(
                        f"{folder}: a folder of more than {MAX_ENTRIES:,} entries, not a model folder; give the "
                        "checkpoint file's own path")
                if not entry.name.startswith(".") and entry.is_file():  # follows links, as the hubs' caches use
                    names.append(entry.name)
    except OSError as exc:
        raise CheckpointError(f"{folder}: cannot list the folder: {exc.strerror or exc}") from None
    names.sort()
    weights = [n for n in names if not TRAINING_STATE.fullmatch(n.lower())]
    found = [(n, f) for n in weights if (f := _format_of(folder / n, formats)) is not None]
    shown = _without_indexed_shards(found)  # what to name: an index stands for its shards
    if only is not None:
        best = only
        if not any(f is only for _, f in found):
            held = f"; it holds {', '.join(n for n, _ in shown)}" if shown else ""
            raise CheckpointError(f"{folder}: a folder with no {only.name} checkpoint inside{held}; give the "
                                  "checkpoint file's own path, or leave --format out")
    elif not found:
        raise CheckpointError(_nothing(folder, names, formats))
    else:  # the format first (safetensors before torch), then, within it, an index over its shards
        order = {id(f): i for i, f in enumerate(formats)}
        best = min(found, key=lambda nf: order[id(nf[1])])[1]
    chosen = _checkpoints(folder, [n for n, f in shown if f is best], best)
    others = [(n, f.name) for n, f in shown if f is not best]
    note = None
    if others:
        kinds = sorted({kind for _, kind in others})
        note = (f"{folder}: read {chosen}, its {best.name} checkpoint; the folder also holds "
                f"{_listed([n for n, _ in others])} ({', '.join(kinds)}: the same weights, usually): give a file's "
                "own path to read it instead")
    return folder / chosen, best, note


def _listed(names: list[str]) -> str:
    return listed(names, 6)


def _format_of(path: Path, formats: Sequence[Format]) -> Format | None:
    """The format of the file ``path`` in a folder, when it holds weights: its name must be one a
    format claims (so a README is never opened), and its content what a format's sniffer
    recognises (so ``tokenizer.model``, a sentencepiece file, is no torch ``.model``); a format
    without a sniffer goes by the name alone. Spec files (any ``.json``: config, tokenizer) are never
    weights here."""
    usable = [f for f in formats if f.name != "spec-json"]
    claimers = [f for f in usable if f.claims(path)]
    if not claimers and not _INDEX.fullmatch(path.name):
        return None
    for f in usable:
        if f.sniff is not None and f.sniff(path):
            return f
    return next((f for f in claimers if f.sniff is None), None)


def _without_indexed_shards(found: list[tuple[str, Format]]) -> list[tuple[str, Format]]:
    """``found`` without the shards of a format that has an index in the folder."""
    indexed = {id(f) for n, f in found if _INDEX.fullmatch(n)}
    return [(n, f) for n, f in found if id(f) not in indexed or _INDEX.fullmatch(n) or not _SHARD.fullmatch(n)]


def _checkpoints(folder: Path, names: list[str], fmt: Format) -> str:
    """The one checkpoint among ``names``, the folder's files of one format with an index standing
    for its shards (:func:`_without_indexed_shards`): an index or a single file. Two indexes, an
    index beside a file that is not one of its shards (a stale index, or a file saved after it), two
    files, or shards without their index are refused, each named: only the user knows which one is
    meant."""
    if len(names) == 1:
        return names[0]
    indexes = [n for n in names if _INDEX.fullmatch(n)]
    loose = [n for n in names if n not in indexes]
    if not indexes and all(_SHARD.fullmatch(n) for n in loose):
        index = "safetensors" if fmt.name == "safetensors" else "bin"
        raise CheckpointError(
            f"{folder}: holds {_listed(loose)}, the shards of a {fmt.name} checkpoint, but no index naming them "
            f"(*.{index}.index.json); copy the index from where the shards came from, or give one shard's own "
            "path to read that shard alone")
    kind = ("indexes of sharded checkpoints" if not loose else "checkpoints" if not indexes
            else "checkpoints: an index of shards and a file that is not one of them")
    raise CheckpointError(f"{folder}: holds {len(names)} {fmt.name} {kind} ({_listed(indexes + loose)}); "
                          "mapper-core does not guess which one is meant: give its own path")


def _nothing(folder: Path, names: list[str], formats: Sequence[Format]) -> str:
    state = [n for n in names if TRAINING_STATE.fullmatch(n.lower())]
    suffixes = sorted({s for f in formats if f.name != "spec-json" for s in f.suffixes} - {".metadata"}
                      | {".bin.index.json"})
    held = f" ({', '.join(state)} {'is' if len(state) == 1 else 'are'} a trainer's state, not weights: give " \
           "a file's own path to read it anyway)" if state else ""
    return (f"{folder}: a folder with no checkpoint inside that mapper-core recognises{held}; looked for a "
            f"DCP .metadata and for files named *{', *'.join(suffixes)}. Give the checkpoint file's own path, "
            "or --format NAME if it is in a format a plugin reads")
