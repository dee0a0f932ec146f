"""Hostile rules benchmark (a script, not a test): .venv/bin/python tests/benchmarks/bench_hostile_rules.py

For each pathological case of issue 10, the wall time of `mapper plan` (or `mapper validate`)
in a fresh process, next to two baselines measured in the same run: the same command with an
ordinary pattern (``a+!``: interpreter start-up and reading the files, which the goal does
not count), and Python's ``re.fullmatch`` on the same pattern and key (what planning did
before), in a process stopped after ``--cap`` seconds. Goal: every case ≤ 2 s more than the
ordinary pattern, or refused with a message in that time.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAPPER = [sys.executable, "-m", "mapper_core"]
GOAL = 2.0

BENIGN = r"a+!"  # the same command on the same key with an ordinary pattern: start-up and file reading
PATTERNS = [BENIGN, r"(a+)+$", r"(.*a){20}", r"(a|aa)+", r"(?=(a+)+$)a*"]
KEYS = {"31 chars": "a" * 30 + "!", "10,000 chars": "a" * 10_000 + "!"}


def timed(argv: list[str], cap: float) -> tuple[float | None, int | None]:
    """(wall seconds, exit code) of a process, or (None, None) when it ran past ``cap`` seconds."""
    start = time.perf_counter()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=cap)
    except subprocess.TimeoutExpired:
        return None, None
    return time.perf_counter() - start, done.returncode


def baseline(pattern: str, key: str, cap: float) -> float | None:
    return timed([sys.executable, "-c", f"import re; re.compile({pattern!r}).fullmatch({key!r})"], cap)[0]


def show(seconds: float | None, cap: float) -> str:
    return f"> {cap:.0f} s" if seconds is None else f"{seconds:.2f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=float, default=20.0, help="seconds before a baseline run is stopped")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        for pattern in PATTERNS:
            for label, key in KEYS.items():
                (tmp / "src.json").write_text(json.dumps({key: {"dtype": "F32", "shape": [1]}}))
                (tmp / "rules.json").write_text(json.dumps(
                    {"version": 1, "unmatched": "drop", "rules": [{"match": pattern, "target": "t"}]}))
                seconds, code = timed([*MAPPER, "plan", str(tmp / "src.json"), "--rules", str(tmp / "rules.json")],
                                         args.cap)
                before = baseline(pattern, key, args.cap)
                rows.append((f"plan {pattern} on a key of {label}", seconds, code, before))
        files = {
            "2 MB literal pattern": "version: 1\nrules:\n  - match: '" + "ab" * 1_000_000 + "'\n    target: b\n",
            "900 aliases of a 520 KB scalar": 'version: 1\ndescription: &a "' + "x" * 520_000 + '"\nskip:\n'
                                              + "  - *a\n" * 900 + "rules:\n  - {match: a, target: b}\n",
            "150,000 rules": "version: 1\nrules:\n" + "".join(
                f"  - {{match: 'k{i}\\.(.*)', target: 't{i}.{{1}}'}}\n" for i in range(150_000)),
            "300,000-entry table": "version: 1\nrules:\n  - match: 'a\\.(\\d+)'\n    target: 'b.{1}'\n"
                                   "    tables:\n      t:\n" + "".join(f'        "{i}": {i + 1}\n' for i in range(300_000)),
            "1,000,000-item list": "version: 1\nrules: []\nx: [" + ", ".join("0" for _ in range(1_000_000)) + "]\n",
        }
        for label, text in files.items():
            (tmp / "r.yaml").write_text(text)
            seconds, code = timed([*MAPPER, "validate", str(tmp / "r.yaml")], args.cap * 6)
            rows.append((f"validate: {label}", seconds, code, None))
    print(f"python {sys.version.split()[0]}; baseline = Python re.fullmatch alone, stopped after {args.cap:.0f} s")
    benign = rows[0][1] or 0.0
    print(f"{'case':58} {'mapper':>9} {'exit':>5} {'baseline re':>12}  goal <= {GOAL:.0f} s over {BENIGN!r}")
    for name, seconds, code, before in rows:
        ok = seconds is not None and seconds - benign <= GOAL
        base = "" if before is None and "validate" in name else show(before, args.cap)
        print(f"{name:58} {show(seconds, args.cap * 6):>9} {'-' if code is None else code:>5} {base:>12}  "
              f"{'ok' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
