"""CI runs the README's test command: the two must not drift apart."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"# run the tests\n(.+)\n", readme)
    assert block, "README.md lost its '# run the tests' command"
    command = block.group(1).strip()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert command in ci_lines
    assert ci_lines[-1] == command  # the last thing CI runs, so its closing line is the suite's


def test_the_readme_installs_every_distribution_whose_tests_run():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = re.search(r"# run the tests\n(.+)\n", readme).group(1)
    assert "-e '.[torch,test]'" in command and "plugins/syncnet_fcn[video]" in command
    testpaths = re.search(r"^testpaths = \[(.*)\]$", (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.M)
    for path in re.findall(r'"([^"]+)"', testpaths.group(1)):
        if path.startswith("plugins/"):  # a plugin's tests run: the command installs that plugin
            assert f"plugins/{path.split('/')[1]}" in command, path
    assert "torch==2.13.0" in command  # the CPU wheel; a bare torch is a multi-GB CUDA build here
