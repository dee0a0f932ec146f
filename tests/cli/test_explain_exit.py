"""Issue 9: `mapper explain` exits with the code the plan gives for that key, not 0 regardless."""
from __future__ import annotations

import pytest

from wrong_transform import write_files  # tests/helpers


@pytest.mark.needs_torch  # the fixture files are written with torch
@pytest.mark.parametrize("key, code", [("fc.weight", 1), ("fc.bias", 0)])
def test_explain_exits_with_the_plans_code_for_the_key(tmp_path, mapper, key, code):
    source, target, rules = write_files(tmp_path)
    proc = mapper("explain", source, key, "--rules", rules, "--target", target)
    assert proc.returncode == code, proc.stdout + proc.stderr
