"""What torch.onnx.export does to names, read back: folded constants are explained (cause and what to
do) instead of a bare "N left behind", and the names the exporter gives equal parameters through
Identity nodes are read, so an export without folding converts back to the whole state dict."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from mapper_core.cli import main  # noqa: E402
from mapper_core.plugins import CheckpointWarning, open_checkpoint  # noqa: E402
from mapper_onnx import OnnxReader  # noqa: E402


class ConvBN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)  # fresh: running_var equals weight (ones), running_mean equals bias
        self.fc = torch.nn.Linear(4 * 6 * 6, 5)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).flatten(1))


def export(tmp_path, name: str, **options):
    torch.manual_seed(0)
    module = ConvBN().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(module, (torch.randn(1, 3, 8, 8),), str(tmp_path / name), dynamo=False, **options)
    return module, tmp_path / name


def test_a_folded_export_says_why_its_tensors_have_no_names_and_what_to_do(tmp_path, capsys):
    _, path = export(tmp_path, "folded.onnx")
    assert main(["convert", str(path), str(tmp_path / "o.safetensors"), "--rules", "onnx:torch-export"]) == 0
    done = capsys.readouterr()
    warning = next(line for line in done.err.splitlines() if line.startswith("mapper: warning:"))
    assert f"{path}: 2 of 4 initializers ('onnx::Conv_" in warning
    assert "do_constant_folding=True, its default (each BatchNorm fused into the convolution before it" in warning
    assert "no rule gives them state_dict names" in warning
    assert "export the model again with torch.onnx.export(..., do_constant_folding=False)" in warning
    assert "rules 'torch-export': 2 source keys left behind" in done.out
    with pytest.warns(CheckpointWarning, match=r"2 of 4 initializers"):
        open_checkpoint(path).close()


def test_without_folding_every_parameter_converts_back_under_its_name(tmp_path, capsys):
    module, path = export(tmp_path, "kept.onnx", do_constant_folding=False)
    out = tmp_path / "kept.safetensors"
    assert main(["convert", str(path), str(out), "--rules", "onnx:torch-export", "--verify"]) == 0
    done = capsys.readouterr()
    assert "warning" not in done.err and "left behind" not in done.out
    converted = load_file(out)
    state = {k: v for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert sorted(converted) == sorted(state)  # bn.running_var/running_mean: Identity names, read too
    for key, value in state.items():
        assert torch.equal(converted[key], value), key


def test_identity_names_are_copies_of_their_initializer_chained_and_only_of_initializers(tmp_path):
    a = np.arange(3, dtype=np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])
    nodes = [helper.make_node("Identity", ["a"], ["b"]), helper.make_node("Identity", ["b"], ["c"]),
             helper.make_node("Identity", ["x"], ["not_a_weight"]), helper.make_node("Add", ["not_a_weight", "c"], ["y"])]
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=[numpy_helper.from_array(a, name="a")])
    onnx.save(helper.make_model(graph, producer_name="pytorch"), str(tmp_path / "id.onnx"))
    with OnnxReader(tmp_path / "id.onnx") as reader:
        assert list(reader.specs()) == ["a", "b", "c"]
        np.testing.assert_array_equal(reader.get_tensor("c").numpy(), a)
        reader.get_tensor("c").add_(1)  # a copy: the others are untouched
        np.testing.assert_array_equal(reader.get_tensor("a").numpy(), a)


def test_onnx_names_from_another_producer_are_not_explained_as_torch_folding(tmp_path):
    arr = numpy_helper.from_array(np.ones(2, dtype=np.float32), name="onnx::Conv_1")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], initializer=[arr])
    onnx.save(helper.make_model(graph, producer_name="other"), str(tmp_path / "o.onnx"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)
        assert list(OnnxReader(tmp_path / "o.onnx").specs()) == ["onnx::Conv_1"]
