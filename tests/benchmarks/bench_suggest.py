"""suggest benchmark (a script, not a test): .venv/bin/python tests/benchmarks/bench_suggest.py

Two header-only models of about 1,000 tensors each: a GPT-2-style source (`h.N.attn.c_attn`,
Conv1D matrices stored [in, out]) and a Linear-layout target (`layers.N.attn.qkv`, ...), so
every block is paired, every matrix transposed and the rules collapsed over the layer numbers.
Prints the seconds of `suggest` (best of --repeat) against the goal (≤ 2 s), and, as a baseline
measured in the same run, one `make_plan` of the suggested rules on the same pair (suggest
plans its file once, so the ratio says what the pairing itself costs).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without install

from mapper_core.plan.make import make_plan  # noqa: E402
from mapper_core.rules.load import parse_rules  # noqa: E402
from mapper_core.specs import TensorSpec  # noqa: E402
from mapper_core.suggest import suggest  # noqa: E402

GOAL_SECONDS = 2.0


def gpt2(blocks: int, d: int = 64) -> dict[str, TensorSpec]:
    f = lambda *shape: TensorSpec("F32", shape)  # noqa: E731
    specs = {"wte.weight": f(1000, d), "wpe.weight": f(256, d)}
    for i in range(blocks):
        p = f"h.{i}"
        specs.update({f"{p}.ln_1.weight": f(d), f"{p}.ln_1.bias": f(d),
                      f"{p}.attn.c_attn.weight": f(d, 3 * d), f"{p}.attn.c_attn.bias": f(3 * d),
                      f"{p}.attn.c_proj.weight": f(d, d), f"{p}.attn.c_proj.bias": f(d),
                      f"{p}.ln_2.weight": f(d), f"{p}.ln_2.bias": f(d),
                      f"{p}.mlp.c_fc.weight": f(d, 4 * d), f"{p}.mlp.c_fc.bias": f(4 * d),
                      f"{p}.mlp.c_proj.weight": f(4 * d, d), f"{p}.mlp.c_proj.bias": f(d)})
    specs.update({"ln_f.weight": f(d), "ln_f.bias": f(d)})
    return specs


def linear_layout(blocks: int, d: int = 64) -> dict[str, TensorSpec]:
    f = lambda *shape: TensorSpec("F32", shape)  # noqa: E731
    specs = {"tok_emb.weight": f(1000, d), "pos_emb.weight": f(256, d)}
    for i in range(blocks):
        p = f"layers.{i}"
        specs.update({f"{p}.norm1.weight": f(d), f"{p}.norm1.bias": f(d),
                      f"{p}.attn.qkv.weight": f(3 * d, d), f"{p}.attn.qkv.bias": f(3 * d),
                      f"{p}.attn.proj.weight": f(d, d), f"{p}.attn.proj.bias": f(d),
                      f"{p}.norm2.weight": f(d), f"{p}.norm2.bias": f(d),
                      f"{p}.mlp.fc1.weight": f(4 * d, d), f"{p}.mlp.fc1.bias": f(4 * d),
                      f"{p}.mlp.fc2.weight": f(d, 4 * d), f"{p}.mlp.fc2.bias": f(d)})
    specs.update({"norm_f.weight": f(d), "norm_f.bias": f(d)})
    return specs


def best(fn, repeat: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return min(times), value


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="best of N (default 3)")
    ap.add_argument("--blocks", type=int, default=83, help="layers per model (83 → 1,000 tensors)")
    args = ap.parse_args()
    source, target = gpt2(args.blocks), linear_layout(args.blocks)
    parse_rules("version: 1\nrules: []\n", "warm.yaml")  # imports (PyYAML, jsonschema) outside the clock
    seconds, result = best(lambda: suggest(source, target), args.repeat)
    ruleset = parse_rules(result.text, "s.yaml")
    plan_seconds, _ = best(lambda: make_plan(source, ruleset, target), args.repeat)
    s = result.summary()
    print(f"source {len(source)} tensors, target {len(target)} tensors: {s['pairs']} pairs, {s['rules']} rules, "
          f"plan clean: {s['plan_clean']}")
    print(f"suggest      {seconds:7.3f} s   (goal ≤ {GOAL_SECONDS:.0f} s: {'met' if seconds <= GOAL_SECONDS else 'MISSED'})")
    print(f"make_plan    {plan_seconds:7.3f} s   (baseline; suggest / plan = {seconds / plan_seconds:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
