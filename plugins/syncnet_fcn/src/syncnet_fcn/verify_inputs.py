"""How `mapper verify` runs the SyncNet models on the same inputs (their ModelFactory input adapters).

verify's inputs are one window of each stream: MFCC [B, 1, 13, 20] and frames
[B, 3, 5, 224, 224]. The original SyncNet has no ``forward``: it embeds the two streams with
``forward_aud`` and ``forward_lip``. SyncNetFCN takes whole clips; a clip of one window (20 MFCC
columns, 5 frames) gives one step, whose trunk features equal the original's for that window
exactly (a lone window's zero padding is the clip's too), so the paired modules can be compared.
Importing this module is cheap: torch is only touched when a model runs.
"""
from __future__ import annotations

from typing import Any, Sequence


def _streams(inputs: Sequence[Any], model: str) -> tuple[Any, Any]:
    if len(inputs) != 2:
        raise ValueError(f"{model} takes two inputs, MFCC [B, 1, 13, 20] and frames [B, 3, 5, 224, 224] "
                         f"(--input 2x1x13x20 --input 2x3x5x224x224); got {len(inputs)}")
    return inputs[0], inputs[1]


def run_syncnet(model: Any, inputs: Sequence[Any]) -> tuple[Any, Any]:
    """The original: (audio embedding, video embedding) of one window each."""
    audio, video = _streams(inputs, "syncnet")
    return model.forward_aud(audio), model.forward_lip(video)


def run_syncnet_fcn(model: Any, inputs: Sequence[Any]) -> Any:
    """SyncNetFCN (or the attention variant) on a one-window clip."""
    audio, video = _streams(inputs, "syncnet-fcn")
    return model(audio, video)
