"""mapper-onnx against onnx itself: initializers read here equal onnx.numpy_helper's arrays (inline
and in external data files), and a torch.onnx.export'ed module converts back to its state dict."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from safetensors.torch import load_file

from mapper_core.cli import main
from mapper_core.errors import CheckpointError
from mapper_core.plugins import CheckpointWarning, contributions, get_plugin_manager, open_checkpoint
from mapper_onnx import OnnxReader

RNG = np.random.default_rng(0)


def tiny_model(arrays: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A graph that adds each initializer to nothing in particular: what matters is the initializers."""
    inits = [numpy_helper.from_array(a, name=k) for k, a in arrays.items()]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "tiny", [x], [y], initializer=inits)
    model = helper.make_model(graph, producer_name="mapper-onnx-tests")
    helper.set_model_props(model, {"author": "tests"})
    return model


ARRAYS = {
    "w": RNG.standard_normal((3, 4)).astype(np.float32),
    "b": RNG.standard_normal(3).astype(np.float16),
    "ids": np.arange(6, dtype=np.int64).reshape(2, 3),
    "d": RNG.standard_normal(2),
    "flag": np.array([True, False]),
}


@pytest.mark.parametrize("external", [False, True])
def test_initializers_equal_onnx_numpy_helper(tmp_path, external):
    path = tmp_path / "m.onnx"
    onnx.save(tiny_model(ARRAYS), str(path), save_as_external_data=external, all_tensors_to_one_file=True,
              location="m.data", size_threshold=0)
    if external:
        assert (tmp_path / "m.data").exists()
    reference = {t.name: numpy_helper.to_array(t, base_dir=str(tmp_path)) for t in onnx.load(str(path)).graph.initializer}
    with OnnxReader(path) as reader:
        specs = reader.specs()
        assert list(specs) == list(ARRAYS)
        for key, ref in reference.items():
            assert specs[key].shape == ref.shape
            np.testing.assert_array_equal(reader.get_tensor(key).numpy(), ref)
        meta = reader.metadata()
        assert meta["author"] == "tests" and meta["onnx.producer"] == "mapper-onnx-tests"


def test_typed_fields_and_bf16(tmp_path):
    bf16 = torch.randn(4).to(torch.bfloat16)
    t_bf16 = helper.make_tensor("bf", TensorProto.BFLOAT16, [4], bf16.view(torch.int16).numpy().tobytes(), raw=True)
    t_typed = helper.make_tensor("typed", TensorProto.FLOAT, [2, 2], [1.0, 2.0, 3.0, 4.0])  # float_data, not raw
    model = tiny_model({})
    model.graph.initializer.extend([t_bf16, t_typed])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    with OnnxReader(path) as reader:
        assert reader.specs()["bf"].dtype == "BF16"
        assert torch.equal(reader.get_tensor("bf"), bf16)
        assert torch.equal(reader.get_tensor("typed"), torch.tensor([[1.0, 2.0], [3.0, 4.0]]))


def test_external_data_outside_the_model_folder_is_refused(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(tiny_model({"w": ARRAYS["w"]}), str(path), save_as_external_data=True, location="m.data", size_threshold=0)
    model = onnx.load(str(path), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../../etc/passwd"
    onnx.save(model, str(path))
    with pytest.raises(CheckpointError, match="not a file inside the model's folder"):  # on opening, not reading
        OnnxReader(path)


def test_truncated_external_data_is_refused(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(tiny_model({"w": ARRAYS["w"]}), str(path), save_as_external_data=True, location="m.data", size_threshold=0)
    (tmp_path / "m.data").write_bytes(b"\0" * 10)
    with pytest.raises(CheckpointError, match="past its end"):
        OnnxReader(path)


def test_not_onnx_is_a_checkpoint_error(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"\xff" * 64)
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        OnnxReader(tmp_path / "x.onnx")


class Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1))
        self.head = torch.nn.Linear(2 * 6 * 6, 5)

    def forward(self, x):
        return self.head(self.encoder(x).flatten(1))


@pytest.mark.parametrize("external", [False, True])
def test_torch_onnx_export_converts_back_to_the_state_dict(tmp_path, external, capsys):
    torch.manual_seed(0)
    module = Small().eval()
    path = tmp_path / "small.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(module, (torch.randn(1, 3, 8, 8),), str(path), dynamo=False)
    if external:  # the same model with its weights in a side file
        onnx.save(onnx.load(str(path)), str(path), save_as_external_data=True, location="small.weights", size_threshold=0)
    assert contributions(get_plugin_manager(env={})).format_plugins["onnx"] == "onnx"
    out = tmp_path / "small.safetensors"
    assert main(["convert", str(path), str(out), "--rules", "onnx:torch-export", "--verify"]) == 0
    converted = load_file(out)
    state = module.state_dict()
    assert sorted(converted) == sorted(state)
    for key, value in state.items():
        assert torch.equal(converted[key], value), key
    assert main(["plan", str(path), "--rules", "onnx:torch-export", "--target", str(out), "--strict"]) == 0


def test_folded_constants_are_skipped_by_the_rule_set(tmp_path, capsys):
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                                 torch.nn.Linear(4 * 6 * 6, 2)).eval()
    path = tmp_path / "fused.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(1, 3, 8, 8),), str(path), dynamo=False)  # BN folded into the conv
    with pytest.warns(CheckpointWarning, match="do_constant_folding=False"), open_checkpoint(path) as reader:
        assert any(k.startswith("onnx::") for k in reader.specs())
    out = tmp_path / "fused.safetensors"
    assert main(["convert", str(path), str(out), "--rules", "onnx:torch-export"]) == 0
    converted = load_file(out)
    assert sorted(converted) == ["3.bias", "3.weight"]  # the Linear's; the fused conv has no torch name
    assert torch.equal(converted["3.weight"], module.state_dict()["3.weight"])


def external_model(tmp_path, **entries: str):
    """m.onnx with 'w' in external data m.data, its external_data entries then overwritten."""
    path = tmp_path / "m.onnx"
    onnx.save(tiny_model({"w": ARRAYS["w"]}), str(path), save_as_external_data=True, location="m.data", size_threshold=0)
    model = onnx.load(str(path), load_external_data=False)
    init = model.graph.initializer[0]
    info = {e.key: e.value for e in init.external_data} | entries
    del init.external_data[:]
    for key, value in info.items():
        init.external_data.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("entries, said", [
    ({"location": "m.data\0../x"}, "holds a NUL character"),
    ({"location": "../m.data"}, "is not a file inside the model's folder"),
    ({"location": "."}, "is not a file inside the model's folder"),
    ({"location": "gone.data"}, "'gone.data' is not a regular file"),
    ({"length": "0x30"}, "offset/length are not decimal integers: offset '0', length '0x30'"),
    ({"length": "-48"}, "gives -48 bytes at offset 0, but F32 [3, 4] needs 48"),
    ({"offset": str(2**62)}, "bytes 4611686018427387904..4611686018427387952 are past its end"),
])
def test_external_data_is_checked_by_inspect_and_plan_too(tmp_path, capsys, entries, said):
    path = external_model(tmp_path, **entries)
    rules = tmp_path / "same.yaml"
    rules.write_text("version: 1\nrules:\n  - match: '(.+)'\n    target: '{1}'\n")
    for command in (["inspect", str(path)], ["plan", str(path), "--rules", str(rules)]):
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert err.startswith(f"mapper: error: {path}: initializer 'w': ") and said in err, err


def test_typed_values_that_do_not_fit_the_dims_are_a_damaged_model(tmp_path, capsys):
    model = tiny_model({})
    t = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    t.dims[:] = [4]  # as a damaged file has it: make_tensor itself refuses the mismatch
    model.graph.initializer.append(t)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    with pytest.raises(CheckpointError, match=r"initializer 'w' has 2 float_data values but F32 \[4\] needs 4; the "
                                              "model is damaged"):
        OnnxReader(path)
    assert main(["convert", str(path), str(tmp_path / "out.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "initializer 'w' has 2 float_data values" in err and "plugin" not in err and "ValueError" not in err
