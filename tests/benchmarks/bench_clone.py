"""Renames that clone instead of copying, on a loop-mounted XFS image (a script, not a test).

    .venv/bin/python tests/benchmarks/bench_clone.py SRC.safetensors RULES [--tmp /tmp] [--repeat 3] [--gib 20]

bench_convert.py runs it after its own table, with its 2 GiB fixture and rename rules. Needs root
and xfsprogs (``apt-get install -y xfsprogs``); otherwise it says why and does nothing. It makes a
sparse image in ``--tmp``, mounts it, copies SRC in (2 GiB of real data), builds a ``--gib`` file
of 64 MiB tensors whose data is SRC's data region cloned over and over (real bytes, shared
blocks: writing 20 GiB through a loop device would take minutes), and times, best of
``--repeat``, each in its own process after a ``sync``:

- ``cp`` (coreutils reflinks by default) and ``cp`` + ``sync FILE``;
- ``mapper convert SRC DST --rules RULES``, with the source hash (the default) and without;
- the conversion alone, timed inside a Python process around ``convert()`` (no start-up);
- ``mapper convert`` of a one-tensor file: the command's start-up, for scale.

Then it checks that the clone's output equals the copying path's (``clone=False``) except for
the header's padding, and that the official library reads it. The image is always unmounted
and deleted.
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
MAPPER = [PYTHON, "-m", "mapper_core"]
GOAL_SECONDS = 0.1
# as bench_convert.py: children keep bytecode caches (in a folder of their own), as an installed package does
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
CHILD_ENV["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "mapper-bench-pycache")

TIMED = """
import sys, time
from mapper_core.io.convert import convert
from mapper_core.rules import load_rules
rules = load_rules(sys.argv[3])
start = time.perf_counter()
result = convert(sys.argv[1], sys.argv[2], rules=rules, hash_source=sys.argv[4] == "hash", clone=sys.argv[5] == "clone")
print(time.perf_counter() - start, result.method, result.cloned_bytes)
"""


def run(cmd: list[str]) -> tuple[float, str]:
    """(wall s, stdout) of one run of ``cmd``, after a sync."""
    os.sync()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=CHILD_ENV)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stderr}")
    return wall, proc.stdout


def best(cmd: list[str], out: Path, repeat: int) -> tuple[float, str]:
    walls, text = [], ""
    for _ in range(repeat):
        wall, text = run(cmd)
        walls.append(wall)
        out.unlink()
    return min(walls), text


def why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root to loop-mount an image"
    if not shutil.which("mkfs.xfs"):
        return "needs xfsprogs (apt-get install -y xfsprogs)"
    return None


def build_big(src: Path, big: Path, gib: int) -> None:
    """A ``gib`` GiB safetensors file of 64 MiB F32 tensors: SRC's data region cloned over and over."""
    sys.path.insert(0, str(ROOT))
    from mapper_core.io.clone import Cloner, header_length
    from mapper_core.io.formats.safetensors_header import read_header

    head = read_header(src)
    region = sum(e - b for b, e in head.offsets.values())
    tensor = 64 << 20
    count, copies = gib * 1024 // 64, gib * (1 << 30) // region
    header = {f"layers.{i}.weight": {"dtype": "F32", "shape": [tensor // 4096, 1024],
                                     "data_offsets": [i * tensor, (i + 1) * tensor]} for i in range(count)}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    length = header_length(len(text), head.data_start % 4096, 4096)
    text += b" " * (length - len(text))
    cloner = Cloner(4096)

    def copy(s: int, so: int, d: int, do: int, n: int) -> None:
        os.pwrite(d, os.pread(s, n, so), do)

    with open(src, "rb") as fs, open(big, "wb+") as fd:
        fd.write(struct.pack("<Q", len(text)) + text)
        fd.truncate(8 + len(text) + copies * region)
        for k in range(copies):
            cloner.copy(fs.fileno(), head.data_start, fd.fileno(), 8 + len(text) + k * region, region, copy)
    if cloner.cloned == 0:
        raise SystemExit(f"could not build {big} by cloning: {cloner.refusal}")


def same_but_padding(a: Path, b: Path) -> bool:
    """The two files hold the same header JSON (but for trailing spaces) and the same data bytes."""
    with open(a, "rb") as fa, open(b, "rb") as fb:
        (na,), (nb,) = struct.unpack("<Q", fa.read(8)), struct.unpack("<Q", fb.read(8))
        if fa.read(na).rstrip(b" ") != fb.read(nb).rstrip(b" "):
            return False
        while True:
            x, y = fa.read(8 << 20), fb.read(8 << 20)
            if x != y:
                return False
            if not x:
                return True


def run_xfs(src: Path, rules: Path, tmp: Path, repeat: int, big_gib: int) -> None:
    reason = why_not()
    if reason:
        print(f"XFS clone benchmark skipped: {reason}")
        return
    image = tmp / f"mapper-bench-xfs-{os.getpid()}.img"
    mnt = Path(tempfile.mkdtemp(prefix="mapper-bench-xfs-"))
    mounted = False
    try:
        with open(image, "wb") as fh:
            fh.truncate((big_gib + 12) << 30)  # sparse: only what is written takes disk
        made = subprocess.run(["mkfs.xfs", "-q", str(image)], capture_output=True, text=True)
        mount = made.returncode == 0 and subprocess.run(["mount", "-o", "loop", str(image), str(mnt)],
                                                        capture_output=True, text=True)
        if not mount or mount.returncode != 0:
            print(f"XFS clone benchmark skipped: cannot make or mount the image: "
                  f"{(made.stderr or (mount.stderr if mount else '')).strip()}")
            return
        mounted = True
        _measure(src, rules, mnt, repeat, big_gib)
    finally:
        if mounted:
            subprocess.run(["umount", str(mnt)], check=False)
        image.unlink(missing_ok=True)
        shutil.rmtree(mnt, ignore_errors=True)


def _measure(src: Path, rules: Path, mnt: Path, repeat: int, big_gib: int) -> None:
    small = mnt / "model.safetensors"
    subprocess.run(["cp", "--reflink=never", str(src), str(small)], check=True)
    big = mnt / "big.safetensors"
    print(f"XFS: building the {big_gib} GiB file by cloning the 2 GiB data region ...", flush=True)
    build_big(small, big, big_gib)
    tiny = mnt / "tiny.safetensors"
    tiny.write_bytes(_tiny())
    out = mnt / "out.safetensors"
    rows = []
    run(MAPPER + ["convert", "--help"])  # the bytecode caches
    startup, _ = best(MAPPER + ["convert", str(tiny), str(out), "--rules", str(rules), "--unmatched", "keep", "-q"],
                      out, repeat)
    for label, path in (("2 GiB", small), (f"{big_gib} GiB", big)):
        print(f"  {label} ...", flush=True)
        cp, _ = best(["cp", str(path), str(out)], out, repeat)
        cp_sync, _ = best(["sh", "-c", f"cp '{path}' '{out}' && sync '{out}'"], out, repeat)
        cmd = MAPPER + ["convert", str(path), str(out), "--rules", str(rules), "-q"]
        hashed, _ = best(cmd, out, repeat)
        nohash, _ = best(cmd + ["--no-source-hash"], out, repeat)
        inner, text = best([PYTHON, "-c", TIMED, str(path), str(out), str(rules), "nohash", "clone"], out, repeat)
        seconds, method, cloned = text.split()
        rows.append((label, cp, cp_sync, hashed, nohash, float(seconds), method, int(cloned)))

    print()
    print(f"XFS (loop-mounted image), best of {repeat}; `mapper convert` start-up (a 1-tensor rename): "
          f"{startup:.3f} s")
    head = f"{'file':8} {'cp s':>7} {'cp+sync':>8} {'mapper':>8} {'--no-source-hash':>17} {'convert() alone':>16}  path"
    print(head)
    print("-" * len(head))
    for label, cp, cp_sync, hashed, nohash, seconds, method, cloned in rows:
        print(f"{label:8} {cp:7.3f} {cp_sync:8.3f} {hashed:8.3f} {nohash:17.3f} {seconds:16.3f}  "
              f"{method}, {cloned / (1 << 30):.2f} GiB cloned")
    for label, cp, cp_sync, hashed, nohash, seconds, method, cloned in rows:
        print(f"goal {label} rename ≤ {GOAL_SECONDS} s: convert() {seconds:.3f} s "
              f"{'met' if seconds <= GOAL_SECONDS else 'MISSED'}; whole command, --no-source-hash "
              f"{nohash:.3f} s {'met' if nohash <= GOAL_SECONDS else 'MISSED'}; with the source hash {hashed:.3f} s")
        print(f"goal {label} ≤ 1.5× cp: --no-source-hash {nohash / cp:.2f}× "
              f"{'met' if nohash / cp <= 1.5 else 'MISSED'}; with the hash {hashed / cp:.2f}×")

    copied = mnt / "copied.safetensors"
    run([PYTHON, "-c", TIMED, str(small), str(out), str(rules), "nohash", "clone"])
    run([PYTHON, "-c", TIMED, str(small), str(copied), str(rules), "nohash", "copy"])
    from safetensors import safe_open

    with safe_open(str(small), framework="numpy") as f:  # what the source holds, as the library reads it
        expected = sorted((tuple(f.get_slice(k).get_shape()), str(f.get_slice(k).get_dtype())) for k in f.keys())
    with safe_open(str(out), framework="numpy") as f:
        readable = sorted((tuple(f.get_slice(k).get_shape()), str(f.get_slice(k).get_dtype())) for k in f.keys()) \
            == expected and f.get_tensor(next(iter(f.keys()))).size > 0
    print(f"2 GiB clone output equal to the copy's but for header padding: {same_but_padding(out, copied)}; "
          f"read by the official library: {readable}")


def _tiny() -> bytes:
    text = b'{"layers.0.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + bytes(8)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("rules", type=Path)
    ap.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--gib", type=int, default=20)
    args = ap.parse_args()
    run_xfs(args.src.resolve(), args.rules.resolve(), args.tmp, args.repeat, args.gib)
    return 0


if __name__ == "__main__":
    sys.exit(main())
