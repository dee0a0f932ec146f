"""A checkpoint file stores its keys sorted (``layers.10`` before ``layers.2``): that order is not
the model's, so layers pair by their numbers, and what a file's order alone decided says so.
From headers (no torch)."""
from __future__ import annotations

from mapper_core.suggest import suggest
from mapper_core.suggest.structure import natural_key
from llama_specs import llama  # tests/helpers


def test_a_target_stored_sorted_pairs_every_layer_with_the_same_number():
    stored_sorted = dict(sorted(llama(hf=False).items()))  # as save_file and `mapper convert` write it
    assert list(stored_sorted).index("layers.10.ffn_norm.weight") < list(stored_sorted).index("layers.2.ffn_norm.weight")
    result = suggest(llama(), stored_sorted)
    assert layers(result) == {str(i): str(i) for i in range(12)}  # not only layers 0 and 1
    # no layer is said to fit a differently numbered one as well
    assert not [a.reason for a in result.pairing.ambiguous if a.source.count(".") == 2]


def test_a_source_stored_sorted_pairs_every_layer_with_the_same_number():
    result = suggest(dict(sorted(llama().items())), llama(hf=False))
    assert layers(result) == {str(i): str(i) for i in range(12)}
    assert not [a.reason for a in result.pairing.ambiguous if a.source.count(".") == 2]


def layers(result) -> dict[str, str]:
    """Source layer number → the target layer its block (``model.layers.N``) was paired with. The
    block's two norms tie (same shape, and ``post_attention_layernorm`` is no evidence for
    ``attention_norm``), so they are each left ambiguous among that layer's two norms, never
    paired, and never with another layer's: the block still pairs by its number."""
    norms = [p for p in result.pairing.pairs if "norm" in p.source and p.source.startswith("model.layers.")]
    assert not norms  # a sorted file's order cannot tell them apart; the names cannot either
    for a in result.pairing.ambiguous:
        if a.source.endswith("layernorm"):
            n = a.source.split(".")[2]
            assert a.candidates == (f"layers.{n}.attention_norm", f"layers.{n}.ffn_norm")
    return {link.source.split(".")[2]: link.target.split(".")[1] for link in result.pairing.links
            if link.source.startswith("model.layers.") and link.source.count(".") == 2}


def test_a_layer_whose_modules_tie_names_only_its_own_number():
    # q/k/v/o fit wq/wk/wv/wo in any order and a sorted file's order says nothing: an ambiguity,
    # about layers.2's attention, not about the attention of every layer
    result = suggest(llama(), dict(sorted(llama(hf=False).items())))
    tied = {a.source: a.candidates for a in result.pairing.ambiguous}
    assert tied["model.layers.2.self_attn"] == ("layers.2.attention",)
    assert "fit those of 'layers.2.attention' in more than one way" in " ".join(
        a.reason for a in result.pairing.ambiguous if a.source == "model.layers.2.self_attn")


def test_keys_sorted_by_their_numbers_are_a_file_order_too():
    # layers.2 before layers.10 but wk, wo, wq, wv alphabetical: a sorted file, not a model's order,
    # so q_proj is not paired with wk because both come first
    natural = dict(sorted(llama(hf=False).items(), key=lambda kv: natural_key(kv[0])))
    assert list(natural) != sorted(natural)
    result = suggest(llama(), natural)
    assert not any(p.source.endswith("self_attn.q_proj.weight") for p in result.pairing.pairs)
    assert ("model.layers.2.self_attn", ("layers.2.attention",)) in {
        (a.source, a.candidates) for a in result.pairing.ambiguous}
    assert layers(result) == {str(i): str(i) for i in range(12)}
