"""syncnet_fcn.example: what each of the four strategies changes, after one step per epoch."""
import pytest
import torch

from mapper_core.train import state as training_state
from mapper_core.train.apply import param_groups
from mapper_core.train.freeze import freeze
from mapper_core.train.schedule import UnfreezeScheduler
from syncnet_fcn import example
from syncnet_fcn.fcn import SyncNetFCN
from syncnet_fcn.transfer import syncnet_rules

TRUNK = ("audio_encoder.conv_layers.", "video_encoder.conv_layers.")

pytestmark = pytest.mark.slow  # the module's fixture trains four strategies (over 10 s of CPU)


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    """Runs ``main`` once (the real entry point) and keeps the runs it produced."""
    runs = {}
    original = example.run_strategies

    def spy(*args, **kwargs):
        runs.update(original(*args, **kwargs))
        return runs

    save = tmp_path_factory.mktemp("example") / "progressive"
    example.run_strategies = spy
    try:
        assert example.main(["--steps", "1", "--save", str(save)]) == 0
    finally:
        example.run_strategies = original
    return runs, save


def changed(run, predicate) -> dict[str, bool]:
    after = run.model.state_dict()
    return {k: not torch.equal(v, after[k]) for k, v in run.before.items() if predicate(k)}


def is_trunk(key: str) -> bool:
    return key.startswith(TRUNK)


def groups(run) -> list[tuple[str, float]]:
    return [(g.get("name", "-"), g["lr"]) for g in run.optimizer.param_groups]


def test_frozen_conv_keeps_trunks_and_their_batchnorm_statistics(outcome):
    run = outcome[0]["frozen-conv"]
    trunk = changed(run, is_trunk)
    assert any(k.endswith("running_mean") for k in trunk) and not any(trunk.values())
    assert any(changed(run, lambda k: not is_trunk(k) and k.endswith("weight")).values())
    trainable = {id(p) for p in run.model.parameters() if p.requires_grad}
    assert {id(p) for g in run.optimizer.param_groups for p in g["params"]} == trainable
    assert groups(run) == [("new_layers", 1e-3)]
    assert len(run.losses) == 1


def test_fine_tune_changes_the_trunks_too(outcome):
    run = outcome[0]["fine-tune"]
    trunk = changed(run, is_trunk)
    assert trunk["video_encoder.conv_layers.0.weight"] and trunk["audio_encoder.conv_layers.1.running_mean"]
    assert all(p.requires_grad for p in run.model.parameters())
    assert groups(run) == [("-", 1e-4)]


def test_differential_lr_uses_the_declared_group_rates(outcome):
    run = outcome[0]["differential-lr"]
    assert groups(run) == [("pretrained_conv", 1e-5), ("new_layers", 1e-3)]
    assert changed(run, is_trunk)["audio_encoder.conv_layers.0.weight"]
    assert all(p.requires_grad for p in run.model.parameters())


def test_progressive_unfreezes_by_the_rules_schedule_into_the_same_optimizer(outcome):
    run = outcome[0]["progressive-unfreezing"]
    step = syncnet_rules().schedule[0]
    assert [(u.epoch, u.group) for u in run.unfrozen] == [(step.epoch, step.unfreeze)]
    assert len(run.losses) == step.epoch + 1  # one step per epoch, one epoch past the unfreezing
    assert groups(run) == [("new_layers", 1e-3), ("pretrained_conv", pytest.approx(1e-4))]
    assert changed(run, is_trunk)["video_encoder.conv_layers.0.weight"]
    assert all(p.requires_grad for p in run.model.parameters())
    ids = [id(p) for g in run.optimizer.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(run.model.parameters()))


def test_progressive_checkpoint_resumes_into_fresh_objects(outcome):
    runs, save = outcome
    run = runs["progressive-unfreezing"]
    model = SyncNetFCN(max_offset=15)
    freeze(model, syncnet_rules())
    optimizer = torch.optim.Adam(param_groups(model, syncnet_rules(), trainable_only=True), lr=1e-3)
    scheduler = UnfreezeScheduler(model, optimizer, syncnet_rules())
    info = training_state.load(save, model, optimizer, scheduler)
    assert info.epoch == len(run.losses) and info.frozen_groups == ()
    assert scheduler.position == 1 and groups(run) == [(g["name"], g["lr"]) for g in optimizer.param_groups]
    trained = run.model.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in model.state_dict().items())
