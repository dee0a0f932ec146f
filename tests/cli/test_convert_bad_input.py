"""Issue 3's bad-input list through `mapper convert`: exit 2, the file named, nothing written."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest


def raw_safetensors(path: Path, header: dict, data: bytes, declared_len: int | None = None) -> Path:
    body = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body) if declared_len is None else declared_len) + body + data)
    return path


def t(dtype: str, shape: list[int], start: int, end: int) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [start, end]}


class Evil:
    """Unpickling this would create the canary file."""

    def __init__(self, canary: str):
        self.canary = canary

    def __reduce__(self):
        return (open, (self.canary, "w"))


def make_case(case: str, tmp: Path) -> tuple[Path, str]:
    """(the bad source, a phrase the error must contain)."""
    src = tmp / "bad.safetensors"
    if case == "truncated":
        good = raw_safetensors(tmp / "good.safetensors", {"a": t("F32", [4], 0, 16)}, bytes(16))
        src.write_bytes(good.read_bytes()[:-5])
        return src, "bad.safetensors"
    if case == "header longer than file":
        return raw_safetensors(src, {"a": t("F32", [1], 0, 4)}, bytes(4), declared_len=10_000), "header"
    if case == "header above 100 MB":
        return raw_safetensors(src, {"a": t("F32", [1], 0, 4)}, bytes(4), declared_len=200_000_000), "header"
    if case == "overlap":
        return raw_safetensors(src, {"a": t("F32", [2], 0, 8), "b": t("F32", [2], 4, 12)}, bytes(12)), "overlap"
    if case == "hole":
        return raw_safetensors(src, {"a": t("F32", [1], 0, 4), "b": t("F32", [1], 8, 12)}, bytes(12)), "'b'"
    if case == "past end":
        return raw_safetensors(src, {"a": t("F32", [4], 0, 16)}, bytes(8)), "'a'"
    if case == "unknown dtype":
        return raw_safetensors(src, {"a": t("F33", [1], 0, 4)}, bytes(4)), "F33"
    if case == "size disagrees":
        return raw_safetensors(src, {"a": t("F32", [3], 0, 8)}, bytes(8)), "'a'"
    if case == "missing shard":
        index = tmp / "model.safetensors.index.json"
        index.write_text(json.dumps({"metadata": {}, "weight_map": {"a": "model-00001-of-00001.safetensors"}}))
        return index, "model-00001-of-00001.safetensors"
    if case == "code-running pickle":
        import torch

        pt = tmp / "evil.pt"
        torch.save({"w": torch.ones(2), "payload": Evil(str(tmp / "canary"))}, pt)
        assert not (tmp / "canary").exists()  # saving runs nothing; only unpickling would
        return pt, "--trust-pickle"
    raise AssertionError(case)


CASES = ["truncated", "header longer than file", "header above 100 MB", "overlap", "hole", "past end",
         "unknown dtype", "size disagrees", "missing shard",
         pytest.param("code-running pickle", marks=pytest.mark.needs_torch)]


@pytest.mark.parametrize("case", CASES)
def test_bad_source_exits_2_names_the_file_and_writes_nothing(tmp_path, case, mapper):
    src, phrase = make_case(case, tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = mapper("convert", src, out_dir / "out.safetensors")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("mapper: error:") and src.name in proc.stderr
    assert phrase in proc.stderr, proc.stderr
    assert list(out_dir.iterdir()) == [], "nothing may be written, not even a temporary file"
    assert not (tmp_path / "canary").exists(), "the pickle's code must not run"
