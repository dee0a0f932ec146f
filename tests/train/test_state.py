"""training_state: pickle-free checkpoints that resume bit-identically on CPU."""
import json
import pickle

import pytest
import torch
from safetensors import safe_open
from torch import nn

from mapper_core.train import state as training_state
from mapper_core.errors import CheckpointError
from mapper_core.train.freeze import freeze, stats_frozen
from mapper_core.rules import parse_rules
from mapper_core.train.schedule import UnfreezeScheduler

RULES = parse_rules("""\
version: 1
rules: []
freeze:
  body: ['body\\..*']
schedule:
  - {epoch: 1, unfreeze: body, lr_scale: 0.1}
""", "r.yaml")
PER_EPOCH = 2
STEPS = 6


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(8, 3))  # dropout: the RNG state matters

    def forward(self, x):
        return self.head(self.body(x))


OPTIMIZERS = {
    "adam": lambda params: torch.optim.Adam(params, lr=0.01),
    "sgd": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
}


def build(kind: str, seed: int):
    torch.manual_seed(seed)  # fresh objects start from different weights than the saved ones
    model = Net()
    freeze(model, RULES)
    optimizer = OPTIMIZERS[kind]([p for p in model.parameters() if p.requires_grad])
    return model, optimizer, UnfreezeScheduler(model, optimizer, RULES)


def train(model, optimizer, scheduler, start: int, stop: int) -> None:
    for step in range(start, stop):
        if step % PER_EPOCH == 0:
            scheduler.step(step // PER_EPOCH)
        model.train()
        g = torch.Generator().manual_seed(step)
        x, y = torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def assert_same(a_model, a_opt, b_model, b_opt):
    a, b = a_model.state_dict(), b_model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    sa, sb = a_opt.state_dict(), b_opt.state_dict()
    assert [{k: v for k, v in g.items()} for g in sa["param_groups"]] == \
        [{k: v for k, v in g.items()} for g in sb["param_groups"]]
    assert sa["state"].keys() == sb["state"].keys()
    for i in sa["state"]:
        for k, v in sa["state"][i].items():
            w = sb["state"][i][k]
            assert torch.equal(v, w) if isinstance(v, torch.Tensor) else v == w, (i, k)


@pytest.mark.parametrize("kind", ["adam", "sgd"])
@pytest.mark.parametrize("split", [3, 2], ids=["after-unfreeze", "before-unfreeze"])
def test_resume_is_bit_identical_to_never_stopping(tmp_path, kind, split):
    model, optimizer, sched = build(kind, seed=0)
    train(model, optimizer, sched, 0, STEPS)

    first, first_opt, first_sched = build(kind, seed=0)
    train(first, first_opt, first_sched, 0, split)
    training_state.save(tmp_path / "ckpt", first, first_opt, first_sched, epoch=split // PER_EPOCH,
                        extra={"step": split})
    torch.manual_seed(12345)  # the RNG state must come from the checkpoint, not from luck
    resumed, resumed_opt, resumed_sched = build(kind, seed=7)
    info = training_state.load(tmp_path / "ckpt", resumed, resumed_opt, resumed_sched)
    assert info.extra == {"step": split}
    assert len(resumed_opt.param_groups) == len(first_opt.param_groups)
    train(resumed, resumed_opt, resumed_sched, info.extra["step"], STEPS)

    assert len(optimizer.param_groups) == 2 and optimizer.param_groups[1]["name"] == "body"
    assert_same(model, optimizer, resumed, resumed_opt)


def test_resume_restores_frozen_groups_and_batchnorm_mode(tmp_path):
    model, optimizer, sched = build("adam", seed=0)
    train(model, optimizer, sched, 0, 1)  # epoch 0: body still frozen
    model.eval()
    model.head.train()
    training_state.save(tmp_path / "c", model, optimizer, sched, epoch=0)

    torch.manual_seed(3)
    fresh = Net()  # never frozen: everything must come from the checkpoint
    fresh_opt = torch.optim.Adam([p for n, p in fresh.named_parameters() if not n.startswith("body.")], lr=0.01)
    info = training_state.load(tmp_path / "c", fresh, fresh_opt)
    assert info.frozen_groups == ("body",) and info.epoch == 0
    assert not any(p.requires_grad for p in fresh.body.parameters())
    assert all(p.requires_grad for p in fresh.head.parameters())
    assert stats_frozen(fresh.body[1])
    assert {n: m.training for n, m in fresh.named_modules()} == {n: m.training for n, m in model.named_modules()}
    before = fresh.body[1].running_mean.clone()
    fresh.train()
    fresh(torch.randn(8, 4))
    assert torch.equal(before, fresh.body[1].running_mean)


def test_unfrozen_batchnorm_is_restored_as_unfrozen(tmp_path):
    torch.manual_seed(0)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    training_state.save(tmp_path / "c", model, optimizer, ruleset=RULES)
    fresh = Net()
    freeze(fresh, RULES)  # frozen now, but the checkpoint says otherwise
    training_state.load(tmp_path / "c", fresh, torch.optim.SGD(fresh.parameters(), lr=0.1))
    assert not stats_frozen(fresh.body[1]) and all(p.requires_grad for p in fresh.parameters())


def test_files_are_safetensors_and_json_and_nothing_pickles(tmp_path, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("pickle used")

    for target, name in ((torch, "save"), (torch, "load"), (pickle, "dumps"), (pickle, "loads"),
                         (pickle, "dump"), (pickle, "load")):
        monkeypatch.setattr(target, name, refuse)
    model, optimizer, sched = build("adam", seed=0)
    train(model, optimizer, sched, 0, 3)
    folder = training_state.save(tmp_path / "c", model, optimizer, sched, epoch=1, extra={"t": torch.ones(2)})
    meta = json.loads((folder / training_state.META).read_text())
    assert meta["optimizer"]["param_groups"][1]["params"] == ["body.0.weight", "body.0.bias",
                                                              "body.1.weight", "body.1.bias"]
    assert meta["scheduler"]["position"] == 1
    with safe_open(str(folder / training_state.TENSORS), "pt") as f:
        keys = set(f.keys())
    assert "model/body.1.running_mean" in keys and "optimizer/body.0.weight/exp_avg" in keys
    assert sorted(p.name for p in folder.iterdir()) == [training_state.META, training_state.TENSORS]
    fresh, fresh_opt, fresh_sched = build("adam", seed=1)
    info = training_state.load(folder, fresh, fresh_opt, fresh_sched)
    assert torch.equal(info.extra["t"], torch.ones(2))


def test_overwrite_replaces_the_previous_checkpoint(tmp_path):
    model, optimizer, sched = build("sgd", seed=0)
    training_state.save(tmp_path / "c", model, optimizer, sched, epoch=1)
    training_state.save(tmp_path / "c", model, optimizer, sched, epoch=2)
    fresh, fresh_opt, fresh_sched = build("sgd", seed=0)
    assert training_state.load(tmp_path / "c", fresh, fresh_opt, fresh_sched).epoch == 2
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [training_state.META, training_state.TENSORS]


def test_torn_or_mismatched_checkpoints_are_refused(tmp_path):
    model, optimizer, sched = build("adam", seed=0)
    train(model, optimizer, sched, 0, 3)
    folder = training_state.save(tmp_path / "c", model, optimizer, sched)
    fresh, fresh_opt, _ = build("adam", seed=0)
    wrong = torch.optim.SGD(fresh.parameters(), lr=0.1)
    with pytest.raises(CheckpointError, match="holds a Adam state, but the optimizer is a SGD"):
        training_state.load(folder, fresh, wrong)
    regrouped = torch.optim.Adam(fresh.parameters(), lr=0.01)  # not how training started
    with pytest.raises(CheckpointError, match="optimizer group 0 holds"):
        training_state.load(folder, fresh, regrouped)
    with pytest.raises(CheckpointError, match="no scheduler state was saved"):
        training_state.load(training_state.save(tmp_path / "n", model, optimizer), fresh, fresh_opt, sched)
    data = bytearray((folder / training_state.TENSORS).read_bytes())
    data[-1] ^= 1
    (folder / training_state.TENSORS).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256 differs"):
        training_state.load(folder, fresh, fresh_opt)
    with pytest.raises(CheckpointError, match="not found"):
        training_state.load(tmp_path / "missing", fresh, fresh_opt)


def test_values_json_cannot_hold_are_refused_before_anything_is_written(tmp_path):
    model, optimizer, _ = build("sgd", seed=0)
    with pytest.raises(CheckpointError, match="extra/when: cannot store a object"):
        training_state.save(tmp_path / "c", model, optimizer, extra={"when": object()})
    assert not (tmp_path / "c" / training_state.META).exists()


def test_checkpoint_files_get_the_usual_mode_and_no_temporaries_remain(tmp_path):
    import os

    model, optimizer, _ = build("sgd", seed=0)
    folder = training_state.save(tmp_path / "c", model, optimizer)
    mask = os.umask(0)
    os.umask(mask)
    for name in (training_state.META, training_state.TENSORS):
        assert (folder / name).stat().st_mode & 0o777 == 0o666 & ~mask
    assert sorted(p.name for p in folder.iterdir()) == [training_state.META, training_state.TENSORS]


def test_save_leaves_the_applications_sigterm_handler_alone(tmp_path, monkeypatch):
    import signal

    def application(signum, frame):  # a training job's own preemption handler
        raise AssertionError("not called in this test")

    real_settle, during = training_state._settle, []

    def settle(path):  # runs while the temporaries are open, before the rename
        during.append(signal.getsignal(signal.SIGTERM))
        real_settle(path)

    monkeypatch.setattr(training_state, "_settle", settle)
    previous = signal.signal(signal.SIGTERM, application)
    try:
        model, optimizer, scheduler = build("sgd", 0)
        training_state.save(tmp_path / "ckpt", model, optimizer, scheduler)
        assert during == [application]
        assert signal.getsignal(signal.SIGTERM) is application
    finally:
        signal.signal(signal.SIGTERM, previous)
