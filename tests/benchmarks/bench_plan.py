"""Planning benchmark (a script, not a test): .venv/bin/python tests/benchmarks/bench_plan.py

Plans 100,000 source keys (with target specs, so shapes are checked) against rule sets of
10 and 1,000 rules and prints seconds, the 1000/10 ratio and the naive loop's time, next
to the goals of issue 2: ≤ 1 s for 1,000 rules, ratio ≤ 3; then the wall time of
`mapper validate` and `mapper plan` on a safetensors file (goal ≤ 0.3 s each).

Every measurement is a function returning a ``Row``; add more (e.g. CLI wall times) to
``MEASUREMENTS`` or call ``main(extra=[...])``.
"""
from __future__ import annotations

import argparse
import gc
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without install

from mapper_core.plan.make import make_plan  # noqa: E402
from mapper_core.rules.ruleset import Rule, RuleSet, SkipPattern  # noqa: E402
from mapper_core.specs import TensorSpec  # noqa: E402

KEYS = 100_000
BLOCKS = 496  # rule families with a literal part after a digit run
STAGES = 496  # rule families with distinct literal prefixes
NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "up", "down", "gate", "norm", "mix", "out")
GOAL_SECONDS = 1.0
GOAL_RATIO = 3.0


@dataclass(frozen=True)
class Row:
    name: str
    seconds: float | None
    goal: str = ""
    ok: bool | None = None
    note: str = ""


def source_keys(count: int = KEYS) -> dict[str, TensorSpec]:
    """Transformer-ish and conv-ish keys, some handled by prefix-less rules, some skipped, a few unmatched."""
    specs: dict[str, TensorSpec] = {}
    rng = random.Random(0)
    spec = TensorSpec("F32", (8, 8))
    while len(specs) < count:
        kind = rng.random()
        if kind < 0.45:
            key = f"model.layers.{rng.randrange(100)}.block{rng.randrange(BLOCKS + 4)}.{rng.choice(NAMES)}.weight"
        elif kind < 0.90:
            key = f"stage{rng.randrange(STAGES + 4)}.conv{rng.randrange(200)}.{rng.choice(('weight', 'bias'))}"
        elif kind < 0.96:
            key = f"{rng.choice(('encoder', 'decoder'))}.{rng.randrange(5000)}.{rng.choice(NAMES)}"
        else:
            key = f"aux.{rng.randrange(10 ** 6)}.num_batches_tracked"
        specs[key] = spec
    return specs


def rules_1000() -> RuleSet:
    """1,000 rules: one per block / stage (with literal numbers), plus a few prefix-less rules."""
    rules: list[tuple[str, str, dict]] = []
    for j in range(BLOCKS):
        rules.append((rf"model\.layers\.(\d+)\.block{j}\.(\w+)\.weight", f"layers.{{1}}.b{j}.{{2}}.w", {}))
    for j in range(STAGES):
        rules.append((rf"stage{j}\.conv(\d+)\.(weight|bias)", f"s{j}.convs.{{1+1}}.{{2|wb}}", {"wb": {"weight": "w", "bias": "b"}}))
    rules.append((r"(encoder|decoder)\.(\d+)\.(q|k|v)_proj", "{1}.attn.{2}.{3}", {}))
    rules.append((r"(encoder|decoder)\.(\d+)\.(\w+)", "{1}.{2}.{3}", {}))
    rules.append((r"[a-z]+\.(\d+)\.never", "never.{1}", {}))
    rules.append((r".*\.unused", "unused", {}))
    return _ruleset("bench-1000", rules)


def rules_10() -> RuleSet:
    """10 general rules that take the same keys as the 1,000 specific ones."""
    rules = [
        (r"model\.layers\.(\d+)\.block(\d+)\.(q|k|v)_proj\.weight", "layers.{1}.b{2}.{3}_proj.w", {}),
        (r"model\.layers\.(\d+)\.block(\d+)\.(\w+)\.weight", "layers.{1}.b{2}.{3}.w", {}),
        (r"stage(\d+)\.conv(\d+)\.(weight|bias)", "s{1}.convs.{2+1}.{3|wb}", {"wb": {"weight": "w", "bias": "b"}}),
        (r"(encoder|decoder)\.(\d+)\.(q|k|v)_proj", "{1}.attn.{2}.{3}", {}),
        (r"(encoder|decoder)\.(\d+)\.(\w+)", "{1}.{2}.{3}", {}),
        (r"[a-z]+\.(\d+)\.never", "never.{1}", {}),
        (r".*\.unused", "unused", {}),
        (r"head\.(\w+)", "head.{1}", {}),
        (r"embed\.(\w+)", "embed.{1}", {}),
        (r"final_norm\.(weight|bias)", "norm.{1}", {}),
    ]
    return _ruleset("bench-10", rules)


def _ruleset(name: str, rules: list[tuple[str, str, dict]]) -> RuleSet:
    return RuleSet(
        name=name,
        rules=tuple(Rule(i, m, t, tables=tables) for i, (m, t, tables) in enumerate(rules)),
        skip=(SkipPattern(r".*\.num_batches_tracked"), SkipPattern(r"ema\..*")),
    )


def target_specs(source: dict[str, TensorSpec], ruleset: RuleSet) -> dict[str, TensorSpec]:
    """The targets a clean plan fills, with the same shapes (so the shape check runs on every key)."""
    plan = make_plan(source, ruleset)
    return {m.target: source[m.source] for m in plan.mapped}


def naive_plan_keys(source: dict[str, TensorSpec], ruleset: RuleSet) -> int:
    """The baseline: every skip pattern, then every rule, with re.fullmatch, per key. Returns keys taken."""
    taken = 0
    for key in source:
        if any(s.pattern.fullmatch(key) for s in ruleset.skip):
            continue
        for rule in ruleset.rules:
            m = rule.pattern.fullmatch(key)
            if m is not None and rule.template.render(m, rule.tables) is not None:
                taken += 1
                break
    return taken


def best_of(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def measure_planning(repeat: int) -> list[Row]:
    source = source_keys()
    sets = {10: rules_10(), 1000: rules_1000()}
    seconds: dict[int, float] = {}
    rows: list[Row] = []
    for count, ruleset in sets.items():
        targets = target_specs(source, ruleset)
        plan = make_plan(source, ruleset, targets)
        s = plan.summary()
        seconds[count] = best_of(lambda: make_plan(source, ruleset, targets), repeat)
        note = f"mapped {s['mapped']}, skipped {s['skipped']}, unmatched {s['unmatched']}"
        if count == 1000:
            rows.append(Row(f"make_plan {KEYS:,} keys x {count:,} rules", seconds[count],
                            f"<= {GOAL_SECONDS:g} s", seconds[count] <= GOAL_SECONDS, note))
        else:
            rows.append(Row(f"make_plan {KEYS:,} keys x {count:,} rules", seconds[count], note=note))
    ratio = seconds[1000] / seconds[10]
    rows.append(Row("ratio time(1,000 rules) / time(10 rules)", ratio, f"<= {GOAL_RATIO:g}", ratio <= GOAL_RATIO))

    sample_size = 2_000
    sample = dict(list(source.items())[:: KEYS // sample_size])
    naive = best_of(lambda: naive_plan_keys(sample, sets[1000]), 1) * (KEYS / len(sample))
    rows.append(Row(f"naive loop x 1,000 rules (from {len(sample):,} keys, scaled)", naive,
                    note=f"speed-up of make_plan: {naive / seconds[1000]:.0f}x"))
    return rows


CLI_GOAL_SECONDS = 0.3
CLI_RULES = """\
version: 1
name: bench-cli
rules:
  - match: 'enc\\.(\\d+)\\.(weight|bias)'
    target: 'encoder.layers.{1}.{2}'
skip:
  - 'head\\..*'
"""


def wall(cmd: list[str], repeat: int) -> float:
    """Best wall time of a command run in a fresh process (it must exit 0 or 1)."""
    def once() -> None:
        done = subprocess.run(cmd, capture_output=True)
        if done.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.decode()}")
    return best_of(once, repeat)


def measure_cli(repeat: int) -> list[Row]:
    """`mapper validate` and `mapper plan` on a 1,000-tensor safetensors file, start to finish."""
    import numpy as np
    from safetensors.numpy import save_file

    mapper = str(Path(sys.executable).with_name("mapper"))
    with tempfile.TemporaryDirectory() as tmp:
        rules, source = Path(tmp) / "rules.yaml", Path(tmp) / "source.safetensors"
        rules.write_text(CLI_RULES)
        tensors = {f"enc.{i}.weight": np.zeros((16, 16), np.float32) for i in range(990)}
        tensors.update({f"head.{i}.bias": np.zeros(16, np.float32) for i in range(10)})
        save_file(tensors, source)
        python = wall([sys.executable, "-c", "pass"], repeat)
        rows = [Row("python -c pass (interpreter start-up, baseline)", python)]
        for name, cmd in (("mapper validate RULES", [mapper, "validate", str(rules)]),
                          ("mapper plan 1,000-tensor file --rules RULES",
                           [mapper, "plan", str(source), "--rules", str(rules), "--json"])):
            seconds = wall(cmd, repeat)
            rows.append(Row(name, seconds, f"<= {CLI_GOAL_SECONDS:g} s", seconds <= CLI_GOAL_SECONDS,
                            f"{seconds / python:.1f}x interpreter start-up"))
    return rows


# Measurements to run, in order.
MEASUREMENTS: list[Callable[[int], list[Row]]] = [measure_planning, measure_cli]


def render(rows: list[Row]) -> str:
    width = max(len(r.name) for r in rows)
    lines = [f"{'measurement':<{width}}  {'value':>9}  {'goal':<8}  result  note", "-" * (width + 40)]
    for r in rows:
        value = "" if r.seconds is None else (f"{r.seconds:.2f}" if "ratio" in r.name else f"{r.seconds:.3f} s")
        result = "" if r.ok is None else ("ok" if r.ok else "MISSED")
        lines.append(f"{r.name:<{width}}  {value:>9}  {r.goal:<8}  {result:<6}  {r.note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None, extra: list[Callable[[int], list[Row]]] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement; the best is reported")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    for measurement in [*MEASUREMENTS, *extra]:
        rows.extend(measurement(args.repeat))
    print(f"python {sys.version.split()[0]}, best of {args.repeat} runs")
    print(render(rows))
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
