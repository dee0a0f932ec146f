"""A Linear checkpoint, its target layout, and rules whose transform gets the shape wrong
([64, 32] → [32, 64] where the target wants [64, 32]): what `mapper convert` once wrote anyway."""
from __future__ import annotations

from pathlib import Path

RULES = """\
version: 1
name: wrong-transform
rules:
  - match: 'fc\\.weight'
    target: 'net.fc.weight'
    transform: [{reshape: {shape: [32, 64]}}]
  - match: 'fc\\.bias'
    target: 'net.fc.bias'
"""
MISMATCH_LINE = "shape mismatch: fc.weight -> net.fc.weight (rule 0, line 4): shape [64, 32] ([32, 64] after its transform) but target has [64, 32]"


def write_files(folder: Path) -> tuple[Path, Path, Path]:
    """(source, target, rules) in ``folder``."""
    import torch
    from safetensors.torch import save_file

    source, target, rules = folder / "src.safetensors", folder / "t.safetensors", folder / "rules.yaml"
    save_file({"fc.weight": torch.randn(64, 32), "fc.bias": torch.randn(64)}, str(source))
    save_file({"net.fc.weight": torch.zeros(64, 32), "net.fc.bias": torch.zeros(64)}, str(target))
    rules.write_text(RULES)
    return source, target, rules
