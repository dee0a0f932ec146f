"""`mapper suggest` on the command line, from checkpoint headers (no torch): the written file's
format follows its suffix, and what it reports agrees with itself."""
from __future__ import annotations

import json

from mapper_core.io.formats.spec_json import write_spec_json
from cli_runner import mapper  # tests/helpers
from llama_specs import llama
from tiny_safetensors import write_f32


def _pair(tmp_path):
    # a renumbering table, a transposed matrix, a skipped head and a new layer: every section
    source = {"features.0.weight": (8, 3, 3, 3), "features.0.bias": (8,), "features.2.weight": (16, 8, 3, 3),
              "features.2.bias": (16,), "features.5.weight": (32, 16, 3, 3), "features.5.bias": (32,),
              "proj.qkv.weight": (24, 8), "proj.qkv.bias": (24,), "old_head.weight": (7, 5, 3)}
    target = {"encoder.0.weight": (8, 3, 3, 3), "encoder.0.bias": (8,), "encoder.1.weight": (16, 8, 3, 3),
              "encoder.1.bias": (16,), "encoder.2.weight": (32, 16, 3, 3), "encoder.2.bias": (32,),
              "proj.qkv.weight": (8, 24), "proj.qkv.bias": (24,), "extra.weight": (4, 4, 1)}
    return write_f32(tmp_path / "s.safetensors", source), write_f32(tmp_path / "t.safetensors", target)


def _plan(src, rules, tgt):
    done = mapper("plan", src, "--rules", rules, "--target", tgt, "--strict", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    plan = json.loads(done.stdout)
    return {k: plan[k] for k in ("mapped", "skipped", "uninitialized", "summary")}


def test_a_json_output_file_is_json_rules_that_plan_like_the_yaml(tmp_path):
    src, tgt = _pair(tmp_path)
    as_yaml, as_json = tmp_path / "sugg.yaml", tmp_path / "sugg.json"
    assert mapper("suggest", "--source", src, "--target", tgt, "-o", as_yaml).returncode == 0
    done = mapper("suggest", "--source", src, "--target", tgt, "-o", as_json)
    assert done.returncode == 0, done.stderr
    assert "JSON has no comments" in done.stdout
    data = json.loads(as_json.read_text())  # plain JSON, no comment lines
    assert data["rules"][0]["tables"] == {"renumber": {"0": "0", "2": "1", "5": "2"}}
    assert {"transpose": {"dim0": 0, "dim1": 1}} in [s for r in data["rules"] for s in r.get("transform", [])]
    assert data["skip"] and data["new"] and data["unmatched"] == "error"
    valid = mapper("validate", as_json)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    assert _plan(src, as_json, tgt) == _plan(src, as_yaml, tgt)
    assert as_yaml.read_text().startswith("# Suggested by `mapper suggest`")


def test_each_ambiguity_is_warned_commented_and_listed(tmp_path):
    source = write_f32(tmp_path / "a.safetensors", {"b.left.weight": (4, 4, 1), "b.right.weight": (4, 4, 1),
                                                    "b.stem.weight": (4, 3, 1)})
    target = write_f32(tmp_path / "b.safetensors", {"y.down.weight": (4, 4, 1), "y.stem.weight": (4, 3, 1),
                                                    "y.up.weight": (4, 4, 1)})
    done = mapper("suggest", "--source", source, "--target", target, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    listed = {a["source"] for a in report["ambiguous"]}
    assert listed == {"b.left", "b.right"}
    skipped_as_ambiguous = {x["source"] for x in report["skipped"] if x["reason"].startswith("ambiguous")}
    assert skipped_as_ambiguous == {"b.left.weight", "b.right.weight"}
    assert [line for line in done.stderr.splitlines() if "ambiguous" in line and "'b.left'" in line]
    assert [line for line in done.stderr.splitlines() if "ambiguous" in line and "'b.right'" in line]
    assert report["rules_file"].count("# AMBIGUOUS: ") == 2


def test_the_same_ambiguity_in_every_block_is_one_warning_and_every_one_is_still_listed(tmp_path):
    # 12 layers stored sorted: in each, the two norms tie, and so do q/k/v/o and the three MLP
    # matrices (a sorted file's order says nothing): 24 module and 24 container ambiguities

    write_spec_json(llama(12), tmp_path / "hf.json")
    write_spec_json(dict(sorted(llama(12, hf=False).items())), tmp_path / "meta.json")
    out = tmp_path / "s.yaml"
    done = mapper("suggest", "--source", tmp_path / "hf.json", "--target", tmp_path / "meta.json", "-o", out)
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if line.startswith("mapper: warning: ambiguous")]
    assert len(warned) == 2, done.stderr  # one per kind, not one per block
    modules, containers = warned
    assert modules.startswith("mapper: warning: ambiguous: 24 modules each fit several modules of their "
                              "paired container equally well")
    assert ("'model.layers.0.input_layernorm' fits 'layers.0.attention_norm', 'layers.0.ffn_norm'; "
            "'model.layers.0.post_attention_layernorm' fits") in modules
    assert "; and 21 more; pair them by hand" in modules and f"the AMBIGUOUS comments of {out}" in modules
    assert containers.startswith("mapper: warning: ambiguous: 24 containers have modules that fit")
    assert "'model.layers.0.self_attn' with 'layers.0.attention'" in containers and "and 21 more" in containers
    assert out.read_text().count("# AMBIGUOUS: ") == 48  # the file still names every one
    report = json.loads(mapper("suggest", "--source", tmp_path / "hf.json", "--target", tmp_path / "meta.json",
                               "--json").stdout)
    assert len(report["ambiguous"]) == report["summary"]["ambiguous"] == 48
