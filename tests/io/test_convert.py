"""convert(): plain conversion, plans, shards, provenance, round trips, safe output (aliases: test_convert_aliases)."""
from __future__ import annotations

import hashlib
import json
import os
import textwrap

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mapper_core import __version__
from mapper_core.io.convert import ConvertResult, convert
from mapper_core.errors import BadInputError, CheckpointError, OutputExistsError, PlanError, VerifyError
from mapper_core.io.formats import open_checkpoint
from mapper_core.io.formats.aliases import load_safetensors
from mapper_core.plan.make import make_plan
from mapper_core.rules import load_rules
from mapper_core.io.torch_dtypes import NAME_TO_TORCH
from bitwise import same_bits  # tests/helpers
from cli_runner import python_process  # tests/helpers

RULES = """\
version: 1
name: renamer
rules:
  - match: 'enc\\.(\\d+)\\.(weight|bias)'
    target: 'encoder.layers.{1}.{2}'
  - match: 'head\\.(.+)'
    target: 'classifier.{1}'
skip:
  - 'aux\\..*'
"""


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def weights():
    g = torch.Generator().manual_seed(0)
    return {
        "enc.0.weight": torch.randn(8, 4, generator=g), "enc.0.bias": torch.randn(8, generator=g),
        "enc.1.weight": torch.randn(8, 8, generator=g).half(), "enc.1.bias": torch.randn(8, generator=g).half(),
        "head.weight": torch.randn(2, 8, generator=g), "aux.counter": torch.tensor(7),
    }


@pytest.fixture
def st_src(tmp_path, weights):
    path = tmp_path / "src.safetensors"
    save_file(weights, str(path), metadata={"format": "pt", "origin": "unit test"})
    return path


@pytest.fixture
def rules(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return load_rules(path)


def plan_for(reader, ruleset):
    return make_plan(reader.specs(), ruleset, source_origin=str(reader.path))


# --- safetensors → safetensors ---------------------------------------------------------------

def test_plain_conversion_copies_every_tensor_and_records_provenance(tmp_path, st_src, weights):
    out = tmp_path / "out.safetensors"
    result = convert(st_src, out)
    loaded = load_file(str(out))
    assert set(loaded) == set(weights) and all(same_bits(loaded[k], t) for k, t in weights.items())
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "pt" and meta["origin"] == "unit test"
    assert meta["mapper.version"] == __version__
    assert meta["mapper.source"] == "src.safetensors"
    assert meta["mapper.source_sha256"] == sha256(st_src) == result.source_sha256
    assert "mapper.rules" not in meta
    assert result.method == "byte-copy" and result.tensors == 6 and result.checked is None
    assert result.file_bytes == out.stat().st_size and result.paths == (str(out),)


def test_rules_rename_and_skip_and_name_the_rules_in_metadata(tmp_path, st_src, weights, rules):
    out = tmp_path / "out.safetensors"
    with open_checkpoint(st_src) as reader:
        result = convert(st_src, out, reader=reader, plan=plan_for(reader, rules), rules_sha256=rules.sha256,
                         verify=True)
    loaded = load_file(str(out))
    assert sorted(loaded) == ["classifier.weight", "encoder.layers.0.bias", "encoder.layers.0.weight",
                              "encoder.layers.1.bias", "encoder.layers.1.weight"]
    assert same_bits(loaded["encoder.layers.1.weight"], weights["enc.1.weight"])
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    assert meta["mapper.rules"] == "renamer"
    assert meta["mapper.rules_sha256"] == hashlib.sha256(RULES.encode()).hexdigest()
    assert result.left_behind == 1 and result.checked == 5 and result.rules == "renamer"
    json.dumps(result.to_dict())  # the --json output


def test_the_byte_copy_path_never_imports_torch(tmp_path, st_src, rules):
    code = textwrap.dedent(f"""
        import sys
        from mapper_core.io.convert import convert
        from mapper_core.io.formats import open_checkpoint
        from mapper_core.plan.make import make_plan
        from mapper_core.rules import load_rules
        reader = open_checkpoint({str(st_src)!r})
        plan = make_plan(reader.specs(), load_rules({str(rules.origin)!r}))
        convert({str(st_src)!r}, {str(tmp_path / 'out.safetensors')!r}, reader=reader, plan=plan)
        print("torch" in sys.modules)
    """)
    out = python_process(code, check=True)
    assert out.stdout.strip() == "False"


def test_a_plan_with_errors_writes_nothing(tmp_path, st_src):
    path = tmp_path / "collide.yaml"
    path.write_text("version: 1\nname: c\nrules:\n  - match: 'enc\\.\\d+\\.(weight|bias)'\n    target: 'x.{1}'\n")
    ruleset = load_rules(path)
    before = files(tmp_path)
    with open_checkpoint(st_src) as reader:
        plan = plan_for(reader, ruleset)
        with pytest.raises(PlanError, match="collision: enc.0.weight, enc.1.weight -> x.weight"):
            convert(st_src, tmp_path / "out.safetensors", reader=reader, plan=plan)
    assert files(tmp_path) == before


@pytest.mark.parametrize("policy, written", [("error", None), ("drop", ["h.weight"]),
                                             ("keep", ["aux.counter", "enc.0.bias", "enc.0.weight", "enc.1.bias",
                                                       "enc.1.weight", "h.weight"])])
def test_unmatched_keys_follow_the_policy(tmp_path, st_src, policy, written):
    """Issue 9: unmatched keys were dropped silently; now error (the default) refuses them."""
    path = tmp_path / "partial.yaml"
    path.write_text("version: 1\nname: p\nrules:\n  - match: 'head\\.(.+)'\n    target: 'h.{1}'\n")
    out = tmp_path / "out.safetensors"
    with open_checkpoint(st_src) as reader:
        plan = make_plan(reader.specs(), load_rules(path), unmatched=policy)
        if written is None:
            with pytest.raises(PlanError, match=r"(?s)skip pattern.*unmatched: keep.*unmatched: drop.*--unmatched.*"
                                                r"unmatched: enc.0.weight"):
                convert(st_src, out, reader=reader, plan=plan)
            assert not out.exists()
        else:
            assert convert(st_src, out, reader=reader, plan=plan).tensors == len(written)
            assert sorted(load_file(str(out))) == written


def test_a_plan_made_for_another_file_is_refused(tmp_path, st_src, rules):
    other = tmp_path / "other.safetensors"
    save_file({"enc.0.weight": torch.zeros(3)}, str(other))
    with open_checkpoint(other) as reader:
        plan = plan_for(reader, rules)
    with open_checkpoint(st_src) as reader:
        with pytest.raises(CheckpointError, match="make the plan from this file"):
            convert(st_src, tmp_path / "out.safetensors", reader=reader, plan=plan)


# --- destinations -----------------------------------------------------------------------------

def test_existing_output_needs_force(tmp_path, st_src, weights):
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"old contents that are longer than nothing" * 100)
    with pytest.raises(OutputExistsError, match="already exists"):
        convert(st_src, out)
    assert out.read_bytes().startswith(b"old")
    convert(st_src, out, force=True)
    assert set(load_file(str(out))) == set(weights)


def test_the_source_and_its_shards_are_never_overwritten(tmp_path, st_src):
    with pytest.raises(OutputExistsError, match="is the source"):
        convert(st_src, st_src, force=True)
    convert(st_src, tmp_path / "sharded.safetensors.index.json", max_shard_size=200)
    shard = sorted(tmp_path.glob("sharded-00001-of-*.safetensors"))[0]
    with pytest.raises(OutputExistsError, match="is the source"):
        convert(tmp_path / "sharded.safetensors.index.json", shard, force=True)
    link = tmp_path / "link.safetensors"
    link.symlink_to(st_src)
    with pytest.raises(OutputExistsError, match="is the source"):
        convert(st_src, link, force=True)


def test_a_folder_destination_gets_model_safetensors_and_other_suffixes_are_refused(tmp_path, st_src):
    folder = tmp_path / "out"
    folder.mkdir()
    assert convert(st_src, folder).destination == str(folder / "model.safetensors")
    with pytest.raises(BadInputError, match="must end with .safetensors"):
        convert(st_src, tmp_path / "out.bin")


# --- shards -----------------------------------------------------------------------------------

def test_sharded_output_hugging_face_style(tmp_path, st_src, weights):
    out = tmp_path / "model.safetensors"
    result = convert(st_src, out, max_shard_size=300, verify=True)
    index = tmp_path / "model.safetensors.index.json"
    assert result.destination == str(index) and not out.exists()
    body = json.loads(index.read_text())
    shards = sorted(set(body["weight_map"].values()))
    assert shards == [f"model-0000{i}-of-0000{len(shards)}.safetensors" for i in range(1, len(shards) + 1)]
    assert len(shards) > 1 and body["metadata"]["total_size"] == sum(t.nbytes for t in weights.values())
    assert body["metadata"]["mapper.source_sha256"] == sha256(st_src)
    for name in shards:
        assert sum(t.nbytes for t in load_file(str(tmp_path / name)).values()) <= 300
    loaded = load_safetensors(index)
    assert set(loaded) == set(weights) and all(same_bits(loaded[k], t) for k, t in weights.items())
    with open_checkpoint(index) as reader:  # our own reader accepts it too
        assert set(reader.specs()) == set(weights)
    assert result.checked == len(weights) and result.paths[-1] == str(index)


def test_a_tensor_larger_than_the_shard_size_goes_alone(tmp_path):
    src = tmp_path / "src.safetensors"
    save_file({"a": torch.zeros(10), "big": torch.zeros(100), "c": torch.zeros(10)}, str(src))
    convert(src, tmp_path / "o.safetensors", max_shard_size="100B")
    weight_map = json.loads((tmp_path / "o.safetensors.index.json").read_text())["weight_map"]
    groups: dict[str, list[str]] = {}
    for key, shard in weight_map.items():
        groups.setdefault(shard, []).append(key)
    # huggingface_hub's rule: "big" gets a shard at once, and the shard being filled goes on after it
    assert sorted(groups.values()) == [["a", "c"], ["big"]]


def test_one_shard_is_enough_means_a_single_file_unless_an_index_is_asked_for(tmp_path, st_src):
    assert convert(st_src, tmp_path / "one.safetensors", max_shard_size="1GB").paths == (str(tmp_path / "one.safetensors"),)
    result = convert(st_src, tmp_path / "idx.safetensors.index.json")
    assert [os.path.basename(p) for p in result.paths] == ["idx-00001-of-00001.safetensors", "idx.safetensors.index.json"]


def test_a_sharded_source_converts_to_one_file_with_every_shard_hashed(tmp_path, st_src, weights):
    convert(st_src, tmp_path / "in.safetensors.index.json", max_shard_size=300)
    index = tmp_path / "in.safetensors.index.json"
    out = tmp_path / "joined.safetensors"
    result = convert(index, out, verify=True)
    loaded = load_file(str(out))
    assert all(same_bits(loaded[k], t) for k, t in weights.items())
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    assert meta["mapper.source_sha256"] == sha256(index) == result.source_sha256
    shard_hashes = json.loads(meta["mapper.source_shards_sha256"])
    assert shard_hashes and all(sha256(tmp_path / name) == digest for name, digest in shard_hashes.items())
    assert "total_size" not in meta


# --- torch → safetensors ----------------------------------------------------------------------

def random_bits(dtype, shape, seed):
    g = torch.Generator().manual_seed(seed)
    size = torch.empty((), dtype=dtype).element_size()
    raw = torch.randint(0, 256, (int(torch.Size(shape).numel()) * size,), dtype=torch.uint8, generator=g)
    return (raw % 2 if dtype == torch.bool else raw).view(dtype).reshape(shape)


LEGACY_CANNOT = {"F8_E4M3", "F8_E5M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "F4",
                 "U16", "U32", "U64"}  # torch's legacy format cannot save these


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_torch_round_trip_every_dtype_bit_exact(tmp_path, legacy):
    tensors = {}
    for i, (name, dtype) in enumerate(NAME_TO_TORCH.items()):
        if legacy and name in LEGACY_CANNOT:
            continue
        tensors[f"{name}.matrix"] = random_bits(dtype, (5, 3), i)
        if name != "F4":  # a 0-d pair of 4-bit values has no safetensors shape (refused, tested elsewhere)
            tensors[f"{name}.scalar"] = random_bits(dtype, (), i + 100)
        tensors[f"{name}.empty"] = random_bits(dtype, (0, 3), i)
    base = random_bits(torch.float32, (6, 4), 999)
    tensors.update({"view.transposed": base.t(), "view.column": base[:, 1], "view.step": base[::2],
                    "view.tail": base[3:], "special": torch.tensor([float("nan"), -0.0, float("-inf")])})
    src = tmp_path / "m.pt"
    torch.save(tensors, src, _use_new_zipfile_serialization=not legacy)
    out = tmp_path / "m.safetensors"
    result = convert(src, out, verify=True)
    loaded = load_file(str(out))
    assert set(loaded) == set(tensors)
    for key, t in tensors.items():
        assert same_bits(loaded[key], t), key
    # zip files are memory-mapped: contiguous tensors are copied file to file, views go through memory
    assert result.method == ("tensor" if legacy else "byte-copy+tensor") and result.checked == len(tensors)
    with safe_open(str(out), framework="pt") as f:
        assert f.metadata()["mapper.source_sha256"] == sha256(src)


def test_torch_checkpoint_with_rules(tmp_path, weights, rules):
    src = tmp_path / "m.pt"
    torch.save({"state_dict": weights, "epoch": 3}, src)
    with open_checkpoint(src) as reader:
        result = convert(src, tmp_path / "o.safetensors", reader=reader, plan=plan_for(reader, rules), verify=True)
    loaded = load_file(str(tmp_path / "o.safetensors"))
    assert same_bits(loaded["classifier.weight"], weights["head.weight"]) and "aux.counter" not in loaded
    assert result.checked == 5


# --- safe output ------------------------------------------------------------------------------

@pytest.mark.parametrize("exc", [RuntimeError("injected"), KeyboardInterrupt()])
@pytest.mark.parametrize("kind", ["safetensors", "torch"])
def test_an_error_mid_write_leaves_nothing(tmp_path, st_src, weights, exc, kind):
    src = st_src if kind == "safetensors" else tmp_path / "m.pt"
    if kind == "torch":
        torch.save(weights, src)
    before = files(tmp_path)
    calls = []

    def progress(done, total, key):
        calls.append(key)
        if len(calls) == 3:
            raise exc

    with pytest.raises(type(exc)):
        convert(src, tmp_path / "out.safetensors", progress=progress, max_shard_size=100)
    assert files(tmp_path) == before


def test_progress_reports_every_byte(tmp_path, st_src, weights):
    seen = []
    convert(st_src, tmp_path / "o.safetensors", progress=lambda done, total, key: seen.append((done, total)))
    total = sum(t.nbytes for t in weights.values())
    assert seen[-1] == (total, total) and all(a <= b for (a, _), (b, _) in zip(seen, seen[1:]))


def test_hashing_can_be_turned_off(tmp_path, st_src):
    result = convert(st_src, tmp_path / "o.safetensors", hash_source=False)
    with safe_open(str(tmp_path / "o.safetensors"), framework="pt") as f:
        assert "mapper.source_sha256" not in f.metadata()
    assert result.source_sha256 is None and isinstance(result, ConvertResult)


def test_torch_tensors_are_copied_from_the_mapped_file(tmp_path):
    tensors = {f"w{i}": torch.randn(256, 256, generator=torch.Generator().manual_seed(i)) for i in range(3)}
    src = tmp_path / "m.pt"
    torch.save(tensors, src)
    result = convert(src, tmp_path / "o.safetensors")
    assert result.method == "byte-copy"
    loaded = load_file(str(tmp_path / "o.safetensors"))
    assert all(same_bits(loaded[k], t) for k, t in tensors.items())


def test_verify_compares_a_mapped_torch_tensor_with_the_file_not_the_mapping(tmp_path):
    src = tmp_path / "m.pt"
    torch.save({"w": torch.zeros(1024)}, src)
    with open_checkpoint(src) as reader:
        reader.get_tensor("w").add_(1)  # breaks the contract (copy-on-write page): memory and file now differ
        convert(src, tmp_path / "o.safetensors", reader=reader, verify=True)  # the file's bytes, checked
    assert same_bits(load_file(str(tmp_path / "o.safetensors"))["w"], torch.load(src, weights_only=True)["w"])


def test_an_os_error_while_writing_is_reported_and_leaves_nothing(tmp_path, st_src, monkeypatch):
    import errno

    from mapper_core.io.formats.writer import FileWriter

    def full(self, progress=None):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(FileWriter, "write", full)
    before = files(tmp_path)
    with pytest.raises(BadInputError, match="out.safetensors: writing failed: No space left on device; nothing"):
        convert(st_src, tmp_path / "out.safetensors")
    assert files(tmp_path) == before
