"""DCP and parallel-conversion benchmark (a script, not a test):

    .venv/bin/python tests/benchmarks/bench_distributed.py [--tmp /tmp] [--repeat 1] [--skip-405b | --plan-only]
                                                          [--skip-dcp] [--cold]

1. Planning at scale: a fake 405B checkpoint (``make_fake_405b.py``: 7,325 BF16 tensors in
   about 2,000 sparse safetensors shards, and a DCP ``.metadata`` of the same tensors in 8 chunks
   each), then ``mapper plan --cost --workers 8 --max-shard-size 5GB --json`` on both. Goal: ≤ 10 s.
2. Throughput: a 2 GiB safetensors file (32 × 64 MiB F32) converted to shards of 256 MiB with
   ``--workers 1``, ``--workers 2`` and ``torchrun --nproc-per-node 2 -m mapper_core.dist``, with the
   source hash (the default) and with ``--no-source-hash``; the outputs are compared byte for byte.
   ``--cold`` drops the page cache before each run (as root), so the source is read from the disk.
3. DCP → safetensors: the same 2 GiB saved with ``dcp.save``, converted by ``mapper convert`` and
   by torch's way (``dcp_to_torch_save`` + ``torch.load`` + ``save_file``): peak RSS and wall as ratios.

Every contender runs in its own process; wall time is the best of ``--repeat`` runs, peak RSS
the largest ``ru_maxrss`` (``os.wait4``: the largest of the process and the children it waited for,
so it is the peak RSS of the largest single process: the parent, a worker or a rank), CPU is user +
system time of all of them.
"""
from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
MAPPER = [PYTHON, "-m", "mapper_core"]
TORCHRUN = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "mapper_core.dist"]
SAME = "version: 1\nname: same\nrules:\n  - match: '(.+)'\n    target: '{1}'\n"

GENERATE = """
import sys, warnings, torch
import torch.distributed.checkpoint as dcp
from safetensors.torch import save_file
n, mib, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
g = torch.Generator().manual_seed(0)
sd = {f"layers.{i}.weight": torch.rand(mib * 1024 * 1024 // 4, generator=g).reshape(-1, 1024) for i in range(n)}
save_file(sd, folder + "/model.safetensors", metadata={"format": "pt"})
warnings.simplefilter("ignore")
if sys.argv[4:] != ["--skip-dcp"]:
    dcp.save(sd, checkpoint_id=folder + "/dcp", no_dist=True)
"""

TORCH_WAY = """
import sys, warnings, torch
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
from safetensors.torch import save_file
warnings.simplefilter("ignore")
dcp_to_torch_save(sys.argv[1], sys.argv[2] + ".pt")
sd = torch.load(sys.argv[2] + ".pt", weights_only=True)
save_file({k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}, sys.argv[2])
"""


def drop_page_cache() -> None:
    """Write dirty pages out and empty the page cache (root only): the next run reads from the disk."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as fh:
        fh.write("3\n")


def run(cmd: list[str], repeat: int, clean: Path | None = None, cold: bool = False) -> tuple[float, float, float]:
    """(best wall s, largest peak RSS MiB, CPU s of the best run) of ``cmd``; ``clean`` is emptied before each run."""
    best = (float("inf"), 0.0, 0.0)
    rss = 0.0
    for i in range(repeat):
        if clean is not None:
            shutil.rmtree(clean, ignore_errors=True)
            clean.mkdir(parents=True)
        if cold:
            drop_page_cache()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read().decode() if proc.stderr else ''}")
        rss = max(rss, usage.ru_maxrss / 1024)
        if wall < best[0]:
            best = (wall, 0.0, usage.ru_utime + usage.ru_stime)
    return best[0], rss, best[2]


def floors(src: Path, folder: Path, cold: bool) -> tuple[float, float]:
    """What one core and the disk can do at best on this machine: (SHA-256 of ``src`` on one thread,
    s; a kernel copy of ``src`` with fsync, s). A conversion with the source hash costs at least the
    first, any conversion at least the second."""
    import hashlib

    if cold:
        drop_page_cache()
    start = time.perf_counter()
    h, buf = hashlib.sha256(), bytearray(1 << 20)
    view = memoryview(buf)
    with open(src, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
    hashing = time.perf_counter() - start
    if cold:
        drop_page_cache()
    start = time.perf_counter()
    copy = folder / "copy.bin"
    with open(src, "rb") as fin, open(copy, "wb") as fout:
        left = os.fstat(fin.fileno()).st_size
        while left:
            left -= os.copy_file_range(fin.fileno(), fout.fileno(), min(left, 1 << 30))
        os.fsync(fout.fileno())
    copying = time.perf_counter() - start
    copy.unlink()
    return hashing, copying


def same_tree(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir())
    return names == sorted(p.name for p in b.iterdir()) and all(filecmp.cmp(a / n, b / n, shallow=False) for n in names)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tmp", default=None, help="where the fixtures go (about 8 GB at peak)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--skip-405b", action="store_true")
    ap.add_argument("--plan-only", action="store_true", help="only part 1")
    ap.add_argument("--tensors", type=int, default=32)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--cold", action="store_true", help="drop the page cache before each conversion in part 2 (root)")
    ap.add_argument("--skip-dcp", action="store_true", help="leave out part 3")
    args = ap.parse_args(argv)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="mapper-bench-dist-") as tmp:
        folder = Path(tmp)
        rules = folder / "same.yaml"
        rules.write_text(SAME)
        if not args.skip_405b:
            subprocess.run([PYTHON, str(Path(__file__).with_name("make_fake_405b.py")), str(folder / "f405"), "--dcp"],
                           check=True, cwd=ROOT)
            print("\n1. planning a fake 405B checkpoint (goal: <= 10 s)")
            for name, src in (("safetensors, ~2,000 shards", folder / "f405/st/model.safetensors.index.json"),
                              ("DCP .metadata, 58,600 chunks", folder / "f405/dcp")):
                wall, rss, cpu = run(MAPPER + ["plan", str(src), "--rules", str(rules), "--cost", "--workers", "8",
                                               "--max-shard-size", "5GB", "--json"], args.repeat)
                print(f"  plan --cost, {name:30s} wall {wall:6.2f} s  CPU {cpu:6.2f} s  peak RSS {rss:7.0f} MiB")
            shutil.rmtree(folder / "f405")
        if args.plan_only:
            return 0

        size = args.tensors * args.mib
        subprocess.run([PYTHON, "-c", GENERATE, str(args.tensors), str(args.mib), str(folder)]
                       + (["--skip-dcp"] if args.skip_dcp else []), check=True, cwd=ROOT)
        src = folder / "model.safetensors"
        print(f"\n2. converting {size} MiB of safetensors into shards of 256 MiB"
              + (" (page cache dropped before each run)" if args.cold else ""))
        hash_floor, copy_floor = floors(src, folder, args.cold)
        print(f"  floors: SHA-256 of the source on one thread {hash_floor:.2f} s; a kernel copy of it with fsync "
              f"{copy_floor:.2f} s")
        for hashing in ([], ["--no-source-hash"]):
            print(f"  {'with the source hash (the default)' if not hashing else 'with --no-source-hash'}:")
            rows = {}
            for name, cmd in (("--workers 1", MAPPER + ["convert", str(src), "{out}", "--workers", "1"]),
                              ("--workers 2", MAPPER + ["convert", str(src), "{out}", "--workers", "2"]),
                              ("torchrun, 2 ranks", TORCHRUN + ["convert", str(src), "{out}"])):
                out = folder / name.replace(" ", "").replace(",", "")
                cmd = [c.replace("{out}", str(out / "model.safetensors.index.json")) for c in cmd]
                rows[name] = run(cmd + ["--max-shard-size", "256MiB", "-q"] + hashing, args.repeat, clean=out,
                                 cold=args.cold), out
            base = rows["--workers 1"][0][0]
            for name, ((wall, rss, cpu), out) in rows.items():
                same = same_tree(rows["--workers 1"][1], out)
                print(f"    {name:18s} wall {wall:6.2f} s ({size / wall:6.0f} MiB/s, speed-up {base / wall:4.2f}x)  "
                      f"CPU {cpu:5.2f} s  peak RSS {rss:6.0f} MiB  output identical to --workers 1: {same}")
            for _, out in rows.values():
                shutil.rmtree(out)
        src.unlink()

        if args.skip_dcp:
            return 0
        print(f"\n3. DCP ({size} MiB, dcp.save) -> safetensors")
        ours = run(MAPPER + ["convert", str(folder / "dcp"), str(folder / "ours.safetensors"), "-q", "--force"],
                   args.repeat)
        theirs = run([PYTHON, "-c", TORCH_WAY, str(folder / "dcp"), str(folder / "theirs.safetensors")], args.repeat)
        for name, (wall, rss, cpu) in (("mapper convert", ours), ("dcp_to_torch_save + save_file", theirs)):
            print(f"  {name:30s} wall {wall:6.2f} s  CPU {cpu:5.2f} s  peak RSS {rss:6.0f} MiB")
        print(f"  ratio mapper / torch's way: peak RSS {ours[1] / theirs[1]:.2f}, wall {ours[0] / theirs[0]:.2f}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
