"""A plugin transform that edits its input in place is named, instead of corrupting a tied key or failing --verify as 'damaged'."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file, save_file  # noqa: E402

PLUGIN = """
    from mapper_core.plugins import TransformSpec, hookimpl

    def in_place(t):
        t.mul_(2)
        return t

    def in_place_new(t):
        t.add_(0)  # edits the input, returns another tensor
        return t * 2

    @hookimpl
    def mapper_transforms():
        return [TransformSpec("dbl", apply=in_place, spec=None),
                TransformSpec("dbl_new", apply=in_place_new, spec=None),
                TransformSpec("twice", apply=lambda t: t * 2, spec=None)]
"""


@pytest.fixture
def setup(plugin_modules, tmp_path):
    module = plugin_modules("plugr_inplace", PLUGIN)
    values = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    torch.save({"w": values, "v": values}, tmp_path / "tied.pt")  # one storage, two names
    save_file({"w": values.clone(), "v": torch.ones(3)}, str(tmp_path / "plain.safetensors"))

    def rules(step: str):
        path = tmp_path / f"{step}.yaml"
        path.write_text(f"version: 1\nrules:\n  - match: '(w|v)'\n    target: '{{1}}'\n"
                        f"    transform: [{{{module}:{step}: {{}}}}]\n")
        return path

    return module, values, rules


@pytest.mark.parametrize("step", ["dbl", "dbl_new"])
@pytest.mark.parametrize("source", ["tied.pt", "plain.safetensors"])
def test_an_in_place_transform_is_named_not_blamed_on_the_writer(setup, tmp_path, mapper, step, source):
    module, _, rules = setup
    out = tmp_path / "o.safetensors"
    proc = mapper("--plugin", module, "convert", tmp_path / source, out, "--rules", rules(step), "--verify")
    assert proc.returncode == 2, proc.stderr
    assert (f"plugin '{module}': transform '{step}': apply() changed its input tensor in place; it must leave its "
            "input alone and return a new tensor") in proc.stderr
    assert "damaged" not in proc.stderr and "report a bug" not in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_without_verify_a_tied_source_is_not_silently_doubled_twice(setup, tmp_path, mapper):
    module, _, rules = setup
    out = tmp_path / "o.safetensors"
    proc = mapper("--plugin", module, "convert", tmp_path / "tied.pt", out, "--rules", rules("dbl"))
    assert proc.returncode == 2 and "changed its input tensor in place" in proc.stderr
    assert not out.exists()


def test_a_transform_returning_a_new_tensor_converts_a_tied_source_right(setup, tmp_path, mapper):
    module, values, rules = setup
    out = tmp_path / "o.safetensors"
    proc = mapper("--plugin", module, "convert", tmp_path / "tied.pt", out, "--rules", rules("twice"), "--verify")
    assert proc.returncode == 0, proc.stderr
    back = load_file(str(out))
    assert torch.equal(back["w"], values * 2) and torch.equal(back["v"], values * 2)
