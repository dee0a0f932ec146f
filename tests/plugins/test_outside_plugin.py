"""A plugin from another project (tests/plugin_project), found through its entry point, used end to end.

The project is exposed without pip, the way an installed wheel looks to importlib.metadata:
its package plus a ``*.dist-info`` with METADATA and entry_points.txt generated from its
own pyproject.toml, on PYTHONPATH. One test runs the real console script in a new process
(the installed ``mapper`` finds the outside distribution at start-up); the others run
in-process with the folder on ``sys.path`` for the call.
"""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from cli_runner import mapper_process

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

PROJECT = Path(__file__).parents[1] / "plugin_project"


def expose(project: Path, site: Path) -> dict:
    """Copy the project's packages into ``site`` with a dist-info made from its pyproject.toml."""
    meta = tomllib.loads((project / "pyproject.toml").read_text())
    info = meta["project"]
    for package in meta["tool"]["setuptools"]["packages"]:
        shutil.copytree(project / package, site / package)
    dist_info = site / f"{info['name'].replace('-', '_')}-{info['version']}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {info['name']}\nVersion: {info['version']}\n"
    )
    groups = info.get("entry-points", {})
    (dist_info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {value}\n" for name, value in eps.items()) + "\n"
        for group, eps in groups.items()
    ))
    return meta


def write_safetensors(path: Path, shapes: dict[str, tuple[int, ...]]) -> None:
    """A minimal F32 safetensors file of zeros, written by the format's spec (header only matters here)."""
    header, offset = {}, 0
    for key, shape in shapes.items():
        size = 4
        for d in shape:
            size *= d
        header[key] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # keep the data 8-byte aligned, as the library does
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    expose(PROJECT, site)
    return site


def test_the_project_declares_its_entry_point():
    meta = tomllib.loads((PROJECT / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["mapper_core.plugins"] == {"demo": "mapper_demo_plugin.plugin"}


def test_outside_plugin_is_listed_with_its_distribution(site, tmp_path):
    proc = mapper_process("plugins", "--json", env={"PYTHONPATH": str(site)}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plugins = {p["name"]: p for p in json.loads(proc.stdout)["plugins"]}
    demo = plugins["demo"]
    assert (demo["source"], demo["distribution"], demo["version"]) == ("entry point", "mapper-demo-plugin", "0.1.0")
    assert demo["contributes"]["rule_sets"] == ["demo:rename"]
    assert "syncnet_fcn" in plugins  # the installed plugins are still there


def test_outside_rule_set_is_listed(site, tmp_path, mapper):
    proc = mapper("rules", "--json", env={"PYTHONPATH": str(site)}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)["rule_sets"]}
    assert rows["demo:rename"]["plugin"] == "demo"
    assert Path(rows["demo:rename"]["origin"]).is_relative_to(site)


def test_outside_rule_set_plans_end_to_end(site, tmp_path, mapper):
    source, target = tmp_path / "source.safetensors", tmp_path / "target.safetensors"
    write_safetensors(source, {"old.0.weight": (4, 3), "old.0.bias": (4,), "old.1.weight": (2, 4), "head.weight": (1, 2)})
    write_safetensors(target, {"new.layers.0.weight": (4, 3), "new.layers.0.bias": (4,), "new.layers.1.weight": (2, 4)})
    proc = mapper("plan", source, "--rules", "demo:rename", "--target", target, "--json", "--strict",
                  env={"PYTHONPATH": str(site)}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["rules"]["origin"] == "demo:rename"
    assert {m["source"]: m["target"] for m in plan["mapped"]} == {
        "old.0.weight": "new.layers.0.weight",
        "old.0.bias": "new.layers.0.bias",
        "old.1.weight": "new.layers.1.weight",
    }
    assert [s["source"] for s in plan["skipped"]] == ["head.weight"]
    assert plan["unmatched"] == [] and plan["uninitialized"] == [] and plan["mismatched"] == []


def test_a_local_module_works_through_the_plugin_option(tmp_path, mapper):
    # the package alone, no dist-info: loaded by module name, so its rule sets are addressed by it
    bare = tmp_path / "bare"
    shutil.copytree(PROJECT / "mapper_demo_plugin", bare / "mapper_demo_plugin")
    env = {"PYTHONPATH": str(bare)}
    proc = mapper("rules", "--json", env=env, cwd=tmp_path)
    assert "demo:rename" not in proc.stdout
    module = "mapper_demo_plugin.plugin"
    proc = mapper("--plugin", module, "validate", f"{module}:rename", "--json", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["name"] == "demo-rename"
    proc = mapper("validate", "rename", "--json", env=env, cwd=tmp_path)  # not loaded: unknown name
    assert proc.returncode == 2 and "mapper rules" in proc.stderr
