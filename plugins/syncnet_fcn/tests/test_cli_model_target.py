"""`mapper plan --target model:NAME`: plan against a model a plugin contributes, built with --model-arg."""
from __future__ import annotations

import json

import pytest

from mapper_core.cli.plan import parse_model_args
from mapper_core.errors import BadInputError
from syncnet_fcn.models import make_syncnet_checkpoint

from cli_runner import mapper


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_syncnet_checkpoint(tmp_path_factory.mktemp("ckpt") / "syncnet_v2.model", seed=0)


def test_full_rule_set_transfers_everything_into_a_1024_embedding(ckpt):
    proc = mapper("plan", ckpt, "--rules", "syncnet_fcn:to-fcn-full", "--target", "model:syncnet-fcn",
                "--model-arg", "embedding_dim=1024", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert len(data["mapped"]) == 102 and data["mismatched"] == [] and data["unmatched"] == []
    head = next(m for m in data["mapped"] if m["source"] == "netfcaud.0.weight")
    assert head["target"] == "audio_encoder.channel_conv.0.weight" and head["out_shape"] == [512, 512, 1]


def test_with_512_the_last_projection_is_skipped_and_reported(ckpt):
    proc = mapper("plan", ckpt, "--rules", "syncnet_fcn:to-fcn-full", "--target", "model:syncnet-fcn")
    assert proc.returncode == 0, proc.stderr
    assert "PROBLEMS (0 errors, 4 skipped on shape mismatch)" in proc.stdout
    assert ("skipped: netfclip.3.weight -> video_encoder.channel_conv.3.weight (rule 4, line 25): shape [1024, 512] "
            "([1024, 512, 1] after its transform) but target has [512, 512, 1]") in proc.stdout


def test_unknown_model_and_bad_arguments_are_bad_input(ckpt):
    unknown = mapper("plan", ckpt, "--rules", "syncnet_fcn:to-fcn", "--target", "model:nope")
    assert unknown.returncode == 2 and "no model named 'nope'" in unknown.stderr and "syncnet-fcn" in unknown.stderr
    bad = mapper("plan", ckpt, "--rules", "syncnet_fcn:to-fcn", "--target", "model:syncnet-fcn",
                 "--model-arg", "colour=1")
    assert bad.returncode == 2 and "colour" in bad.stderr


def test_model_args_are_json_values_or_text():
    assert parse_model_args(["embedding_dim=1024", "name=fcn", "flag=true"]) == {
        "embedding_dim": 1024, "name": "fcn", "flag": True}
    with pytest.raises(BadInputError, match="KEY=VALUE"):
        parse_model_args(["1024"])
