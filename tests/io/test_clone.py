"""Cloning a rename's data region: the padding arithmetic, the clone calls, the fallback (no torch needed)."""
from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import subprocess
import uuid

import pytest

from mapper_core.io import clone as clone_mod
from mapper_core.io.clone import Cloner, best_residue, header_length
from mapper_core.io.convert import convert
from mapper_core.io.formats.safetensors_header import read_header
from mapper_core.io.formats.writer import Entry, FileRange, FileWriter
from mapper_core.rules import load_rules

BLOCK = 4096


@pytest.mark.parametrize("block", [512, 4096, 65536])
def test_the_padded_header_starts_the_data_at_the_residue(block):
    for natural in range(0, 3 * block, 8 * 37):
        for residue in range(0, block, 8 * 13):
            length = header_length(natural, residue, block)
            assert (8 + length) % block == residue
            assert natural <= length < natural + block and length % 8 == 0


def test_the_residue_under_which_most_bytes_clone_is_chosen():
    # (source offset, offset in the new data region, bytes)
    pairs = [(4096 + 80, 0, 10 * BLOCK), (200, 99, 5 * BLOCK), (4096 + 80 + 10 * BLOCK, 10 * BLOCK, BLOCK + 5)]
    assert best_residue(pairs, BLOCK) == 80
    assert best_residue([(80, 0, BLOCK - 1)], BLOCK) is None  # no whole block anywhere
    assert best_residue([(83, 0, 10 * BLOCK)], BLOCK) is None  # the data region would not be 8-aligned


def source_file(path, tensors: dict[str, bytes], metadata=None):
    """A safetensors file of raw U8 tensors, written by hand (no torch)."""
    header, pos = {}, 0
    if metadata:
        header["__metadata__"] = metadata
    for key, data in tensors.items():
        header[key] = {"dtype": "U8", "shape": [len(data)], "data_offsets": [pos, pos + len(data)]}
        pos += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(tensors.values()))
    return path


@pytest.fixture
def src(tmp_path):
    blocks = {f"layers.{i}.weight": os.urandom(3 * BLOCK + 1000 * i) for i in range(4)}
    return source_file(tmp_path / "src.safetensors", blocks, {"format": "pt"})


@pytest.fixture
def rules(tmp_path):
    path = tmp_path / "rename.yaml"
    path.write_text("version: 1\nname: r\nrules:\n  - match: 'layers\\.(\\d+)\\.weight'\n"
                    "    target: 'renamed.blocks.{1}.weight'\n")
    return load_rules(path)


def fake_clone(calls):
    def clone(src_fd, src_off, dst_fd, dst_off, n):
        calls.append((src_off, dst_off, n))
        assert src_off % BLOCK == 0 and dst_off % BLOCK == 0 and n % BLOCK == 0, "unaligned clone"
        os.pwrite(dst_fd, os.pread(src_fd, n, src_off), dst_off)
    return clone


def split(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return raw[8:8 + n], raw[8 + n:]


def test_a_rename_clones_whole_blocks_and_differs_from_the_copy_only_in_header_padding(tmp_path, src, rules,
                                                                                     monkeypatch):
    monkeypatch.setattr(clone_mod, "block_size", lambda fd: BLOCK)
    monkeypatch.setattr("mapper_core.io.convert.block_size", lambda fd: BLOCK)
    copied = convert(src, tmp_path / "copied.safetensors", rules=rules, clone=False, hash_source=False)
    calls = []
    monkeypatch.setattr(clone_mod, "ficlonerange", fake_clone(calls))
    cloned = convert(src, tmp_path / "cloned.safetensors", rules=rules, hash_source=False)

    assert copied.method == "byte-copy" and copied.cloned_bytes == 0
    assert cloned.method == "clone" and cloned.clone_refused is None
    assert cloned.cloned_bytes == sum(n for _, _, n in calls[1:]) >= 8 * BLOCK  # calls[0]: the probe
    assert read_header(tmp_path / "cloned.safetensors").data_start % BLOCK == read_header(src).data_start % BLOCK
    head_copy, data_copy = split(tmp_path / "copied.safetensors")
    head_clone, data_clone = split(tmp_path / "cloned.safetensors")
    assert data_clone == data_copy and head_clone.rstrip(b" ") == head_copy.rstrip(b" ")
    assert len(head_clone) > len(head_copy)


def test_a_filesystem_that_cannot_clone_gets_the_plain_copy_and_says_why(tmp_path, src, rules, monkeypatch):
    def refuse(*args):
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(clone_mod, "ficlonerange", refuse)
    result = convert(src, tmp_path / "out.safetensors", rules=rules, hash_source=False)
    plain = convert(src, tmp_path / "plain.safetensors", rules=rules, clone=False, hash_source=False)
    assert result.method == "byte-copy" and result.cloned_bytes == 0
    assert result.clone_refused == os.strerror(errno.EOPNOTSUPP)
    assert (tmp_path / "out.safetensors").read_bytes() == (tmp_path / "plain.safetensors").read_bytes()


def test_an_error_that_is_not_a_refusal_is_raised(tmp_path):
    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    cloner = Cloner(BLOCK, full)
    with open(tmp_path / "a", "wb+") as a, open(tmp_path / "b", "wb+") as b:
        a.write(b"x" * 3 * BLOCK)
        a.flush()
        with pytest.raises(OSError, match="No space"):
            cloner.copy(a.fileno(), 0, b.fileno(), 0, 3 * BLOCK, lambda *args: None)


def test_edges_are_copied_and_the_middle_cloned(tmp_path):
    calls, copies = [], []
    cloner = Cloner(BLOCK, lambda *a: calls.append(a[1:2] + a[3:]))
    cloner.copy(3, 100, 4, 100 + 2 * BLOCK, 5 * BLOCK, lambda s, so, d, do, n: copies.append((so, do, n)))
    assert calls == [(BLOCK, 3 * BLOCK, 4 * BLOCK)]
    assert copies == [(100, 100 + 2 * BLOCK, BLOCK - 100), (5 * BLOCK, 7 * BLOCK, 100)]
    assert (cloner.cloned, cloner.copied) == (4 * BLOCK, BLOCK)
    cloner.copy(3, 100, 4, 108, 5 * BLOCK, lambda s, so, d, do, n: copies.append((so, do, n)))  # not lined up
    assert copies[-1] == (100, 108, 5 * BLOCK) and len(calls) == 1


def test_the_writer_pads_only_when_the_filesystem_clones(tmp_path, src):
    header = read_header(src)
    entries = [Entry(k, spec, FileRange(src, header.data_start + header.offsets[k][0],
                                        header.data_start + header.offsets[k][1]))
               for k, spec in header.specs.items()]

    def cross_device(*args):
        raise OSError(errno.EXDEV, "cross-device")

    refusing = Cloner(BLOCK, cross_device)
    fd = os.open(tmp_path / "o", os.O_RDWR | os.O_CREAT)
    try:
        w = FileWriter(fd, entries, {"k": "v"}, cloner=refusing)
        natural = len(w.header)
        w.write()
        assert len(w.header) == natural and refusing.refusal == "Invalid cross-device link"
    finally:
        os.close(fd)


def _mount_xfs(folder):
    if os.geteuid() != 0 or not shutil.which("mkfs.xfs"):
        pytest.skip("needs root and xfsprogs to mount an XFS image")
    image, mnt = folder / "xfs.img", folder / f"mnt-{uuid.uuid4().hex[:8]}"
    with open(image, "wb") as fh:
        fh.truncate(320 << 20)
    mnt.mkdir()
    made = subprocess.run(["mkfs.xfs", "-q", str(image)], capture_output=True)
    mounted = made.returncode == 0 and subprocess.run(["mount", "-o", "loop", str(image), str(mnt)],
                                                      capture_output=True).returncode == 0
    if not mounted:
        image.unlink()
        pytest.skip("could not make or loop-mount an XFS image here")
    return image, mnt


def test_on_a_real_xfs_the_data_is_shared_not_copied(tmp_path, rules):
    image, mnt = _mount_xfs(tmp_path)
    try:
        blocks = {f"layers.{i}.weight": os.urandom(64 * BLOCK) for i in range(3)}
        src = source_file(mnt / "src.safetensors", blocks, {"format": "pt"})
        result = convert(src, mnt / "out.safetensors", rules=rules, hash_source=False)
        assert result.method == "clone" and result.cloned_bytes >= 3 * 63 * BLOCK
        plain = convert(src, mnt / "plain.safetensors", rules=rules, hash_source=False, clone=False)
        assert plain.method == "byte-copy"
        assert split(mnt / "out.safetensors")[1] == split(mnt / "plain.safetensors")[1]
        try:  # the official library's read-back needs safetensors and numpy (absent in torch-free runs)
            import numpy  # noqa: F401
            from safetensors import safe_open
        except ModuleNotFoundError:
            return
        with safe_open(str(mnt / "out.safetensors"), framework="numpy") as f:
            assert sorted(f.keys()) == [f"renamed.blocks.{i}.weight" for i in range(3)]
            assert f.get_tensor("renamed.blocks.2.weight").tobytes() == blocks["layers.2.weight"]
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        image.unlink()


def test_the_command_line_says_which_path_was_taken(tmp_path, src, mapper, monkeypatch):
    monkeypatch.setattr("mapper_core.io.convert.block_size", lambda fd: BLOCK)
    rules = tmp_path / "rename.yaml"
    rules.write_text("version: 1\nname: r\nrules:\n  - match: 'layers\\.(\\d+)\\.weight'\n    target: 'x.{1}'\n")
    monkeypatch.setattr(clone_mod, "ficlonerange", fake_clone([]))
    cloned = mapper("convert", src, tmp_path / "a.safetensors", "--rules", rules, "--no-source-hash")
    assert cloned.returncode == 0, cloned.stderr
    assert "(clone)" in cloned.stdout and "cloned: the output shares the source's blocks" in cloned.stdout

    def refuse(*args):
        raise OSError(errno.EOPNOTSUPP, "not here")

    monkeypatch.setattr(clone_mod, "ficlonerange", refuse)
    copied = mapper("convert", src, tmp_path / "b.safetensors", "--rules", rules, "--json")
    report = json.loads(copied.stdout)
    assert (report["method"], report["cloned_bytes"]) == ("byte-copy", 0)
    assert report["clone_refused"] == os.strerror(errno.EOPNOTSUPP)


def _shards(folder):
    return {p.name: split(p) for p in sorted(folder.glob("*.safetensors"))}


@pytest.fixture
def many(tmp_path):
    """Eight tensors of a few blocks each: a 12 KB shard limit makes several shards."""
    blocks = {f"layers.{i}.weight": os.urandom(2 * BLOCK + 300 * i) for i in range(8)}
    return source_file(tmp_path / "many.safetensors", blocks, {"format": "pt"})


def _sharded(src, folder, rules, **kw):
    folder.mkdir()
    return convert(src, folder / "model.safetensors.index.json", rules=rules, max_shard_size="12KB",
                   hash_source=False, **kw)


def test_workers_clone_each_shard_as_one_process_does(tmp_path, many, rules, monkeypatch):
    """--workers shares blocks too (it copied before): the same shards, byte for byte, as one process
    cloning, and the same data as the copy."""
    for where in ("mapper_core.io.convert.block_size", "mapper_core.io.parallel.block_size"):
        monkeypatch.setattr(where, lambda fd: BLOCK)
    copied = _sharded(many, tmp_path / "copied", rules, clone=False)
    monkeypatch.setattr(clone_mod, "ficlonerange", fake_clone([]))  # forked workers inherit it
    one = _sharded(many, tmp_path / "one", rules)
    two = _sharded(many, tmp_path / "two", rules, workers=2)
    assert len(one.paths) > 3 and (one.method, two.method) == ("clone", "clone")
    assert two.cloned_bytes == one.cloned_bytes > 0 and two.clone_refused is None
    assert {p.name: p.read_bytes() for p in (tmp_path / "two").iterdir()} == \
        {p.name: p.read_bytes() for p in (tmp_path / "one").iterdir()}  # no manifest left, same bytes
    for name, (head, data) in _shards(tmp_path / "copied").items():
        head_two, data_two = _shards(tmp_path / "two")[name]
        assert data_two == data and head_two.rstrip(b" ") == head.rstrip(b" ")
    assert copied.method == "byte-copy"


def test_workers_say_why_the_filesystem_would_not_clone(tmp_path, many, rules, monkeypatch):
    def refuse(*args):
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(clone_mod, "ficlonerange", refuse)
    result = _sharded(many, tmp_path / "out", rules, workers=2)
    assert (result.method, result.cloned_bytes) == ("byte-copy", 0)
    assert result.clone_refused == os.strerror(errno.EOPNOTSUPP)


def test_a_rerun_after_a_failed_worker_finishes_cloned_shards(tmp_path, many, rules, monkeypatch):
    """A cloned shard's padded header is not the layout the manifest expects: a rerun writes it again
    (cheaply) and the result is the one an uninterrupted run gives."""
    from mapper_core.errors import BadInputError
    from mapper_core.io import parallel

    for where in ("mapper_core.io.convert.block_size", "mapper_core.io.parallel.block_size"):
        monkeypatch.setattr(where, lambda fd: BLOCK)
    monkeypatch.setattr(clone_mod, "ficlonerange", fake_clone([]))
    whole = _sharded(many, tmp_path / "whole", rules)
    real = parallel._put_in_place

    def last_fails(job, i, out, writer, meta):
        if i == len(job.files) - 1:
            raise BadInputError("disk on fire")
        return real(job, i, out, writer, meta)

    monkeypatch.setattr(parallel, "_put_in_place", last_fails)
    folder = tmp_path / "again"
    with pytest.raises(BadInputError, match="disk on fire"):
        _sharded(many, folder, rules, workers=2)
    assert any(p.name.endswith(".mapper-manifest") for p in folder.iterdir())  # the finished shards are recorded
    monkeypatch.setattr(parallel, "_put_in_place", real)
    done = convert(many, folder / "model.safetensors.index.json", rules=rules, max_shard_size="12KB",
                   hash_source=False, workers=2)
    assert done.method == "clone"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == \
        {p.name: p.read_bytes() for p in (tmp_path / "whole").iterdir()}
    assert whole.paths and len(list(folder.iterdir())) == len(whole.paths)


def test_on_a_real_xfs_workers_share_the_data_too(tmp_path, rules):
    image, mnt = _mount_xfs(tmp_path)
    try:
        blocks = {f"layers.{i}.weight": os.urandom(16 * BLOCK) for i in range(6)}
        src = source_file(mnt / "src.safetensors", blocks, {"format": "pt"})
        out = mnt / "out"
        out.mkdir()
        result = convert(src, out / "model.safetensors.index.json", rules=rules, hash_source=False,
                         max_shard_size="160KB", workers=2)
        assert len(result.paths) > 2 and result.method == "clone" and result.cloned_bytes >= 6 * 15 * BLOCK
        plain = mnt / "plain"
        plain.mkdir()
        convert(src, plain / "model.safetensors.index.json", rules=rules, hash_source=False,
                max_shard_size="160KB", clone=False)
        for name, (_, data) in _shards(plain).items():
            assert _shards(out)[name][1] == data
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        image.unlink()
