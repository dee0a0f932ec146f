"""Square matrices, whose shape cannot say whether they are stored [out, in] (Linear) or [in, out]
(GPT-2's Conv1D), from checkpoint headers alone (no module types, as `mapper suggest a.pt b.pt`
sees them): they follow the non-square matrices paired around them. The suggested rules must make
the target compute what the source does, in both directions, and a plain Linear → Linear rename
must not gain a transpose."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from mapper_core.rules.load import parse_rules  # noqa: E402
from mapper_core.suggest import suggest  # noqa: E402
from mapper_core.train.apply import apply_to_module, module_specs, plan_for_module  # noqa: E402

D = 8


class Conv1D(nn.Module):
    """GPT-2's Conv1D: a Linear whose weight is stored [in, out]."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.3)
        self.bias = nn.Parameter(torch.randn(nf) * 0.3)

    def forward(self, x):
        return x @ self.weight + self.bias


class Block(nn.Module):
    """One transformer block's matrices: attention (qkv, a square projection) and an MLP whose up
    and down projections are each other's transposes. ``conv1d``: HF GPT-2's storage."""

    def __init__(self, conv1d: bool, names=("c_attn", "c_proj", "c_fc", "c_proj")):
        super().__init__()
        lin = (lambda i, o: Conv1D(o, i)) if conv1d else nn.Linear
        self.ln_1 = nn.LayerNorm(D)
        self.attn, self.mlp = nn.Module(), nn.Module()
        setattr(self.attn, names[0], lin(D, 3 * D))
        setattr(self.attn, names[1], lin(D, D))
        setattr(self.mlp, names[2], lin(D, 4 * D))
        setattr(self.mlp, names[3], lin(4 * D, D))
        self.names = names

    def forward(self, x):
        qkv, proj = (getattr(self.attn, n) for n in self.names[:2])
        up, down = (getattr(self.mlp, n) for n in self.names[2:])
        h = self.ln_1(x)
        x = x + proj(qkv(h)[..., :D] * torch.tanh(qkv(h)[..., D:2 * D]))
        return x + down(torch.relu(up(x)))


class Model(nn.Module):
    def __init__(self, conv1d: bool, names=("c_attn", "c_proj", "c_fc", "c_proj"), stack="h"):
        super().__init__()
        torch.manual_seed(len(names[0]) + conv1d)
        self.wte = nn.Embedding(20, D)
        setattr(self, stack, nn.ModuleList(Block(conv1d, names) for _ in range(2)))
        self.stack = stack

    def forward(self, idx):
        x = self.wte(idx)
        for block in getattr(self, self.stack):
            x = block(x)
        return x


def headers_only_transfer(source: nn.Module, target: nn.Module):
    """suggest from the two state dicts' headers (no types), plan against the real target, load."""
    result = suggest(module_specs(source), module_specs(target))
    plan = plan_for_module(module_specs(source), parse_rules(result.text, "s.yaml"), target)
    assert not plan.has_errors(strict=True)
    apply_to_module(plan, target, source.state_dict())
    return result, {m.source: [str(s) for s in m.transform] for m in plan.loadable}


@pytest.mark.parametrize("source_conv1d", [False, True], ids=["linear-to-gpt2", "gpt2-to-linear"])
def test_square_matrices_follow_the_transposed_layout_both_ways(source_conv1d):
    source, target = Model(source_conv1d).eval(), Model(not source_conv1d).eval()
    result, steps = headers_only_transfer(source, target)
    transpose = ["transpose(dim0=0, dim1=1)"]
    for key in ("h.0.attn.c_attn.weight", "h.1.attn.c_proj.weight", "h.0.mlp.c_fc.weight", "h.1.mlp.c_proj.weight"):
        assert steps[key] == transpose, key
    assert steps["h.1.attn.c_proj.bias"] == [] and steps["wte.weight"] == []
    square = [p.signals[-1] for p in result.pairing.pairs if p.source.endswith("attn.c_proj.weight")]
    assert square == [f"square matrix transposed like the other matrices of 'h.{i}.attn'" for i in (0, 1)]
    idx = torch.randint(0, 20, (2, 5))
    with torch.no_grad():
        assert torch.allclose(target(idx), source(idx), atol=1e-5)


@pytest.mark.parametrize("conv1d", [False, True], ids=["linear", "conv1d"])
def test_a_straight_rename_gets_no_transpose(conv1d):
    # up and down projections are each other's transposes here too; every matrix keeps its layout
    source = Model(conv1d).eval()
    target = Model(conv1d, names=("qkv", "proj", "fc1", "fc2"), stack="layers").eval()
    result, steps = headers_only_transfer(source, target)
    assert len(steps) == len(source.state_dict()) and all(s == [] for s in steps.values())
    assert "transpose" not in result.text
    idx = torch.randint(0, 20, (2, 5))
    with torch.no_grad():
        assert torch.allclose(target(idx), source(idx), atol=1e-5)
