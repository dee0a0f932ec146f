"""Header benchmark (a script, not a test): a safetensors file with a huge header.

    .venv/bin/python tests/benchmarks/bench_header.py [--tensors 1000000] [--before /work/main] [--tmp /tmp]

Writes one file of ``--tensors`` one-element F32 tensors (1M tensors: a 68 MB header), then
runs each contender in its own subprocess and measures wall time and peak RSS (``ru_maxrss``
of that child, from ``os.wait4``):

- ``json.loads`` of the header bytes alone: the floor any Python reader pays;
- ``safe_open(...).keys()``: the official library opening the file;
- ``read_header``: mapper-core's parse and checks;
- ``mapper convert SRC DST --no-source-hash -q``: the whole conversion (header in, header out,
  every tensor's bytes copied);
- the same with ``--rules`` renaming every key (``layers.N.w`` → ``model.layers.N.weight``):
  the plan is made too, and the output header cannot be the source's;

and, with ``--before REPO`` (another checkout, e.g. an older main), the last three again with
that checkout's code first on ``PYTHONPATH``. Prints one table with ratios against
``json.loads`` measured in the same run, so a loaded machine shifts every row alike.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def make_file(path: Path, tensors: int) -> int:
    """``tensors`` F32 [1] tensors named like a model's, in the order ``save_file`` writes them
    (by name); returns the header length."""
    names = sorted(f"layers.{i}.w" for i in range(tensors))
    parts = [f'"{name}":{{"dtype":"F32","shape":[1],"data_offsets":[{4 * i},{4 * i + 4}]}}'
             for i, name in enumerate(names)]
    header = ("{" + ",".join(parts) + "}").encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(header)))
        fh.write(header)
        fh.write(bytes(4 * tensors))
    return len(header)


def run(argv: list[str], pythonpath: str | None, cwd: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one child process, started in ``cwd`` (not a checkout:
    ``python -m`` and ``-c`` put the working folder first on the path, before ``PYTHONPATH``)."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[:4]} failed:\n{proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tensors", type=int, default=1_000_000)
    ap.add_argument("--before", metavar="REPO", help="another checkout to measure in the same run")
    ap.add_argument("--tmp", default=tempfile.gettempdir())
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-header-", dir=args.tmp))
    try:
        src = folder / "big.safetensors"
        length = make_file(src, args.tensors)
        rules = folder / "rules.yaml"
        rules.write_text("version: 1\nname: bench\nrules:\n  - match: 'layers\\.(\\d+)\\.w'\n"
                         "    target: 'model.layers.{1}.weight'\n")
        print(f"{args.tensors:,} tensors, header {length / 1e6:.1f} MB; machine load {os.getloadavg()[0]:.1f}")
        read = "from mapper_core.io.formats.safetensors_format import read_header as r; r(%r)" % str(src)
        contenders = [
            ("json.loads (floor)", [PYTHON, "-c", "import json, struct, sys; f = open(sys.argv[1], 'rb'); "
                                    "json.loads(f.read(struct.unpack('<Q', f.read(8))[0]))", str(src)], None),
            ("safe_open().keys() (official)", [PYTHON, "-c", "from safetensors import safe_open; import sys; "
                                               "safe_open(sys.argv[1], 'pt').keys()", str(src)], None),
        ]
        for label, repo in [("", str(ROOT))] + ([(" (before)", args.before)] if args.before else []):
            out = folder / f"out{len(contenders)}.safetensors"
            contenders += [
                (f"read_header{label}", [PYTHON, "-c", read], repo),
                (f"mapper convert{label}", [PYTHON, "-m", "mapper_core", "convert", str(src), str(out),
                                             "--no-source-hash", "-q"], repo),
                (f"mapper convert --rules{label}", [PYTHON, "-m", "mapper_core", "convert", str(src),
                                                     str(out.with_suffix(".renamed.safetensors")), "--rules",
                                                     str(rules), "--no-source-hash", "-q"], repo),
            ]
        rows = []
        for name, argv, repo in contenders:
            wall, rss = run(argv, repo, folder)
            rows.append((name, wall, rss))
            print(f"  measured {name}: {wall:.1f} s, {rss:.0f} MB", file=sys.stderr)
        base_wall, base_rss = rows[0][1], rows[0][2]
        print(f"{'contender':34} {'wall s':>8} {'× floor':>8} {'peak MB':>8} {'× floor':>8}")
        for name, wall, rss in rows:
            print(f"{name:34} {wall:8.1f} {wall / base_wall:8.2f} {rss:8.0f} {rss / base_rss:8.2f}")
        print(json.dumps({name: {"wall_s": round(w, 2), "peak_mb": round(r)} for name, w, r in rows}))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
