"""Non-tensor values of a torch source that JSON would spell out too large (a structure the pickle
shares by reference, or nests thousands deep) are left out of metadata 'mapper.extra', named in a
warning, never a hang or a traceback; the others still ride along."""
from __future__ import annotations

import io
import json
import time
import zipfile

import pytest

torch = pytest.importorskip("torch")

from safetensors import safe_open  # noqa: E402

from mapper_core.io.formats.torch_format import open_torch  # noqa: E402
from mapper_core.io.formats.torch_extra import MAX_DEPTH, MAX_VALUES  # noqa: E402

TOO_LARGE = "too large for metadata 'mapper.extra'"


def shared(depth: int) -> list:
    x: list = [0]
    for _ in range(depth):
        x = [x, x]
    return x


def save_shared(path, depth: int):
    torch.save({"w": torch.ones(2), "cfg": shared(depth), "step": 5}, path)  # the pickle memoizes x: a small file
    return path


def save_nested(path, depth: int):
    """A list nested ``depth`` deep as 'cfg' (torch.save's pickler cannot write one: it recurses)."""
    buf = io.BytesIO()
    torch.save({"cfg": 12345, "w": torch.ones(2), "step": 5}, buf)
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("data.pkl"):
                assert data.count(b"M90") == 1  # BININT2 12345
                data = data.replace(b"M90", b"]" * depth + b"a" * (depth - 1))
            out.writestr(info.filename, data)
    return path


def extra_of(path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata().get("mapper.extra", "{}"))


def test_convert_leaves_a_shared_structure_out_of_mapper_extra_and_says_why(tmp_path, mapper):
    src = save_shared(tmp_path / "dag.pt", 21)  # 2**22 lists as JSON: seconds and 12 MB of header before
    assert src.stat().st_size < 4000
    done = mapper("convert", src, tmp_path / "out.safetensors")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.safetensors").stat().st_size < 1000  # first: a 12 MB header is slow to compare
    assert extra_of(tmp_path / "out.safetensors") == {"step": 5}
    assert f"{src}: 1 non-tensor value {TOO_LARGE}, left behind: 'cfg' (more than {MAX_VALUES:,} values" in done.stderr
    assert "each time it is reached" in done.stderr and "torch.save keeps the references" in done.stderr
    assert "1 non-tensor item not written" in done.stdout and done.stdout.rstrip().endswith(": cfg")
    assert done.stderr.count("mapper: warning:") == 1  # once, though the reader is asked twice


def test_40_levels_of_sharing_are_measured_at_once(tmp_path):
    src = save_shared(tmp_path / "dag40.pt", 40)  # 2**41 lists as JSON: convert hung in json.dumps
    with open_torch(src) as reader:
        start = time.monotonic()
        assert reader.non_tensors() == {"cfg": f"list, {TOO_LARGE}", "step": "int"}  # first: extra_values() hung
        with pytest.warns(UserWarning, match=rf"'cfg' \(more than {MAX_VALUES:,} values"):
            assert reader.extra_values() == {"step": 5}
        assert time.monotonic() - start < 2


@pytest.mark.parametrize("depth", [5_000, 60_000])
def test_a_value_nested_thousands_deep_is_left_behind_not_a_traceback(tmp_path, mapper, depth):
    src = save_nested(tmp_path / "deep.pt", depth)
    done = mapper("convert", src, tmp_path / "out.safetensors")
    assert done.returncode == 0, done.stderr  # was a RecursionError traceback, exit 1
    assert "Traceback" not in done.stderr
    assert f"'cfg' (nested more than {MAX_DEPTH} deep)" in done.stderr
    assert extra_of(tmp_path / "out.safetensors") == {"step": 5}


def test_inspect_and_plan_mark_the_value(tmp_path, mapper):
    src = save_nested(tmp_path / "deep.pt", 2_000)
    shown = mapper("inspect", src)
    assert shown.returncode == 0 and f"'cfg' (list, {TOO_LARGE}), 'step' (int)" in shown.stdout
    assert "warning" not in shown.stderr  # only a conversion leaves it behind
    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\nname: r\nrules:\n  - match: 'w'\n    target: 'v'\n")
    plan = mapper("plan", src, "--rules", rules, "--json")
    assert {"key": "cfg", "type": f"list, {TOO_LARGE}"} in json.loads(plan.stdout)["non_tensor"]
    explained = mapper("explain", src, "cfg", "--rules", rules)
    assert explained.returncode == 0 and f"(list, {TOO_LARGE})" in explained.stdout


def test_keys_json_cannot_sort_leave_the_value_behind_not_a_traceback(tmp_path, mapper):
    torch.save({"w": torch.ones(2), "cfg": {1: "a", "b": 2}, "step": 5}, tmp_path / "mixed.pt")
    done = mapper("convert", tmp_path / "mixed.pt", tmp_path / "out.safetensors")
    assert done.returncode == 0, done.stderr  # metadata is written with sorted keys: a TypeError traceback before
    assert extra_of(tmp_path / "out.safetensors") == {"step": 5}
    assert "warning" not in done.stderr and done.stdout.rstrip().endswith(": cfg")
