"""Stage 3b, train: apply a Plan to a state dict or an ``nn.Module`` (:mod:`.apply`), freeze
groups with their BatchNorm statistics (:mod:`.freeze`), progressive unfreezing
(:mod:`.schedule`) and pickle-free training checkpoints (:mod:`.state`). Needs torch
(the ``mapper-core[torch]`` extra).
"""
