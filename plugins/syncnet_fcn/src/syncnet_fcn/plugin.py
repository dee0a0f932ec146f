"""The SyncNet plugin's hooks: the `to-fcn` and `to-fcn-full` rule sets and the three SyncNet models.

It uses only the public plugin API, exactly as an outside project would. Importing this
module must stay cheap (no torch): models are imported inside their factories.
"""
from __future__ import annotations

from importlib.resources import files
from typing import Any

from mapper_core.plugins import ModelFactory, RuleSetSource, hookimpl

from .verify_inputs import run_syncnet, run_syncnet_fcn


def _syncnet(**kwargs: Any):
    from . import SyncNet

    return SyncNet(**kwargs)


def _syncnet_fcn(**kwargs: Any):
    from . import SyncNetFCN

    return SyncNetFCN(**kwargs)


def _syncnet_fcn_attention(**kwargs: Any):
    from . import SyncNetFCN_WithAttention

    return SyncNetFCN_WithAttention(**kwargs)


@hookimpl
def mapper_rule_sets() -> list[RuleSetSource]:
    return [
        RuleSetSource(
            name="to-fcn",
            description="original SyncNet conv trunks into SyncNetFCN encoders; FC layers skipped, conv frozen",
            path=files(__package__) / "rules" / "to-fcn.yaml",
        ),
        RuleSetSource(
            name="to-fcn-full",
            description="to-fcn plus the FC heads into channel_conv (Linear → 1×1 Conv1d via unsqueeze); "
                        "the last projection is skipped unless embedding_dim=1024",
            path=files(__package__) / "rules" / "to-fcn-full.yaml",
        ),
    ]


@hookimpl
def mapper_models() -> list[ModelFactory]:
    return [
        ModelFactory("syncnet", _syncnet, "the original SyncNet (netcnnaud/netcnnlip trunks, netfcaud/netfclip heads)",
                     input_adapter=run_syncnet),
        ModelFactory("syncnet-fcn", _syncnet_fcn, "SyncNetFCN(embedding_dim=512, max_offset=15): fully convolutional",
                     input_adapter=run_syncnet_fcn),
        ModelFactory(
            "syncnet-fcn-attention", _syncnet_fcn_attention,
            "SyncNetFCN_WithAttention(embedding_dim=512, max_offset=15): adds temporal and cross-modal attention",
            input_adapter=run_syncnet_fcn,
        ),
    ]
