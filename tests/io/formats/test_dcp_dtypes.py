"""Every dtype safetensors stores is read from a DCP folder (complex64 among them, as from a .pt
file), checked against torch's own dcp_to_torch_save; a dtype it cannot store is listed, and reading it
is refused naming the folder's .metadata and the key."""
from __future__ import annotations

import re

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

from dcp_fixtures import dcp_state, save_dcp  # noqa: E402
from mapper_core.errors import CheckpointError  # noqa: E402
from mapper_core.io.convert import convert  # noqa: E402
from mapper_core.io.formats import open_checkpoint  # noqa: E402
from mapper_core.rules import parse_rules  # noqa: E402

NEWER = [("complex64", "C64"), ("float8_e4m3fnuz", "F8_E4M3FNUZ"), ("float8_e5m2fnuz", "F8_E5M2FNUZ"),
         ("float8_e8m0fnu", "F8_E8M0")]


def _tensor(dtype):
    torch.manual_seed(0)
    if dtype.is_complex:
        return torch.randn(3, 2, dtype=dtype)
    return torch.randint(0, 255, (3, 2), dtype=torch.uint8).view(dtype)  # any bit pattern


@pytest.mark.parametrize("attr,name", NEWER)
def test_dtype_reads_like_dcp_to_torch_save(attr, name, tmp_path):
    if not hasattr(torch, attr):
        pytest.skip(f"this torch has no {attr}")
    dtype = getattr(torch, attr)
    folder = save_dcp({"w": torch.randn(2, 2), "x": _tensor(dtype)}, tmp_path / "ck")
    with open_checkpoint(folder) as reader:
        assert reader.specs()["x"].dtype == name
    out = tmp_path / "out.safetensors"
    convert(folder, out, verify=True)
    expected, got = dcp_state(folder), load_file(out)
    for key in ("w", "x"):
        assert got[key].dtype == expected[key].dtype
        assert torch.equal(got[key].view(torch.uint8), expected[key].view(torch.uint8)), key


def test_a_complex64_tensor_can_be_skipped(tmp_path):
    folder = save_dcp({"w": torch.randn(2, 2), "c64": torch.randn(3, dtype=torch.complex64)}, tmp_path / "ck")
    rules = parse_rules("version: 1\nname: noc\nskip: ['c64']\nrules:\n  - match: '(.+)'\n    target: '{1}'\n",
                        "noc.yaml")
    result = convert(folder, tmp_path / "out.safetensors", rules=rules)
    assert result.tensors == 1 and result.left_behind == 1
    assert list(load_file(tmp_path / "out.safetensors")) == ["w"]


def test_a_dtype_safetensors_cannot_store_is_listed_and_refused_only_when_read(tmp_path):
    folder = save_dcp({"w": torch.randn(2), "c128": torch.randn(3, dtype=torch.complex128)}, tmp_path / "ck")
    with open_checkpoint(folder) as reader:
        assert reader.specs()["c128"].dtype == "complex128" and reader.specs()["c128"].nbytes == 48
        assert reader.unstorable_keys == {"c128": "complex128"}
        assert torch.equal(reader.get_tensor("w"), dcp_state(folder)["w"])
        message = f"{folder / '.metadata'}: tensor 'c128' has dtype complex128, which safetensors cannot store"
        with pytest.raises(CheckpointError, match=re.escape(message) + ".*skip it in the rules"):
            reader.get_tensor("c128")
