"""suggest on small torch models built here: a renamed model with an inserted layer, Linear heads
that became 1x1 convs, and an HF-style GPT-2 block (Conv1D, transposed) mapped to Linear layers.
Each suggested file loads the source weights so that the target computes what the source does."""
from __future__ import annotations

import torch
from torch import nn

from mapper_core.suggest import suggest
from mapper_core.train.apply import apply_to_module, module_specs, module_types, plan_for_module
from mapper_core.rules.load import parse_rules

torch.manual_seed(0)


def transfer(source: nn.Module, target: nn.Module):
    """suggest → plan against the real target → load; returns the suggestion and the plan."""
    result = suggest(module_specs(source), module_specs(target), source_types=module_types(source),
                     target_types=module_types(target))
    plan = plan_for_module(module_specs(source), parse_rules(result.text, "s.yaml"), target)
    assert not plan.has_errors(strict=True)
    apply_to_module(plan, target, source.state_dict())
    return result, plan


class Renamed(nn.Module):
    """`features` became `encoder.layers`, with a new 1x1 conv in front (every index shifts by 1)."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.layers = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                                            nn.Conv2d(8, 16, 3), nn.BatchNorm2d(16))
        self.classifier = nn.Linear(16, 10)


class Original(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3),
                                      nn.BatchNorm2d(16))
        self.head = nn.Linear(16, 10)


def test_an_inserted_layer_is_a_shift():
    source, target = Original().eval(), Renamed().eval()
    result, plan = transfer(source, target)
    rules = {r.match: r.target for r in result.rules}
    assert rules[r"features\.(\d+)\.(\w+)"] == "encoder.layers.{1+1}.{2}"
    assert [p.pattern for p in result.new] == [r"encoder\.layers\.0\..*"]
    with torch.no_grad():  # the new layer made the identity: the rest computes what the source does
        target.encoder.layers[0].weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        target.encoder.layers[0].bias.zero_()
        x = torch.randn(2, 3, 9, 9)
        assert torch.allclose(target.encoder.layers(x), source.features(x))
        assert torch.equal(target.classifier.weight, source.head.weight)


class LinearHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


class ConvHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
        self.head = nn.Sequential(nn.Conv2d(8, 16, 1), nn.ReLU(), nn.Conv2d(16, 4, 1))


def test_linear_heads_become_1x1_convs_and_back():
    source, target = LinearHead(), ConvHead()
    result, plan = transfer(source, target)
    steps = {m.source: [str(s) for s in m.transform] for m in plan.loadable}
    assert steps["head.0.weight"] == ["unsqueeze(dim=2)", "unsqueeze(dim=3)"] and steps["head.0.bias"] == []
    x = torch.randn(2, 8)
    assert torch.allclose(target.head(x[:, :, None, None]).flatten(1), source.head(x), atol=1e-6)
    back = LinearHead()
    _, plan = transfer(target, back)
    assert [str(s) for m in plan.loadable if m.source == "head.2.weight" for s in m.transform] == \
        ["squeeze(dim=3)", "squeeze(dim=2)"]
    assert torch.equal(back.head[2].weight, source.head[2].weight)


class Conv1D(nn.Module):
    """GPT-2's Conv1D: a Linear whose weight is stored [in, out]."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.1)
        self.bias = nn.Parameter(torch.randn(nf) * 0.1)

    def forward(self, x):
        return x @ self.weight + self.bias


def _hf_block(d):
    block = nn.Module()
    block.ln_1, block.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
    block.attn, block.mlp = nn.Module(), nn.Module()
    block.attn.c_attn, block.attn.c_proj = Conv1D(3 * d, d), Conv1D(d, d)
    block.mlp.c_fc, block.mlp.c_proj = Conv1D(4 * d, d), Conv1D(d, 4 * d)
    return block


def _linear_block(d):
    block = nn.Module()
    block.norm1, block.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
    block.attn, block.mlp = nn.Module(), nn.Module()
    block.attn.qkv, block.attn.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
    block.mlp.fc1, block.mlp.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
    return block


def test_gpt2_conv1d_blocks_map_to_linear_layers_transposed():
    d, n = 8, 3
    source, target = nn.Module(), nn.Module()
    source.wte, source.wpe, source.ln_f = nn.Embedding(50, d), nn.Embedding(16, d), nn.LayerNorm(d)
    source.h = nn.ModuleList(_hf_block(d) for _ in range(n))
    target.tok_emb, target.pos_emb, target.norm_f = nn.Embedding(50, d), nn.Embedding(16, d), nn.LayerNorm(d)
    target.layers = nn.ModuleList(_linear_block(d) for _ in range(n))
    result, plan = transfer(source, target)
    targets = {m.source: (m.target, [str(s) for s in m.transform]) for m in plan.loadable}
    transposed = ["transpose(dim0=0, dim1=1)"]
    assert targets["h.2.attn.c_attn.weight"] == ("layers.2.attn.qkv.weight", transposed)
    assert targets["h.1.attn.c_proj.weight"] == ("layers.1.attn.proj.weight", transposed)  # square: by the layout
    assert targets["h.0.mlp.c_proj.weight"] == ("layers.0.mlp.fc2.weight", transposed)
    assert targets["h.0.ln_2.bias"] == ("layers.0.norm2.bias", [])
    assert targets["wte.weight"] == ("tok_emb.weight", [])
    x = torch.randn(5, d)
    for i in range(n):
        assert torch.allclose(target.layers[i].attn.proj(x), source.h[i].attn.c_proj(x), atol=1e-6)
        assert torch.allclose(target.layers[i].mlp.fc1(x), source.h[i].mlp.c_fc(x), atol=1e-6)
    assert any(r.match == r"h\.(\d+)\.attn\.c_attn\.weight" and r.target == "layers.{1}.attn.qkv.weight"
               for r in result.rules)
