"""A ResNet renamed the timm way (`layer1.0.conv1` → `stages.0.blocks.0.conv_a`, `bn1` → `norm_a`,
`fc` → `head.fc`), suggested from a state dict's headers against a target stored sorted like a
safetensors file: every key pairs, and the loaded target computes what the source does."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from mapper_core.rules.load import parse_rules  # noqa: E402
from mapper_core.suggest import suggest  # noqa: E402
from mapper_core.train.apply import apply_to_module, module_specs, plan_for_module  # noqa: E402


class Block(nn.Module):
    def __init__(self, c_in, c_out, names=("conv1", "bn1", "conv2", "bn2", "downsample")):
        super().__init__()
        self.names = names
        setattr(self, names[0], nn.Conv2d(c_in, c_out, 3, 2 if c_in != c_out else 1, 1, bias=False))
        setattr(self, names[1], nn.BatchNorm2d(c_out))
        setattr(self, names[2], nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False))
        setattr(self, names[3], nn.BatchNorm2d(c_out))
        if c_in != c_out:
            setattr(self, names[4], nn.Sequential(nn.Conv2d(c_in, c_out, 1, 2, bias=False), nn.BatchNorm2d(c_out)))

    def forward(self, x):
        conv_a, norm_a, conv_b, norm_b, short = (getattr(self, n, None) for n in self.names)
        y = torch.relu(norm_a(conv_a(x)))
        return torch.relu(norm_b(conv_b(y)) + (x if short is None else short(x)))


class ResNet(nn.Module):
    def __init__(self, w=4):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w)
        self.layer1 = nn.Sequential(Block(w, w), Block(w, w))
        self.layer2 = nn.Sequential(Block(w, 2 * w), Block(2 * w, 2 * w))
        self.fc = nn.Linear(2 * w, 10)

    def forward(self, x):
        x = self.layer2(self.layer1(torch.relu(self.bn1(self.conv1(x)))))
        return self.fc(x.mean((2, 3)))


class Stage(nn.Module):
    def __init__(self, *blocks):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)


class TimmLike(nn.Module):
    def __init__(self, w=4):
        super().__init__()
        names = ("conv_a", "norm_a", "conv_b", "norm_b", "shortcut")
        self.stem = nn.Module()
        self.stem.conv, self.stem.bn = nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w)
        self.stages = nn.Sequential(Stage(Block(w, w, names), Block(w, w, names)),
                                    Stage(Block(w, 2 * w, names), Block(2 * w, 2 * w, names)))
        self.head = nn.Module()
        self.head.fc = nn.Linear(2 * w, 10)

    def forward(self, x):
        x = torch.relu(self.stem.bn(self.stem.conv(x)))
        for stage in self.stages:
            x = stage.blocks(x)
        return self.head.fc(x.mean((2, 3)))


def test_a_timm_style_rename_pairs_every_key_and_computes_the_same():
    torch.manual_seed(0)
    source, target = ResNet(), TimmLike()
    with torch.no_grad():  # trained-looking statistics, so a BatchNorm loaded into the wrong place shows
        for m in source.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.uniform_(0.5, 2)
    source.eval(), target.eval()
    stored_sorted = dict(sorted(module_specs(target).items()))  # as a safetensors file has them
    result = suggest(module_specs(source), stored_sorted)
    assert result.summary()["pairs"] == len(source.state_dict()) and not result.pairing.ambiguous
    plan = plan_for_module(module_specs(source), parse_rules(result.text, "s.yaml"), target)
    assert not plan.has_errors(strict=True)
    apply_to_module(plan, target, source.state_dict())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(target(x), source(x), atol=1e-5)
