"""BF16 GGUF tensors read value for value: gguf hands them over as raw bytes (numpy has no bfloat16)."""
from __future__ import annotations

import pytest

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from gguf import GGMLQuantizationType as Q  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from mapper_core.cli import main  # noqa: E402
from mapper_core.specs import TensorSpec  # noqa: E402
from mapper_gguf import GgufReader, save_gguf  # noqa: E402

SHAPES = {"w": (2, 256), "v": (4, 4), "s": (3,), "c": (2, 3, 5)}


def bf16_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {k: torch.randn(*shape, generator=g).to(torch.bfloat16) for k, shape in SHAPES.items()}


def gguf_reference(path) -> dict[str, torch.Tensor]:
    """What gguf itself makes of each BF16 tensor (float32, in torch's dimension order)."""
    return {t.name: torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type)).reshape(SHAPES[t.name])
            for t in gguf.GGUFReader(path).tensors}


def test_save_gguf_bf16_converts_back_bit_for_bit(tmp_path):
    state = bf16_state()
    path = tmp_path / "bf.gguf"
    save_gguf(path, state)
    out = tmp_path / "bf.safetensors"
    assert main(["convert", str(path), str(out), "--verify"]) == 0
    back = load_file(str(out))
    reference = gguf_reference(path)
    for key, value in state.items():
        assert back[key].dtype == torch.bfloat16 and back[key].shape == value.shape
        assert torch.equal(back[key].view(torch.int16), value.view(torch.int16)), key  # bit for bit
        assert torch.equal(back[key].float(), reference[key]), key  # and as gguf reads it


@pytest.mark.parametrize("endian", ["LITTLE", "BIG"])
def test_bf16_written_by_gguf_itself_reads_as_gguf_dequantizes_it(tmp_path, endian):
    rng = np.random.default_rng(0)
    floats = {k: rng.standard_normal(shape).astype(np.float32) for k, shape in SHAPES.items()}
    bf16 = {k: gguf.quants.quantize(v, Q.BF16) for k, v in floats.items()}  # as llama.cpp's --outtype bf16 does
    path = tmp_path / f"{endian}.gguf"
    writer = gguf.GGUFWriter(path, "llama", endianess=gguf.GGUFEndian[endian])
    for key, data in bf16.items():
        if endian == "BIG":  # 2-byte values, swapped by the writer (as gguf_convert_endian does for BF16)
            data = data.view(np.uint16)
        writer.add_tensor(key, data, raw_shape=data.shape, raw_dtype=Q.BF16)
    writer.write_header_to_file(), writer.write_kv_data_to_file(), writer.write_tensors_to_file(), writer.close()

    with GgufReader(path) as reader:
        for key, value in floats.items():
            assert reader.specs()[key] == TensorSpec("BF16", SHAPES[key])
            got = reader.get_tensor(key)
            assert got.dtype == torch.bfloat16 and tuple(got.shape) == SHAPES[key]
            expected = torch.from_numpy(gguf.quants.dequantize(bf16[key], Q.BF16)).reshape(SHAPES[key])
            assert torch.equal(got.float(), expected), key
            torch.testing.assert_close(got.float(), torch.from_numpy(value), rtol=1e-2, atol=1e-2)
