"""Siblings of the same shapes that only names tell apart: names that share a word the other
candidates lack keep the pair's confidence; letters every candidate shares are no evidence; a
word after ``pre``/``post`` names a neighbour, not the module; names that only look alike give a
low confidence and the mark ``WEAK NAMES`` (signal, entry, --json flag, comment, warning).
The classic case: HF Llama's ``input_layernorm`` / ``post_attention_layernorm`` against Meta
Llama's ``attention_norm`` / ``ffn_norm``, two [C] vectors per block. From headers (no torch)."""
from __future__ import annotations

import json
import textwrap

import pytest
from cli_runner import mapper

from mapper_core.specs import TensorSpec
from mapper_core.suggest import suggest

D, F = 16, 40


def w(*shape: int) -> TensorSpec:
    return TensorSpec("F32", shape)


def llama(prefix: str, attention: tuple[str, ...], mlp: tuple[str, str, str], norms: tuple[str, str],
          layers: int = 2) -> dict[str, TensorSpec]:
    """Blocks in definition order (a state dict): attention, MLP (gate, up, down), the two norms."""
    specs = {}
    for n in range(layers):
        p = f"{prefix}{n}"
        specs.update({f"{p}.{x}.weight": w(D, D) for x in attention})
        specs.update({f"{p}.{mlp[0]}.weight": w(F, D), f"{p}.{mlp[1]}.weight": w(F, D), f"{p}.{mlp[2]}.weight": w(D, F)})
        specs.update({f"{p}.{norm}.weight": w(D) for norm in norms})
    return specs


def hf_llama() -> dict[str, TensorSpec]:
    return llama("model.layers.", tuple(f"self_attn.{x}_proj" for x in "qkvo"),
                 ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"), ("input_layernorm", "post_attention_layernorm"))


def meta_llama() -> dict[str, TensorSpec]:
    return llama("layers.", tuple(f"attention.w{x}" for x in "qkvo"),
                 ("feed_forward.w1", "feed_forward.w3", "feed_forward.w2"), ("attention_norm", "ffn_norm"))


def norms(result) -> dict[str, tuple[str, float]]:
    return {p.source: (p.target, p.confidence) for p in result.pairing.pairs if "layernorm" in p.source}


def test_llama_norms_are_not_swapped_on_the_letters_of_attention():
    result = suggest(hf_llama(), meta_llama())
    found = norms(result)
    # `post_attention_layernorm` runs before the MLP: it is ffn_norm; its `attention` is where it is
    assert {s: t for s, (t, _) in found.items()} == {
        "model.layers.0.input_layernorm.weight": "layers.0.attention_norm.weight",
        "model.layers.0.post_attention_layernorm.weight": "layers.0.ffn_norm.weight",
        "model.layers.1.input_layernorm.weight": "layers.1.attention_norm.weight",
        "model.layers.1.post_attention_layernorm.weight": "layers.1.ffn_norm.weight"}
    # and no name told them apart: definition order did, and says so
    assert all(confidence <= 0.3 for _, confidence in found.values())
    assert ("model.layers.0.post_attention_layernorm", "layers.0.ffn_norm") in {
        (o.source, o.target) for o in result.pairing.order_only}
    assert "ORDER ONLY: 'model.layers.0.input_layernorm' -> 'layers.0.attention_norm'" in result.text


def test_llama_norms_of_a_sorted_file_are_left_for_the_user_not_guessed():
    conv = {"weight": w(D, 1, 3), "bias": w(D)}
    source = {f"model.layers.0.{m}.{k}": s for m, ms in (("conv", conv), ("input_layernorm", {"weight": w(D)}),
                                                         ("post_attention_layernorm", {"weight": w(D)}))
              for k, s in ms.items()}
    target = dict(sorted({f"layers.0.{m}.{k}": s for m, ms in (("attention_norm", {"weight": w(D)}),
                                                               ("ffn_norm", {"weight": w(D)}), ("shortconv", conv))
                          for k, s in ms.items()}.items()))  # a safetensors file: keys sorted, no order to go by
    result = suggest(source, target)
    assert {p.source: p.target for p in result.pairing.pairs} == {
        "model.layers.0.conv.weight": "layers.0.shortconv.weight", "model.layers.0.conv.bias": "layers.0.shortconv.bias"}
    assert {a.source for a in result.pairing.ambiguous} == {
        "model.layers.0.input_layernorm", "model.layers.0.post_attention_layernorm"}
    assert {s.key for s in result.pairing.skipped} == {
        "model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight"}


def block(names: tuple[str, ...], prefix: str = "blocks.0") -> dict[str, TensorSpec]:
    return {f"{prefix}.{name}.weight": w(D) for name in names}


def test_names_that_only_look_alike_are_marked_weak():
    result = suggest(block(("attn_ln", "mlp_ln")), block(("attention_norm", "ffn_norm")))
    pairs = {p.source: p for p in result.pairing.pairs}
    assert pairs["blocks.0.attn_ln.weight"].target == "blocks.0.attention_norm.weight"
    assert pairs["blocks.0.mlp_ln.weight"].target == "blocks.0.ffn_norm.weight"  # what the first left over
    assert all(p.weak_names and not p.order_only and p.confidence <= 0.4 for p in pairs.values())
    first = pairs["blocks.0.attn_ln.weight"]
    assert first.signals[0] == "WEAK NAMES: paired by names that only look alike ('blocks.0.ffn_norm' fit as well)"
    assert [(e.source, e.target, e.candidates) for e in result.pairing.weak_names] == [
        ("blocks.0.attn_ln", "blocks.0.attention_norm", ("blocks.0.attention_norm", "blocks.0.ffn_norm")),
        ("blocks.0.mlp_ln", "blocks.0.ffn_norm", ("blocks.0.ffn_norm", "blocks.0.attention_norm"))]
    text = " ".join(line.lstrip("# ") for line in result.text.splitlines() if line.lstrip().startswith("#"))
    assert ("WEAK NAMES: 'blocks.0.attn_ln' -> 'blocks.0.attention_norm': 'blocks.0.ffn_norm' fits it as well, "
            "and no whole word of the names tells them apart") in text
    assert "names that only look alike do not show which module is which: prove these pairs with `mapper verify`" \
        in text
    assert "confidence 0.40" in text and "confidence 1.00" not in text
    report = result.to_dict()
    assert [p["weak_names"] for p in report["pairs"]] == [True, True]
    assert report["summary"]["weak_names"] == 2
    assert report["weak_names"][0]["reason"].startswith("weak names: 'blocks.0.attn_ln' -> 'blocks.0.attention_norm'")


@pytest.mark.parametrize("source, target", [
    (("norm_attn", "norm_mlp"), ("attn_norm", "mlp_norm")),  # a whole word only those two share
    (("ln_1", "ln_2"), ("norm1", "norm2")),  # the same numbers
    (("pre_norm", "post_norm"), ("norm_pre", "norm_post")),  # pre/post themselves are words
    (("embed_tokens", "lm_head"), ("tok_embeddings", "output")),  # cut short: tok(ens), embed(dings)
])
def test_names_that_share_a_word_the_others_lack_keep_the_confidence(source, target):
    result = suggest(block(source), block(target))
    assert {p.source: p.target for p in result.pairing.pairs} == {
        f"blocks.0.{s}.weight": f"blocks.0.{t}.weight" for s, t in zip(source, target)}
    assert all(not p.weak_names and not p.order_only and p.confidence >= 0.8 for p in result.pairing.pairs)
    assert result.pairing.weak_names == () and "WEAK NAMES" not in result.text


def test_a_word_after_pre_or_post_names_a_neighbour():
    from mapper_core.suggest.names import own_words

    assert own_words("post_attention_layernorm") == ("post", "layernorm")
    assert own_words("pre_mlp_norm") == ("pre", "norm")
    assert own_words("pre_norm") == ("pre", "norm")  # the last word is the module's own
    assert own_words("input_layernorm") == ("input", "layernorm")


def test_the_command_warns_once_with_the_pairs_and_what_to_do(tmp_path):
    specs = {"a.json": block(("attn_ln", "mlp_ln")), "b.json": block(("attention_norm", "ffn_norm"))}
    for name, s in specs.items():
        (tmp_path / name).write_text(json.dumps(
            {"tensors": {k: {"dtype": v.dtype, "shape": list(v.shape)} for k, v in s.items()}}))
    done = mapper("suggest", "--source", tmp_path / "a.json", "--target", tmp_path / "b.json",
                  "-o", tmp_path / "rules.yaml")
    assert done.returncode == 0, done.stderr
    [warning] = [line for line in done.stderr.splitlines() if "warning" in line]
    assert ("2 pairings on weak name evidence among modules of the same shapes: "
            "'blocks.0.attn_ln' -> 'blocks.0.attention_norm', 'blocks.0.mlp_ln' -> 'blocks.0.ffn_norm'") in warning
    assert "`mapper verify`" in warning


PLUGIN = textwrap.dedent('''
    import torch
    from torch import nn
    from mapper_core.plugins import ModelFactory, hookimpl


    class RMSNorm(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(d))

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


    class HF(nn.Module):  # norms registered last, as transformers' LlamaDecoderLayer does
        def __init__(self, d=8):
            super().__init__()
            self.self_attn, self.mlp = nn.Linear(d, d, bias=False), nn.Linear(d, d)
            self.input_layernorm, self.post_attention_layernorm = RMSNorm(d), RMSNorm(d)

        def forward(self, x):
            x = x + self.self_attn(self.input_layernorm(x))
            return x + self.mlp(self.post_attention_layernorm(x))


    class Meta(nn.Module):
        def __init__(self, d=8):
            super().__init__()
            self.attention, self.feed_forward = nn.Linear(d, d, bias=False), nn.Linear(d, d)
            self.attention_norm, self.ffn_norm = RMSNorm(d), RMSNorm(d)

        def forward(self, x):
            x = x + self.attention(self.attention_norm(x))
            return x + self.feed_forward(self.ffn_norm(x))


    @hookimpl
    def mapper_models():
        return [ModelFactory("hf", lambda: nn.Sequential(HF(), HF())),
                ModelFactory("meta", lambda: nn.Sequential(Meta(), Meta()))]
''')


def test_verify_proves_the_llama_norms_suggest_paired(tmp_path):
    torch = pytest.importorskip("torch")
    (tmp_path / "llamanorms.py").write_text(PLUGIN)
    env = {"PYTHONPATH": str(tmp_path)}
    import importlib.util
    spec = importlib.util.spec_from_file_location("llamanorms_here", tmp_path / "llamanorms.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    model = torch.nn.Sequential(module.HF(), module.HF())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))  # norms not all ones: a swap shows
    torch.save(model.state_dict(), tmp_path / "hf.pt")
    rules = tmp_path / "rules.yaml"
    done = mapper("--plugin", "llamanorms", "suggest", "--source", tmp_path / "hf.pt", "--target", "model:meta",
                  "-o", rules, env=env)
    assert done.returncode == 0, done.stderr
    checked = mapper("--plugin", "llamanorms", "verify", "--rules", rules, "--source", tmp_path / "hf.pt",
                     "--source-model", "model:hf", "--target-model", "model:meta", "--input", "2x3x8", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "0.input_layernorm" in checked.stdout and "0.attention_norm" in checked.stdout
