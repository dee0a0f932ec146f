"""mapper-gguf against gguf itself: files we write read back with gguf.GGUFReader in llama.cpp's
layout, dequantized tensors equal gguf.quants.dequantize, and a tiny Llama-shaped checkpoint goes
HF → GGUF → HF bit for bit, through the CLI too."""
from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mapper_core.cli import main
from mapper_core.errors import CheckpointError, StepError
from mapper_core.specs import TensorSpec
from mapper_gguf import GgufReader, convert_to_gguf, permute_qk, save_gguf, unpermute_qk
from mapper_gguf.permute import permute_spec

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN, VOCAB, LAYERS = 256, 2, 1, 128, 384, 32, 2


def hf_llama() -> dict[str, torch.Tensor]:
    """A Llama-shaped state dict (LlamaForCausalLM names), grouped-query attention (2 heads, 1 KV head)."""
    g = torch.Generator().manual_seed(0)
    state = {"model.embed_tokens.weight": torch.randn(VOCAB, HIDDEN, generator=g),
             "model.norm.weight": torch.randn(HIDDEN, generator=g), "lm_head.weight": torch.randn(VOCAB, HIDDEN, generator=g)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        state.update({
            p + "self_attn.q_proj.weight": torch.randn(HEADS * HEAD_DIM, HIDDEN, generator=g),
            p + "self_attn.k_proj.weight": torch.randn(KV_HEADS * HEAD_DIM, HIDDEN, generator=g),
            p + "self_attn.v_proj.weight": torch.randn(KV_HEADS * HEAD_DIM, HIDDEN, generator=g),
            p + "self_attn.o_proj.weight": torch.randn(HIDDEN, HEADS * HEAD_DIM, generator=g),
            p + "mlp.gate_proj.weight": torch.randn(FFN, HIDDEN, generator=g),
            p + "mlp.up_proj.weight": torch.randn(FFN, HIDDEN, generator=g),
            p + "mlp.down_proj.weight": torch.randn(HIDDEN, FFN, generator=g),
            p + "input_layernorm.weight": torch.randn(HIDDEN, generator=g),
            p + "post_attention_layernorm.weight": torch.randn(HIDDEN, generator=g),
        })
    return state


def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf's Q/K permutation, written out independently for the comparison."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


GGUF_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
              "lm_head.weight": "output.weight"}
for _i in range(LAYERS):
    for _hf, _gg in (("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"),
                     ("self_attn.o_proj", "attn_output"), ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"),
                     ("mlp.down_proj", "ffn_down"), ("input_layernorm", "attn_norm"),
                     ("post_attention_layernorm", "ffn_norm")):
        GGUF_NAMES[f"model.layers.{_i}.{_hf}.weight"] = f"blk.{_i}.{_gg}.weight"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama")
    state = hf_llama()
    save_file(state, folder / "hf.safetensors")
    convert_to_gguf(folder / "hf.safetensors", folder / "model.gguf", "gguf:to-gguf-llama",
                    metadata={"llama.block_count": LAYERS, "llama.attention.head_count": HEADS,
                              "llama.attention.head_count_kv": KV_HEADS, "general.name": "tiny"})
    return folder, state


def test_hf_to_gguf_reads_back_with_gguf_in_llama_cpps_layout(files):
    folder, state = files
    reader = gguf.GGUFReader(folder / "model.gguf")
    found = {t.name: t for t in reader.tensors}
    assert sorted(found) == sorted(GGUF_NAMES.values())
    for hf, name in GGUF_NAMES.items():
        expected = state[hf].numpy()
        if ".q_proj." in hf:
            expected = llama_cpp_permute(expected, HEADS)
        elif ".k_proj." in hf:
            expected = llama_cpp_permute(expected, KV_HEADS)
        t = found[name]
        assert t.tensor_type == Q.F32 and list(t.shape) == list(reversed(expected.shape))  # ne: fastest first
        np.testing.assert_array_equal(np.asarray(t.data).reshape(expected.shape), expected)
    assert reader.get_field("general.architecture").contents() == "llama"
    assert reader.get_field("llama.attention.head_count_kv").contents() == KV_HEADS


def test_gguf_to_hf_with_the_cli_is_bit_exact(files, capsys):
    folder, state = files
    out = folder / "back.safetensors"
    code = main(["convert", str(folder / "model.gguf"), str(out), "--rules", "gguf:to-hf-llama", "--verify", "--force"])
    assert code == 0, capsys.readouterr().err
    back = load_file(out)
    assert sorted(back) == sorted(state)
    for key, value in state.items():
        assert torch.equal(back[key], value), key
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
    assert meta["general.architecture"] == "llama" and meta["llama.attention.head_count"] == "2"


def test_export_reads_the_rules_backwards_through_the_permutation(files, capsys):
    folder, _ = files
    hf = folder / "hf-export.safetensors"
    assert main(["convert", str(folder / "model.gguf"), str(hf), "--rules", "gguf:to-hf-llama", "--force"]) == 0
    gguf_named = folder / "gguf-named.safetensors"
    assert main(["export", str(hf), str(gguf_named), "--rules", "gguf:to-hf-llama", "--force"]) == 0
    exported = load_file(gguf_named)
    with GgufReader(folder / "model.gguf") as reader:
        for name in GGUF_NAMES.values():
            assert torch.equal(exported[name], torch.from_numpy(reader.get_tensor(name))), name


def random_blocks(qtype: Q, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Valid quantized bytes: random quants, with the f16 scales set to modest values."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    data = rng.integers(0, 256, size=(rows, cols // block, size), dtype=np.uint8)
    scale = np.frombuffer(np.float16(0.01).tobytes(), dtype=np.uint8)
    if qtype == Q.Q4_K:  # d, dmin (f16) first
        data[..., 0:2] = scale
        data[..., 2:4] = np.frombuffer(np.float16(0.001).tobytes(), dtype=np.uint8)
    elif qtype == Q.Q6_K:  # d (f16) last
        data[..., size - 2:] = scale
    return data.reshape(rows, cols // block * size)


def test_dequantized_tensors_equal_gguf_quants(tmp_path, capsys):
    rng = np.random.default_rng(1)
    floats = rng.standard_normal((4, 256)).astype(np.float32)
    path = tmp_path / "quant.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tensor("q8", gguf.quants.quantize(floats, Q.Q8_0), raw_dtype=Q.Q8_0)
    writer.add_tensor("q4", gguf.quants.quantize(floats, Q.Q4_0), raw_dtype=Q.Q4_0)
    writer.add_tensor("q4k", random_blocks(Q.Q4_K, 2, 512, rng), raw_dtype=Q.Q4_K)
    writer.add_tensor("q6k", random_blocks(Q.Q6_K, 3, 256, rng), raw_dtype=Q.Q6_K)
    writer.add_tensor("plain", floats[:2, :8].copy())
    writer.write_header_to_file(), writer.write_kv_data_to_file(), writer.write_tensors_to_file(), writer.close()

    reference = {t.name: t for t in gguf.GGUFReader(path).tensors}
    with GgufReader(path) as reader:
        specs = reader.specs()
        assert specs["q4k"] == TensorSpec("F32", (2, 512)) and specs["q6k"] == TensorSpec("F32", (3, 256))
        assert json.loads(reader.metadata()["gguf.quantization"]) == {"q8": "Q8_0", "q4": "Q4_0", "q4k": "Q4_K",
                                                                     "q6k": "Q6_K"}
        for name in ("q8", "q4", "q4k", "q6k"):
            t = reference[name]
            expected = gguf.quants.dequantize(t.data, t.tensor_type)
            got = reader.get_tensor(name)
            assert got.dtype == np.float32 and np.isfinite(got).all()
            np.testing.assert_array_equal(got, expected.reshape(specs[name].shape))
        np.testing.assert_allclose(reader.get_tensor("q8"), floats, atol=0.02)  # and close to what was quantized
    with GgufReader(path, dequantize_to="F16") as reader:
        assert reader.specs()["q8"].dtype == "F16" and reader.get_tensor("q8").dtype == np.float16

    out = tmp_path / "quant.safetensors"
    rules = tmp_path / "same.yaml"
    rules.write_text("version: 1\nrules:\n  - match: '(.+)'\n    target: '{1}'\n")
    assert main(["convert", str(path), str(out), "--rules", str(rules), "--verify"]) == 0
    with safe_open(str(out), "pt") as f:  # the original quantization rides along in the metadata
        assert json.loads(f.metadata()["gguf.quantization"])["q6k"] == "Q6_K"
    assert main(["inspect", str(path)]) == 0
    assert "gguf.quantization" in capsys.readouterr().out


def test_save_gguf_quantizes_on_request(tmp_path):
    w = torch.randn(8, 64)
    save_gguf(tmp_path / "q.gguf", {"w": w, "b": torch.randn(8)}, quantize="Q8_0")
    found = {t.name: t for t in gguf.GGUFReader(tmp_path / "q.gguf").tensors}
    assert found["w"].tensor_type == Q.Q8_0 and found["b"].tensor_type == Q.F32  # 1-D stays as it is
    expected = gguf.quants.dequantize(gguf.quants.quantize(w.numpy(), Q.Q8_0), Q.Q8_0)
    with GgufReader(tmp_path / "q.gguf") as reader:
        np.testing.assert_array_equal(reader.get_tensor("w"), expected)


def test_permutation_and_its_inverse():
    w = torch.randn(3 * HEAD_DIM, 5)
    assert torch.equal(unpermute_qk(permute_qk(w, HEAD_DIM), HEAD_DIM), w)
    assert np.array_equal(permute_qk(w, HEAD_DIM).numpy(), llama_cpp_permute(w.numpy(), 3))
    with pytest.raises(StepError, match="multiple of 128"):
        permute_spec(TensorSpec("F32", (100, 5)))


def test_a_damaged_file_is_a_checkpoint_error(tmp_path):
    (tmp_path / "bad.gguf").write_bytes(b"GGUF" + b"\xff" * 40)
    with pytest.raises(CheckpointError, match="GGUF version 4294967295 is not one gguf .* reads"):
        GgufReader(tmp_path / "bad.gguf")
