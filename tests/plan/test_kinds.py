"""Module kinds from headers: signatures, kinds of real module types, compatibility."""
import pytest

from mapper_core.plan.kinds import classify, compatible, group_modules, kind_of_type, split_key


@pytest.mark.parametrize("members, kind, signature", [
    ({"weight": 4, "bias": 1}, "conv", "conv(weight[4d],bias)"),
    ({"weight": 3}, "conv", "conv(weight[3d])"),
    ({"weight": 5, "bias": 1}, "conv", "conv(weight[5d],bias)"),
    ({"weight": 1, "bias": 1, "running_mean": 1, "running_var": 1, "num_batches_tracked": 0}, "batchnorm",
     "batchnorm(weight[1d],bias,running_mean,running_var,num_batches_tracked)"),
    ({"running_mean": 1, "running_var": 1}, "batchnorm", "batchnorm(running_mean,running_var)"),
    ({"weight": 2, "bias": 1}, "linear", "linear(weight[2d],bias)"),
    ({"weight": 2}, "matrix", "matrix(weight[2d])"),
    ({"weight": 1, "bias": 1}, "norm", "norm(weight[1d],bias)"),
    ({"in_proj_weight": 2, "in_proj_bias": 1}, "unknown", "unknown(in_proj_bias,in_proj_weight[2d])"),
    ({"bias": 1}, "unknown", "unknown(bias)"),
    ({"weight": 6}, "unknown", "unknown(weight[6d])"),
    ({"weight": 4, "bias": 1, "scale": 0}, "unknown", "unknown(weight[4d],bias,scale)"),
])
def test_signatures_name_members_ranks_and_buffers(members, kind, signature):
    found = classify(members)
    assert (found.kind, found.signature) == (kind, signature)


def test_keys_group_into_modules_by_the_prefix_before_the_last_dot():
    assert split_key("a.b.weight") == ("a.b", "weight") and split_key("step") == ("", "step")
    assert group_modules([("a.0.weight", 4), ("a.0.bias", 1), ("a.1.weight", 1), ("cls", 3)]) == {
        "a.0": {"weight": 4, "bias": 1}, "a.1": {"weight": 1}, "": {"cls": 3}}


@pytest.mark.parametrize("name, kind", [
    ("Conv2d", "conv"), ("ConvTranspose3d", "conv"), ("BatchNorm1d", "batchnorm"), ("SyncBatchNorm", "batchnorm"),
    ("Linear", "linear"), ("LayerNorm", "norm"), ("Embedding", "embedding"), ("MultiheadAttention", "unknown")])
def test_real_module_types_have_kinds(name, kind):
    assert kind_of_type(name) == kind


@pytest.mark.parametrize("a, b, ok", [
    ("conv", "conv", True), ("conv", "batchnorm", False), ("linear", "conv", False), ("norm", "batchnorm", True),
    ("matrix", "linear", True), ("matrix", "embedding", True), ("linear", "embedding", False),
    ("unknown", "conv", True), ("batchnorm", "unknown", True), ("norm", "conv", False)])
def test_compatibility_is_symmetric_and_unknown_never_conflicts(a, b, ok):
    assert compatible(a, b) is ok and compatible(b, a) is ok
