"""A tied key of the checkpoint (``lm_head.weight`` stored as the same tensor as the embedding, the
reader's ``aliases()``) is paired as a tie, not called ambiguous."""
from __future__ import annotations

import json

import pytest
from cli_runner import mapper
from mapper_core.specs import TensorSpec
from mapper_core.suggest import suggest

TIED = {"lm_head.weight": "model.embed_tokens.weight"}


def with_heads():
    """A tiny Llama-like pair, HF names against Meta's, each with an embedding and a head of one shape."""
    def w(*shape): return TensorSpec("F32", shape)
    source = {"model.embed_tokens.weight": w(50, 8), "model.layers.0.mlp.down_proj.weight": w(8, 12),
              "model.layers.0.input_layernorm.weight": w(8), "model.norm.weight": w(8), "lm_head.weight": w(50, 8)}
    target = {"tok_embeddings.weight": w(50, 8), "layers.0.feed_forward.w2.weight": w(8, 12),
              "layers.0.attention_norm.weight": w(8), "norm.weight": w(8), "output.weight": w(50, 8)}
    return source, target


def test_a_tied_head_pairs_with_the_one_target_left_that_fits_it():
    source, target = with_heads()
    untied = suggest(source, target)  # without the reader's word, the head is ambiguous
    assert "lm_head.weight" in {x.key for x in untied.pairing.skipped}
    result = suggest(source, target, source_aliases=TIED)
    [pair] = [p for p in result.pairing.pairs if p.source == "lm_head.weight"]
    assert pair.target == "output.weight"
    assert pair.signals[0] == ("tied to model.embed_tokens.weight (the same tensor in the checkpoint, which "
                               "goes to tok_embeddings.weight)")
    assert not [a for a in result.pairing.ambiguous if "lm_head" in a.source or not a.source]
    assert "output.weight" not in {x.key for x in result.pairing.new}
    assert "tied to model.embed_tokens.weight" in result.text


def test_a_tied_key_with_no_single_fit_is_skipped_saying_what_it_is_tied_to():
    source, target = with_heads()
    target["extra_head.weight"] = TensorSpec("F32", target["output.weight"].shape)  # two fit now
    result = suggest(source, target, source_aliases=TIED)
    [skipped] = [x for x in result.pairing.skipped if x.key == "lm_head.weight"]
    assert skipped.reason.startswith("tied to model.embed_tokens.weight (the same tensor in the checkpoint")
    assert "2 target keys left fit it" in skipped.reason
    assert not [a for a in result.pairing.ambiguous if not a.source]


def test_the_command_reads_the_ties_from_the_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    source, target = with_heads()
    state = {k: torch.zeros(s.shape) for k, s in source.items() if k != "lm_head.weight"}
    state["lm_head.weight"] = state["model.embed_tokens.weight"]  # what save_pretrained's tie leaves
    torch.save(state, tmp_path / "hf.pt")
    (tmp_path / "meta.json").write_text(json.dumps(
        {"tensors": {k: {"dtype": s.dtype, "shape": list(s.shape)} for k, s in target.items()}}))
    done = mapper("suggest", "--source", tmp_path / "hf.pt", "--target", tmp_path / "meta.json", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {"source": "lm_head.weight", "target": "output.weight"}.items() <= next(
        p for p in report["pairs"] if p["source"] == "lm_head.weight").items()
    assert "ambiguous" not in done.stderr.lower() or "lm_head" not in done.stderr
