"""A tensor of a dtype safetensors cannot store (complex128, complex32) in a torch file or a DCP folder: the
checkpoint stays readable (inspect lists and marks it, plan sees it under torch's name), plan and convert
refuse only when the tensor would be written, naming the key, the dtype and the fix, and rules that skip
it convert the rest. The same for both readers, as for a meta tensor."""
from __future__ import annotations

import json
import warnings

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

from cli_runner import mapper  # noqa: E402  (tests/helpers)
from dcp_fixtures import save_dcp  # noqa: E402
from mapper_core.errors import CheckpointError  # noqa: E402
from mapper_core.io.convert import convert  # noqa: E402
from mapper_core.io.torch_dtypes import OTHER_TO_NAME, TORCH_TO_NAME  # noqa: E402
from mapper_core.specs import DTYPE_BITS, OTHER_DTYPE_BITS, TensorSpec  # noqa: E402

SKIP = "version: 1\nname: noc\nskip: ['c128', 'half_c']\nrules:\n  - match: '(.+)'\n    target: '{1}'\n"
ALL = "version: 1\nname: all\nrules:\n  - match: '(.+)'\n    target: '{1}'\n"


def _state() -> dict:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "ComplexHalf support is experimental"
        half = torch.zeros(3, dtype=torch.complex32)
    return {"w": torch.randn(2, 3), "c128": torch.randn(4, dtype=torch.complex128),
            "c64": torch.randn(2, dtype=torch.complex64), "half_c": half}


@pytest.fixture(params=["torch", "dcp"])
def source(request, tmp_path):
    if request.param == "torch":
        path = tmp_path / "c.pt"
        torch.save(_state(), path)
        return path
    return save_dcp(_state(), tmp_path / "c-dcp")


def _rules(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_every_torch_dtype_is_stored_or_listed_under_its_own_name():
    dtypes = {d for d in (getattr(torch, n) for n in dir(torch)) if isinstance(d, torch.dtype)}
    for d in dtypes:
        if d in TORCH_TO_NAME:
            continue
        name = OTHER_TO_NAME.get(d)
        assert name == str(d).removeprefix("torch."), d
        assert OTHER_DTYPE_BITS[name] == d.itemsize * 8, d
    assert not set(OTHER_DTYPE_BITS) & set(DTYPE_BITS)  # never mistaken for a dtype a safetensors file holds
    assert TensorSpec("complex128", (4,)).nbytes == 64


def test_inspect_lists_and_marks_it(source):
    done = mapper("inspect", source)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("c128  (safetensors cannot store it)") and "complex128" in line for line in lines)
    assert any(line.startswith("half_c  (safetensors cannot store it)") and "complex32" in line for line in lines)
    assert ("dtypes safetensors cannot store (marked above): 2 keys of complex128, complex32; convert refuses to "
            "write them: skip them in the rules, or convert them with torch first") in lines
    rows = {t["key"]: t for t in json.loads(mapper("inspect", source, "--json").stdout)["tensors"]}
    assert rows["c128"]["unstorable"] is True and rows["c128"]["dtype"] == "complex128"
    assert "unstorable" not in rows["c64"] and rows["c64"]["dtype"] == "C64"


def test_rules_that_skip_it_plan_and_convert_the_rest(source, tmp_path):
    rules = _rules(tmp_path, SKIP)
    done = mapper("plan", source, "--rules", rules)
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "o.safetensors"
    done = mapper("convert", source, out, "--rules", rules, "--verify")
    assert done.returncode == 0, done.stderr
    got = load_file(out)
    assert set(got) == {"w", "c64"} and torch.equal(got["c64"], _state()["c64"])


@pytest.mark.parametrize("command", ["plan", "convert", "convert-dcp"])
def test_plan_and_convert_that_write_it_refuse_naming_key_dtype_and_fix(source, tmp_path, command):
    rules = _rules(tmp_path, ALL)
    out = tmp_path / ("o-dcp" if command == "convert-dcp" else "o.safetensors")
    args = {"plan": ("plan", source), "convert": ("convert", source, out),
            "convert-dcp": ("convert", source, out, "--output-format", "dcp")}[command]
    for extra in (("--rules", rules), ()) if command != "plan" else (("--rules", rules),):
        done = mapper(*args, *extra)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""
        assert (f"tensor 'c128' has dtype complex128, which safetensors cannot store" in done.stderr
                and str(source) in done.stderr and "skip it in the rules" in done.stderr
                and "convert it with torch before mapping" in done.stderr)
        assert "1 more such key: 'half_c' (complex32)" in done.stderr
        assert not out.exists()
    with pytest.raises(CheckpointError, match="'c128' has dtype complex128"):
        convert(source, tmp_path / "p.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("o", "p"))) == []


def test_a_mapped_meta_tensor_is_refused_by_plan_too(tmp_path):
    src = tmp_path / "m.pt"
    torch.save({"w": torch.ones(2), "inv_freq": torch.empty(4, device="meta")}, src)
    done = mapper("plan", src, "--rules", _rules(tmp_path, ALL))
    assert done.returncode == 2 and "tensor 'inv_freq' is a meta tensor" in done.stderr
