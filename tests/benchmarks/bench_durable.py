"""Where a durable rename's time goes (a script, not a test), issue 11 goal 2:

    .venv/bin/python tests/benchmarks/bench_durable.py [--rounds 8] [--tensors 32] [--mib 64] [--tmp DIR]

``bench_convert.py`` gives each contender's best of 3; on this machine's shared virtual disk
one command's wall time swings by 2x from run to run, so a best of 3 compares luck as much as
code. This script interleaves the contenders round by round (the order rotating each round) and
prints the median and the best of each, with the median's ratio to ``cp`` + ``sync`` taken in
the same rounds:

- ``cp SRC DST && sync DST``: the durable-copy limit the goal is stated against;
- ``convert()`` in this process (no interpreter start, no imports): the copy, the write-behind
  and the fsyncs alone, without the source hash, with it, and with the write-behind turned off
  (the kernel's own writeback, then one fsync at the end, as ``cp`` + ``sync`` does);
- ``mapper convert SRC DST --rules R`` as a user runs it, with and without the source hash.

The difference between the CLI and ``convert()`` is start-up (interpreter, imports, reading the
header and rules, planning); between the hash and no hash rows, what the source hash costs when
both run at once on 2 cores. Before each run the output is deleted and ``sync`` run, so no run
pays for the last one's pages. The source is 32 x 64 MiB of random bytes in a safetensors file.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without install

from mapper_core.io import writeback  # noqa: E402
from mapper_core.io.convert import convert  # noqa: E402
from mapper_core.rules.load import load_rules  # noqa: E402

RULES = "version: 1\nrules:\n  - match: 'layers\\.(\\d+)\\.weight'\n    target: 'renamed.blocks.{1}.weight'\n"
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # cached bytecode


def write_source(path: Path, tensors: int, mib: int) -> None:
    """A safetensors file of ``tensors`` F32 tensors of ``mib`` MiB each, random bytes, fsynced."""
    size = mib * 2**20
    entries = {f"layers.{i}.weight": {"dtype": "F32", "shape": [size // 4], "data_offsets": [i * size, (i + 1) * size]}
               for i in range(tensors)}
    header = json.dumps(entries, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
        for _ in range(tensors):
            fh.write(os.urandom(size))
        fh.flush()
        os.fsync(fh.fileno())


def in_process(src: Path, dst: Path, rules, hash_source: bool, write_behind: bool) -> Callable[[], None]:
    def run() -> None:
        saved = writeback._CALL
        if not write_behind:
            writeback._CALL = None  # WriteBehind then turns itself off: kernel writeback, one fsync
        try:
            convert(src, dst, rules=rules, hash_source=hash_source)
        finally:
            writeback._CALL = saved
    return run


def child(cmd: list[str]) -> Callable[[], None]:
    def run() -> None:
        subprocess.run(cmd, check=True, env=CHILD_ENV, stdout=subprocess.DEVNULL)
    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--tensors", type=int, default=32)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--tmp", default=None, help="folder for the temporary files (default: the system's)")
    args = ap.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="mapper-durable-", dir=args.tmp))
    try:
        return run(folder, args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(folder: Path, args: argparse.Namespace) -> int:
    src, dst = folder / "model.safetensors", folder / "out.safetensors"
    print(f"writing {args.tensors} x {args.mib} MiB of random bytes to {src} ...", flush=True)
    write_source(src, args.tensors, args.mib)
    rules_path = folder / "rename.yaml"
    rules_path.write_text(RULES)
    rules = load_rules(rules_path)
    mapper = [sys.executable, "-m", "mapper_core", "convert", str(src), str(dst), "--rules", str(rules_path), "-q"]
    contenders: list[tuple[str, Callable[[], None]]] = [
        ("cp + sync DST", child(["sh", "-c", f"cp '{src}' '{dst}' && sync '{dst}'"])),
        ("convert() in-process, no source hash", in_process(src, dst, rules, False, True)),
        ("convert() in-process, with the source hash", in_process(src, dst, rules, True, True)),
        ("convert() in-process, no hash, no write-behind", in_process(src, dst, rules, False, False)),
        ("mapper convert --no-source-hash", child(mapper + ["--no-source-hash"])),
        ("mapper convert (default: source hash)", child(mapper)),
    ]
    child(mapper)()  # warm-up: page cache, bytecode
    times: dict[str, list[float]] = {name: [] for name, _ in contenders}
    for r in range(args.rounds):
        order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
        for name, fn in order:
            dst.unlink(missing_ok=True)
            os.sync()
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
        print(f"  round {r + 1}/{args.rounds} done", flush=True)
    dst.unlink(missing_ok=True)
    base = statistics.median(times["cp + sync DST"])
    gib = args.tensors * args.mib / 1024
    print(f"\n{gib:.2f} GiB, {args.rounds} interleaved rounds; load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{'contender':48} {'median s':>9} {'best s':>7} {'worst s':>8} {'median / cp+sync':>17}")
    for name, _ in contenders:
        t = times[name]
        print(f"{name:48} {statistics.median(t):9.2f} {min(t):7.2f} {max(t):8.2f} {statistics.median(t) / base:17.2f}")
    print("goal 2: mapper convert (default) <= 1.15x cp + sync (here by medians)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
