"""Plain key renaming for model tests that must not depend on the mapping engine."""
from __future__ import annotations

import torch

BRANCHES = {"netcnnaud": "audio_encoder.conv_layers", "netcnnlip": "video_encoder.conv_layers"}


def renamed_trunks(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """netcnnaud.N.* → audio_encoder.conv_layers.N.*, netcnnlip likewise; FC layers dropped."""
    out = {}
    for key, value in state.items():
        branch, _, rest = key.partition(".")
        if branch in BRANCHES:
            out[f"{BRANCHES[branch]}.{rest}"] = value
    return out
