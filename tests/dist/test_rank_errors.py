"""One error per run, from rank 0: what each rank prints after its command failed, and which
collectives it takes part in to find out (they must match rank 0's, or a rank waits forever).
A stand-in process group plays the other ranks (no torch); test_torchrun runs the real thing."""
from __future__ import annotations

import pytest

from mapper_core.dist.ranks import TorchRanks, _Failed, _Secondary

STOPPED = "rank 1: stopped (see rank 0's error)"


class Group:
    """What the other ranks do at each collective: rank 0 broadcasts ``sent`` (when this rank is not 0)."""

    def __init__(self, sent: object = None):
        self.sent, self.calls = sent, []

    def broadcast_object_list(self, box: list, src: int) -> None:
        self.calls.append(("broadcast", box[0]))
        if self.sent is not None:
            box[0] = self.sent

    def barrier(self) -> None:
        self.calls.append(("barrier",))


def ranks(monkeypatch, rank: int, group: Group) -> TorchRanks:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", "2")
    r = TorchRanks()
    r._dist = group  # the group is "joined": no torch, no process group
    return r


def test_rank_0_failing_before_the_ranks_meet_tells_the_others_and_waits_for_them(monkeypatch):
    group = Group()
    r = ranks(monkeypatch, 0, group)
    assert r.failed(["DST: already exists; pass --force"], 2) is None  # it printed its error already
    (kind, sent), barrier = group.calls
    assert kind == "broadcast" and isinstance(sent, _Failed) and (sent.message, sent.code) == (
        "DST: already exists; pass --force", 2)
    assert barrier == ("barrier",)


def test_rank_0_failing_after_the_ranks_met_starts_no_collective(monkeypatch):
    group = Group()
    r = ranks(monkeypatch, 0, group)
    r.met = True
    assert r.failed(["rank 1: writing failed"], 2) is None and group.calls == []


def test_another_rank_with_rank_0s_error_says_one_line(monkeypatch):
    group = Group(_Failed("DST: already exists; pass --force", 2))
    r = ranks(monkeypatch, 1, group)
    assert r.failed(["DST: already exists; pass --force"], 2) == STOPPED
    assert [c[0] for c in group.calls] == ["broadcast", "barrier"]  # rank 0 waits at that barrier


def test_another_rank_with_an_error_of_its_own_prints_it(monkeypatch):
    group = Group(_Failed("rules.yaml:3: bad pattern", 2))
    r = ranks(monkeypatch, 1, group)
    assert r.failed(["src.safetensors: cannot read: No such file"], 2) == \
        "rank 1: src.safetensors: cannot read: No such file"
    assert [c[0] for c in group.calls] == ["broadcast", "barrier"]


def test_another_rank_failing_alone_prints_its_error_and_leaves_rank_0_to_go_on(monkeypatch):
    group = Group(("rank 0's plan", None))  # rank 0 did not fail: its first agree carries the plan
    r = ranks(monkeypatch, 1, group)
    assert r.failed(["src.safetensors: cannot read: No such file"], 2) == \
        "rank 1: src.safetensors: cannot read: No such file"
    assert [c[0] for c in group.calls] == ["broadcast"]  # no barrier rank 0 would not join


def test_a_rank_that_was_going_on_stops_where_rank_0s_failure_arrives(monkeypatch):
    group = Group(_Failed("DST: already exists; pass --force", 2))
    r = ranks(monkeypatch, 1, group)
    with pytest.raises(_Secondary) as info:
        r.agree(("my plan", None))
    assert info.value.exit_code == 2
    assert r.failed([str(info.value)], 2) == STOPPED
    assert [c[0] for c in group.calls] == ["broadcast", "barrier"]


def test_an_error_every_rank_raised_together_is_rank_0s(monkeypatch):
    # the leader's refusal rides in the agreed value; every rank raises its text
    group = Group((None, ("out/m-00001-of-00002.safetensors: already exists", 2)))
    r = ranks(monkeypatch, 1, group)
    r.agree((None, None))
    assert r.failed(["out/m-00001-of-00002.safetensors: already exists"], 2) == STOPPED
    assert r.failed(["something else went wrong"], 2) == "rank 1: something else went wrong"
    assert [c[0] for c in group.calls] == ["broadcast"]  # after meeting, no collective is started


@pytest.mark.parametrize("code, said", [(130, "interrupted"), (143, "terminated")])
def test_a_signal_is_one_line_and_no_collective(monkeypatch, code, said):
    for rank, expected in ((0, None), (1, f"rank 1: stopped ({said})")):
        group = Group()
        assert ranks(monkeypatch, rank, group).failed([f"{said}; nothing was written"], code) == expected
        assert group.calls == []
