"""The torch reader: weights_only always, refusal naming the global, unwrapping, dtypes, aliases."""
from __future__ import annotations

import argparse
import os
import warnings
import zipfile
from collections import OrderedDict

import pytest
import torch

from mapper_core.errors import CheckpointError, UnsafeCheckpointError
from mapper_core.io.formats import builtin_formats, choose_format, open_checkpoint
from mapper_core.io.formats.torch_format import TorchReader, TrustPickleWarning, open_torch, sniff_torch

SHARED_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2,
                 torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool]
NAMES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
         torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2", torch.int64: "I64", torch.int32: "I32",
         torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}


def raw(t: torch.Tensor) -> list[int]:
    return t.contiguous().reshape(-1).view(torch.uint8).tolist()


def save(obj, path, legacy: bool = False):
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


class WritesCanary:
    """Unpickling this calls open(canary, "w"): code execution, visible as a new file."""

    def __init__(self, canary):
        self.canary = str(canary)

    def __reduce__(self):
        return (open, (self.canary, "w"))


class RunsShell:
    def __init__(self, canary):
        self.canary = str(canary)

    def __reduce__(self):
        return (os.system, (f"touch '{self.canary}'",))


# --- safety ----------------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("payload, global_name", [(WritesCanary, "open"), (RunsShell, "system")])
def test_code_running_pickle_is_refused_and_never_runs(tmp_path, legacy, payload, global_name):
    canary = tmp_path / "canary"
    path = save({"w": torch.zeros(2), "x": payload(canary)}, tmp_path / "evil.pt", legacy)
    with pytest.raises(UnsafeCheckpointError) as info:
        open_torch(path)
    message = str(info.value)
    assert str(path) in message
    assert global_name in message
    assert "--trust-pickle" in message and "trust_pickle=True" in message
    assert not canary.exists()


def test_the_canary_would_catch_execution(tmp_path):
    # the control: with the opt-in the same payload does run, so the test above can fail
    canary = tmp_path / "canary"
    path = save({"state_dict": {"w": torch.zeros(2)}, "x": WritesCanary(canary)}, tmp_path / "evil.pt")
    with pytest.warns(TrustPickleWarning, match="arbitrary code"):
        with open_torch(path, trust_pickle=True) as r:
            assert list(r.specs()) == ["w"]
    assert canary.exists()


def test_trust_pickle_loads_a_checkpoint_with_extra_objects_and_warns(tmp_path):
    path = save({"state_dict": {"w": torch.ones(3)}, "args": argparse.Namespace(lr=0.1)}, tmp_path / "a.ckpt")
    with pytest.raises(UnsafeCheckpointError, match="argparse.Namespace"):
        open_torch(path)
    with pytest.warns(TrustPickleWarning) as record:
        r = open_torch(path, trust_pickle=True)
    assert issubclass(TrustPickleWarning, UserWarning)
    assert str(path) in str(record[0].message)
    assert r.get_tensor("w").tolist() == [1.0, 1.0, 1.0]


def test_every_offending_global_is_named(tmp_path):
    import pathlib

    path = save({"w": torch.zeros(1), "args": argparse.Namespace(), "dir": pathlib.PurePosixPath("x")}, tmp_path / "two.pt")
    with pytest.raises(UnsafeCheckpointError, match="globals 'argparse.Namespace', 'pathlib.PurePosixPath'"):
        open_torch(path)


def test_safe_file_does_not_warn(tmp_path):
    path = save({"w": torch.ones(1)}, tmp_path / "ok.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrustPickleWarning)
        open_torch(path)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04broken", b"\x80\x02garbage"])
def test_unreadable_file_is_a_checkpoint_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.pt") as info:
        open_torch(path)
    assert type(info.value) is CheckpointError  # damaged, not "unsafe"


def reworded_refusal(monkeypatch, words: str) -> None:
    """torch.load fails as weights_only does, with wording torch never used."""
    import pickle

    def load(*args, **kwargs):
        raise pickle.UnpicklingError(words)

    monkeypatch.setattr(torch, "load", load)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_refusal_or_damage_is_told_by_the_file_not_by_torchs_wording(tmp_path, monkeypatch, legacy):
    path = save({"w": torch.zeros(1), "args": argparse.Namespace()}, tmp_path / "ns.pt", legacy)
    reworded_refusal(monkeypatch, "a sentence torch never wrote")
    with pytest.raises(UnsafeCheckpointError) as info:
        open_torch(path)
    if legacy:  # no public scanner for the legacy format: torch's own reason is passed on
        assert "weights_only refuses (a sentence torch never wrote)" in str(info.value)
    else:  # the zip's pickle is scanned statically, whatever the message says
        assert "the global 'argparse.Namespace'" in str(info.value)


def test_a_damaged_pickle_stays_damaged_whatever_torch_says(tmp_path, monkeypatch):
    path = save({"w": torch.zeros(1)}, tmp_path / "ok.pt")
    damaged = tmp_path / "damaged.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(damaged, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data[: len(data) // 2] if item.filename.endswith("data.pkl") else data)
    reworded_refusal(monkeypatch, "Unsupported global: GLOBAL os.system")
    with pytest.raises(CheckpointError, match="damaged pickle") as info:
        open_torch(damaged)
    assert type(info.value) is CheckpointError


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archive_is_refused(tmp_path):
    path = tmp_path / "script.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))
    with pytest.raises(CheckpointError, match="TorchScript"):
        open_torch(path)


# --- dtypes and shapes -----------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("dtype", SHARED_DTYPES, ids=str)
def test_every_shared_dtype_reads_back_bit_exact(tmp_path, dtype, legacy):
    base = (torch.randn(4, 6, generator=torch.Generator().manual_seed(1)) * 40).to(dtype)
    state = {"full": base, "scalar": base[1, 2].clone(), "empty": base[:0], "strided": base.t()[::2]}
    path = save(state, tmp_path / "d.pt", legacy)
    if legacy and dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        # torch itself cannot read float8 from the legacy format; we must fail cleanly, not crash
        with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
            open_torch(path)
        return
    with open_torch(path) as r:
        specs = r.specs()
        for key, want in state.items():
            assert specs[key].dtype == NAMES[dtype]
            assert specs[key].shape == tuple(want.shape)
            got = r.get_tensor(key)
            assert got.dtype == dtype and got.shape == want.shape
            assert raw(got) == raw(want)
    assert not state["strided"].is_contiguous()


def test_a_dtype_safetensors_cannot_store_is_listed_and_its_bytes_refused_naming_the_key(tmp_path):
    path = save({"ok": torch.zeros(2), "phase": torch.zeros(2, dtype=torch.complex128)}, tmp_path / "c.pt")
    r = open_torch(path)
    assert r.specs()["phase"].dtype == "complex128" and r.unstorable_keys == {"phase": "complex128"}
    assert r.get_tensor("ok").shape == (2,)
    with pytest.raises(CheckpointError, match="'phase' has dtype complex128, which safetensors cannot store") as info:
        r.get_tensor("phase")
    assert str(path) in str(info.value) and "skip it in the rules" in str(info.value)


def test_sparse_tensor_is_refused(tmp_path):
    path = save({"s": torch.eye(3).to_sparse()}, tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match="'s'.*layout"):
        open_torch(path)


def test_parameters_come_back_as_plain_tensors(tmp_path):
    path = save(torch.nn.Linear(3, 2).state_dict(keep_vars=True), tmp_path / "p.pt")
    r = open_torch(path)
    assert type(r.get_tensor("weight")) is torch.Tensor and not r.get_tensor("weight").requires_grad


# --- unwrapping ------------------------------------------------------------------------------


def weights():
    return OrderedDict(a=torch.ones(2), b=torch.zeros(3))


@pytest.mark.parametrize("wrapper, where", [
    (lambda sd: sd, ""),
    (lambda sd: {"state_dict": sd, "epoch": 4, "optimizer": {"lr": 0.1}}, "state_dict"),
    (lambda sd: {"model_state_dict": sd, "epoch": 4}, "model_state_dict"),
    (lambda sd: {"model": sd}, "model"),
    (lambda sd: {"module": sd}, "module"),
    (lambda sd: {"net": sd, "step": 9}, "net"),
    (lambda sd: {"model": {"state_dict": sd, "name": "x"}}, "model.state_dict"),
    (lambda sd: {"state_dict": sd, "model": {"other": torch.ones(1)}}, "state_dict"),  # priority order
])
def test_unwrap_rule(tmp_path, wrapper, where):
    path = save(wrapper(weights()), tmp_path / "n.pt")
    r = open_torch(path)
    assert r.unwrap_path == where
    assert list(r.specs()) == ["a", "b"]


def test_module_prefix_is_stripped_only_when_every_key_has_it(tmp_path):
    both = save({"module.a": torch.ones(1), "module.module.b": torch.ones(1)}, tmp_path / "dp.pt")
    r = open_torch(both)
    assert (list(r.specs()), r.stripped_prefix) == (["a", "module.b"], "module.")
    nested = save({"module.module.a": torch.ones(1)}, tmp_path / "dp2.pt")
    assert list(open_torch(nested).specs()) == ["a"]
    mixed = save({"module.a": torch.ones(1), "b": torch.ones(1)}, tmp_path / "mixed.pt")
    r = open_torch(mixed)
    assert (list(r.specs()), r.stripped_prefix) == (["module.a", "b"], "")


def test_overrides(tmp_path):
    path = save({"ema": {"model.a": torch.ones(1), "model.b": torch.ones(1)},
                 "state_dict": {"module.a": torch.zeros(1)}}, tmp_path / "o.pt")
    r = open_torch(path, unwrap="ema", strip_prefix="model.")
    assert (r.unwrap_path, r.stripped_prefix, list(r.specs())) == ("ema", "model.", ["a", "b"])
    r = open_torch(path, strip_prefix="")
    assert list(r.specs()) == ["module.a"]
    top = save({"a": torch.ones(1)}, tmp_path / "t.pt")
    assert open_torch(top, unwrap="").unwrap_path == ""


@pytest.mark.parametrize("obj, options, expected", [
    ({"epoch": 3, "name": "x"}, {}, "found no state dict.*'epoch'"),
    ({"model": {"epoch": 3}}, {}, r"'model' \(chosen by the unwrap rule\) holds no tensors, only 'epoch' \(int\)"),
    ([torch.ones(1)], {}, "found no state dict: the file holds a list"),
    ({"state_dict": {"w": torch.ones(1)}}, {"unwrap": "weights"}, "no key 'weights'"),
    ({"state_dict": {"w": torch.ones(1)}, "epoch": 1}, {"unwrap": ""},
     r"holds no tensors of its own; they are in 'state_dict' \(dict, 1 tensor\): pass --unwrap state_dict"),
    ({"model": {"epoch": 1}}, {"unwrap": "model"}, r"--unwrap.*'epoch'"),
    ({"state_dict": {"w": torch.ones(1)}, "epoch": 1}, {"unwrap": "epoch"}, "not a dict of tensors"),
    ({"a": torch.ones(1)}, {"strip_prefix": "model."}, "no key starts with the prefix 'model.'"),
    ({"x.a": torch.ones(1), "a": torch.ones(1)}, {"strip_prefix": "x."}, "two keys 'a'"),
])
def test_unwrap_errors_are_clear(tmp_path, obj, options, expected):
    path = save(obj, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=expected) as info:
        open_torch(path, **options)
    assert str(path) in str(info.value)


# --- aliasing --------------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_aliases_and_shared_storage(tmp_path, legacy):
    emb = torch.randn(10, 4)
    state = {"embed.weight": emb, "head.weight": emb, "head2.weight": emb.view(10, 4),
             "row0": emb[0], "transposed": emb.t(), "own": torch.randn(3), "e1": torch.zeros(0), "e2": torch.zeros(0)}
    path = save(state, tmp_path / "tied.pt", legacy)
    r = open_torch(path)
    assert r.aliases() == {"head.weight": "embed.weight", "head2.weight": "embed.weight"}
    assert set(r.shares_storage("embed.weight")) == {"head.weight", "head2.weight", "row0", "transposed"}
    assert set(r.shares_storage("row0")) == {"embed.weight", "head.weight", "head2.weight", "transposed"}
    assert r.shares_storage("own") == () and r.shares_storage("e1") == ()
    assert raw(r.get_tensor("head.weight")) == raw(emb)


def test_no_aliases_in_a_plain_state_dict(tmp_path):
    path = save(torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 2)).state_dict(), tmp_path / "m.pt")
    r = open_torch(path)
    assert r.aliases() == {} and all(r.shares_storage(k) == () for k in r.specs())


# --- sniffing and the seam -------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".model", ".ckpt", ".weird"])
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_torch_files_are_detected_by_content(tmp_path, suffix, legacy):
    path = save({"a": torch.ones(1)}, tmp_path / f"w{suffix}", legacy)
    assert sniff_torch(path)
    assert choose_format(path, builtin_formats()).name == "torch"
    with open_checkpoint(path) as r:
        assert isinstance(r, TorchReader) and list(r.specs()) == ["a"]


def test_non_torch_zip_is_not_sniffed(tmp_path):
    import zipfile

    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hi")
    assert not sniff_torch(path)


def test_torch_options_are_ignored_by_other_formats(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "x.safetensors"
    save_file({"a": torch.ones(1)}, str(path))
    with open_checkpoint(path, trust_pickle=True, unwrap="", strip_prefix="") as r:
        assert list(r.specs()) == ["a"]


def test_close_releases_tensors(tmp_path):
    path = save({"a": torch.ones(1)}, tmp_path / "c.pt")
    with open_torch(path) as r:
        r.get_tensor("a")
    with pytest.raises(CheckpointError):
        r.get_tensor("a")


@pytest.mark.parametrize("strip", [None, ""])
def test_keys_of_different_types_named_alike_are_refused_not_one_dropped(tmp_path, strip):
    path = tmp_path / "intkey.pt"
    torch.save({"0": torch.zeros(2), 0: torch.ones(2)}, path)  # both are '0' as text
    with pytest.raises(CheckpointError, match=r"two keys are both named '0' as text .*rename one"):
        open_torch(path, strip_prefix=strip).specs()
