"""Conversion benchmark (a script, not a test):

    .venv/bin/python tests/benchmarks/bench_convert.py [--repeat 3] [--tmp /tmp] [--tensors 32] [--mib 64]
                                                      [--no-xfs] [--xfs-gib 20]

Generates a checkpoint of 32 × 64 MiB float32 tensors (2 GiB) as .safetensors and as .pt
in a temporary folder (about 6 GB of disk at peak, removed at the end), then runs every
contender in its own subprocess and measures wall time and peak RSS (``ru_maxrss`` of
that child, from ``os.wait4``). Before each run the page cache's dirty pages are written out
(``sync``), so no contender pays for the one before it:

- ``cp`` of the .safetensors file (and ``cp`` + ``sync FILE``, since ``mapper`` fsyncs);
- the naive scripts: ``load_file`` → rename every key → ``save_file``; ``torch.load`` → ``save_file``;
- ``mapper convert SRC DST --rules RENAME`` (safetensors → safetensors, every key renamed),
  with and without the source hash and with ``--verify``;
- ``mapper convert model.pt DST`` (.pt → safetensors), the same three ways.

Prints one table with ratios against ``cp`` and the naive script measured in the same run, and
the goals of issues 3 and 11 beside each figure. Wall is the best of ``--repeat`` runs, RSS the
largest. Then, where it can (root, xfsprogs), it loop-mounts an XFS image in ``--tmp`` and
times renames that clone instead of copying (:mod:`bench_clone`); it unmounts and deletes the
image at the end, and says why when it cannot.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
MAPPER = [PYTHON, "-m", "mapper_core"]

RULES = """\
version: 1
name: bench-rename
rules:
  - match: 'layers\\.(\\d+)\\.weight'
    target: 'renamed.blocks.{1}.weight'
"""

GENERATE = """
import sys, torch
from safetensors.torch import save_file
n, mib, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
numel = mib * 1024 * 1024 // 4
g = torch.Generator().manual_seed(0)
sd = {f"layers.{i}.weight": torch.rand(numel, generator=g).reshape(-1, 1024) for i in range(n)}
save_file(sd, folder + "/model.safetensors", metadata={"format": "pt"})
torch.save(sd, folder + "/model.pt")
"""

NAIVE_ST = """
import sys
from safetensors.torch import load_file, save_file
sd = load_file(sys.argv[1])
sd = {k.replace("layers.", "renamed.blocks."): v for k, v in sd.items()}
save_file(sd, sys.argv[2], metadata={"format": "pt"})
"""

NAIVE_PT = """
import sys, torch
from safetensors.torch import save_file
save_file(torch.load(sys.argv[1], weights_only=True), sys.argv[2], metadata={"format": "pt"})
"""


# Children run as an installed package does: with bytecode caches (pip writes them at install).
# Without them (PYTHONDONTWRITEBYTECODE=1, as in this project's sandbox) every start compiles the
# sources again, ~0.15 s. The caches go to a folder of their own, never into the checkout.
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
CHILD_ENV["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "mapper-bench-pycache")


@dataclass
class Row:
    name: str
    wall: float
    rss_mb: float


def measure(cmd: list[str], out: Path, repeat: int) -> Row:
    """Best wall time and largest peak RSS of ``cmd`` over ``repeat`` runs; ``out`` is removed after each."""
    walls, rss = [], []
    for _ in range(repeat):
        os.sync()  # the last contender's dirty pages are not this one's to write
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=CHILD_ENV)
        _, status, usage = os.wait4(proc.pid, 0)
        walls.append(time.perf_counter() - start)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err}")
        rss.append(usage.ru_maxrss / 1024)  # KiB on Linux
        for p in out.parent.glob(out.name.split(".")[0] + "*"):
            p.unlink()
    return Row("", min(walls), max(rss))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tmp", default=None, help="folder for the temporary files (default: the system's)")
    ap.add_argument("--tensors", type=int, default=32)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--no-xfs", action="store_true", help="skip the cloning renames on a loop-mounted XFS image")
    ap.add_argument("--xfs-gib", type=int, default=20, help="size of the large XFS rename (default 20 GiB)")
    args = ap.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="mapper-bench-", dir=args.tmp))
    try:
        return run(folder, args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(folder: Path, args: argparse.Namespace) -> int:
    size_gib = args.tensors * args.mib / 1024
    print(f"generating {args.tensors} × {args.mib} MiB float32 tensors ({size_gib:.2f} GiB) in {folder} ...", flush=True)
    subprocess.run([PYTHON, "-c", GENERATE, str(args.tensors), str(args.mib), str(folder)], check=True)
    st, pt = folder / "model.safetensors", folder / "model.pt"
    for path in (st, pt):  # settle writeback so the first contender does not pay for it
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    rules = folder / "rename.yaml"
    rules.write_text(RULES)
    out = folder / "out.safetensors"

    mapper_st = MAPPER + ["convert", str(st), str(out), "--rules", str(rules), "-q"]
    mapper_pt = MAPPER + ["convert", str(pt), str(out), "-q"]
    subprocess.run(MAPPER + ["convert", "--help"], cwd=ROOT, env=CHILD_ENV, capture_output=True)  # caches
    subprocess.run(mapper_st, cwd=ROOT, env=CHILD_ENV, capture_output=True)
    out.unlink(missing_ok=True)
    contenders = [  # (label, kind, command); kind picks the naive script a row is compared with
        ("cp", "cp", ["cp", str(st), str(out)]),
        ("cp + sync FILE", "cp", ["sh", "-c", f"cp '{st}' '{out}' && sync '{out}'"]),
        ("naive st→st (load_file, rename, save_file)", "st", [PYTHON, "-c", NAIVE_ST, str(st), str(out)]),
        ("mapper convert st→st --rules (rename all)", "st", mapper_st),
        ("  same, --no-source-hash", "st", mapper_st + ["--no-source-hash"]),
        ("  same, --verify", "st", mapper_st + ["--verify"]),
        ("  same, --verify --no-source-hash", "st", mapper_st + ["--verify", "--no-source-hash"]),
        ("naive .pt→st (torch.load, save_file)", "pt", [PYTHON, "-c", NAIVE_PT, str(pt), str(out)]),
        ("mapper convert .pt→st", "pt", mapper_pt),
        ("  same, --no-source-hash", "pt", mapper_pt + ["--no-source-hash"]),
        ("  same, --verify", "pt", mapper_pt + ["--verify"]),
        ("  same, --verify --no-source-hash", "pt", mapper_pt + ["--verify", "--no-source-hash"]),
    ]
    rows: list[tuple[str, str, Row]] = []
    for label, kind, cmd in contenders:
        print(f"  {label.strip()} ...", flush=True)
        rows.append((label, kind, measure(cmd, out, args.repeat)))

    cp, cp_sync = rows[0][2], rows[1][2]
    naive = {kind: row for label, kind, row in rows if label.startswith("naive")}
    print()
    print(f"checkpoint: {args.tensors} × {args.mib} MiB float32 = {size_gib:.2f} GiB; "
          f"wall = best of {args.repeat}, RSS = peak of the child")
    head = (f"{'contender':44} {'wall s':>7} {'× cp':>6} {'× cp+sync':>10} {'× naive':>8} {'peak RSS MB':>12} "
            f"{'RSS × naive':>12}")
    print(head)
    print("-" * len(head))
    for label, kind, row in rows:
        base = naive.get(kind)
        rel = f"{row.wall / base.wall:8.2f}" if base else ""
        rel_rss = f"{row.rss_mb / base.rss_mb:12.2f}" if base else ""
        print(f"{label:44} {row.wall:7.2f} {row.wall / cp.wall:6.2f} {row.wall / cp_sync.wall:10.2f} {rel:>8} "
              f"{row.rss_mb:12.0f} {rel_rss:>12}")

    ours, ours_nohash, ours_verify, ours_verify_nohash = (r for _, _, r in rows[3:7])
    pt_row, pt_nohash, pt_verify, pt_verify_nohash = (r for _, _, r in rows[8:12])
    goals = [
        ("st→st wall ≤ 1.15× cp + sync", ours.wall / cp_sync.wall, 1.15),
        ("st→st wall ≤ 1.5× cp", ours.wall / cp.wall, 1.5),
        ("  (same, --no-source-hash, × cp + sync)", ours_nohash.wall / cp_sync.wall, 1.15),
        ("  (same, --no-source-hash, × cp)", ours_nohash.wall / cp.wall, 1.5),
        ("st→st peak RSS ≤ 64 MB", ours.rss_mb, 64),
        ("st→st --verify ≤ 1.3× without", ours_verify.wall / ours.wall, 1.3),
        ("  (same, --no-source-hash)", ours_verify_nohash.wall / ours_nohash.wall, 1.3),
        (".pt→st --verify ≤ 1.3× without", pt_verify.wall / pt_row.wall, 1.3),
        ("  (same, --no-source-hash)", pt_verify_nohash.wall / pt_nohash.wall, 1.3),
        (".pt→st wall ≤ 1.0× naive", pt_row.wall / naive["pt"].wall, 1.0),
        (".pt→st peak RSS ≤ 0.5× naive", pt_row.rss_mb / naive["pt"].rss_mb, 0.5),
    ]
    print()
    for label, value, limit in goals:
        print(f"goal {label:42} measured {value:8.2f}  {'met' if value <= limit else 'MISSED'}")
    print(f"(load average at the end: {os.getloadavg()[0]:.1f})")
    if not args.no_xfs:
        print()
        from bench_clone import run_xfs  # beside this script

        run_xfs(st, rules, Path(args.tmp or tempfile.gettempdir()), args.repeat, args.xfs_gib)
    return 0


if __name__ == "__main__":
    sys.exit(main())
