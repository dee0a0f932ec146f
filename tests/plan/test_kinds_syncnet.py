"""Issue 9's wrong mappings with matching shapes, against a SyncNet checkpoint and `model:syncnet-fcn`:
each fails (exit 1) through the CLI, while every rules file in the repository stays free of kind
mismatches and the packaged SyncNet rules are clean even under --strict."""
from pathlib import Path

import pytest

pytest.importorskip("torch")
syncnet_fcn = pytest.importorskip("syncnet_fcn")

from cli_runner import mapper  # noqa: E402  (tests/helpers)
from mapper_core.plan import make_plan  # noqa: E402
from mapper_core.rules import load_rules  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WRONG = ROOT / "tests" / "fixtures" / "rules" / "wrong"
PACKAGED = ROOT / "plugins" / "syncnet_fcn" / "src" / "syncnet_fcn" / "rules"
MODELS = ("syncnet-fcn", "syncnet-fcn-attention")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return syncnet_fcn.make_syncnet_checkpoint(tmp_path_factory.mktemp("syncnet") / "syncnet.pt")


@pytest.mark.parametrize("rules, caught", [
    ("conv-bias-into-batchnorm.yaml", ["netcnnaud.0.bias -> audio_encoder.conv_layers.1.bias (rule 0): "
                                       "conv(weight[4d],bias) -> BatchNorm2d"]),
    ("off-by-one.yaml", ["netcnnaud.0.bias -> audio_encoder.conv_layers.1.bias (rule 0): conv(weight[4d],bias) "
                         "-> BatchNorm2d", "netcnnlip.18.bias -> video_encoder.conv_layers.19.bias (rule 1): "
                         "conv(weight[5d],bias) -> BatchNorm3d"]),
    ("swapped-biases.yaml", ["netcnnaud.11.bias -> audio_encoder.conv_layers.14.bias (rule 0): "
                             "conv(weight[4d],bias) -> Conv2d: leaves its module",
                             "netcnnaud.14.bias -> audio_encoder.conv_layers.11.bias (rule 0)"]),
])
def test_wrong_mappings_with_matching_shapes_exit_1(checkpoint, rules, caught):
    result = mapper("plan", checkpoint, "--rules", WRONG / rules, "--target", "model:syncnet-fcn")
    assert result.returncode == 1, result.stdout + result.stderr
    for text in caught:
        assert f"error: kind mismatch: {text}" in result.stdout
    assert "result: ERRORS" in result.stdout
    strict = mapper("plan", checkpoint, "--rules", WRONG / rules, "--target", "model:syncnet-fcn", "--strict")
    assert strict.returncode == 1


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("rules", ["to-fcn", "to-fcn-full"])
def test_the_packaged_rules_are_clean_under_strict(checkpoint, rules, model):
    result = mapper("plan", checkpoint, "--rules", f"syncnet_fcn:{rules}", "--target", f"model:{model}", "--strict")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "result: clean" in result.stdout and "kind mismatches 0" in result.stdout


def _repo_rules():
    files = sorted(PACKAGED.glob("*.yaml")) + sorted((ROOT / "tests" / "fixtures" / "rules").glob("good.*"))
    return files + sorted((ROOT / "tests" / "plugin_project").rglob("rules/*.yaml"))


@pytest.mark.parametrize("path", _repo_rules(), ids=lambda p: p.name)
def test_no_rules_file_in_the_repository_moves_a_tensor_into_another_kind(checkpoint, path):
    from mapper_core.io.formats import open_checkpoint

    with open_checkpoint(checkpoint) as reader:
        specs = reader.specs()
    ruleset = load_rules(path)
    for model in MODELS:
        target = _model_specs(model)
        plan = make_plan(specs, ruleset, target, unmatched="drop")
        assert plan.kind_mismatches == (), [k.detail for k in plan.kind_mismatches]


def _model_specs(model):
    from mapper_core.io.torch_dtypes import spec_of

    net = {"syncnet-fcn": syncnet_fcn.SyncNetFCN, "syncnet-fcn-attention": syncnet_fcn.SyncNetFCN_WithAttention}[model]()
    return {k: spec_of(v) for k, v in net.state_dict().items()}
