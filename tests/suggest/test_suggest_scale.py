"""suggest on many siblings: modules are compared only with modules they could fit, so the work
grows with the keys, not with their square; past fit.PAIR_LIMIT alike pairs only those sharing a
name, numbers or place are compared, and suggest says so (LIMITED). Counted, never timed."""
from __future__ import annotations

import json

import pytest

from cli_runner import mapper  # tests/helpers
from mapper_core.io.formats.spec_json import write_spec_json
from mapper_core.specs import TensorSpec
from mapper_core.suggest import align, fit, pairing, suggest


@pytest.fixture
def comparisons(monkeypatch):
    """How many times one module is compared with another (fit_module), wherever it is called from."""
    calls = [0]
    real = fit.fit_module

    def counted(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)
    for module in (fit, align, pairing):
        monkeypatch.setattr(module, "fit_module", counted)
    return calls


def _specs(names, shape=lambda i: (4, 4)) -> dict[str, TensorSpec]:
    return {name: TensorSpec("F32", shape(i)) for i, name in enumerate(names)}


def test_siblings_that_cannot_fit_are_never_compared(comparisons):
    # the trial's file: layer{i}.w against block{i}.weight, every one [4, 4] (0 of N paired)
    n = 400
    result = suggest(_specs(f"layer{i}.w" for i in range(n)), _specs(f"block{i}.weight" for i in range(n)))
    assert len(result.pairing.pairs) == 0 and len(result.pairing.skipped) == n
    assert comparisons[0] == 0  # was n * n


def test_siblings_of_distinct_shapes_are_compared_once_each(comparisons):
    n = 400
    shape = lambda i: (i + 1, 8)  # noqa: E731
    result = suggest(_specs((f"layer{i}.weight" for i in range(n)), shape),
                     _specs((f"block{i}.weight" for i in range(n)), shape))
    assert {p.source: p.target for p in result.pairing.pairs} == {f"layer{i}.weight": f"block{i}.weight"
                                                                  for i in range(n)}
    assert comparisons[0] <= 2 * n
    assert not result.pairing.limited


def test_many_containers_with_distinct_structures_are_aligned_only_with_those_they_could_fit(comparisons):
    n = 300
    shape = lambda i: (i + 1, 8)  # noqa: E731
    result = suggest(_specs((f"a{i}.fc.weight" for i in range(n)), shape),
                     _specs((f"b{i}.fc.weight" for i in range(n)), shape))
    assert len(result.pairing.pairs) == n
    assert comparisons[0] <= 2 * n  # was n * n: every container aligned with every other


def test_identical_numbered_layers_align_without_the_n_by_m_table(comparisons):
    n = 600
    names = [f"features.{i}.weight" for i in range(n)]
    result = suggest(_specs(names), _specs(names))
    assert len(result.pairing.pairs) == n
    assert comparisons[0] <= n + 1


def test_past_the_limit_alike_siblings_are_compared_by_name_and_numbers_and_suggest_says_so(comparisons,
                                                                                            monkeypatch):
    n = 300  # 90,000 alike pairs, over fit.PAIR_LIMIT
    assert n * n > fit.PAIR_LIMIT
    source, target = _specs(f"layer{i}.weight" for i in range(n)), _specs(f"block{i}.weight" for i in range(n))
    result = suggest(source, target)
    # what the full comparison finds here too: the numbers tell them apart
    assert {p.source: p.target for p in result.pairing.pairs} == {f"layer{i}.weight": f"block{i}.weight"
                                                                  for i in range(n)}
    assert comparisons[0] <= n * fit.FEW
    assert len(result.pairing.limited) == 1
    assert "89,700 pairs of like modules not compared (over 40,000)" in result.pairing.limited[0]
    assert f"# LIMITED: {result.pairing.limited[0][:40]}" in result.text
    assert result.to_dict()["limited"] == list(result.pairing.limited)
    monkeypatch.setattr(align, "PAIR_LIMIT", 10**9)  # every pair compared: the same pairs here
    assert suggest(source, target).pairing.pairs == result.pairing.pairs


def test_past_the_limit_alike_containers_are_scored_by_numbers_path_and_place(comparisons):
    n = 300
    result = suggest(_specs(f"a{i}.fc{i}.weight" for i in range(n)), _specs(f"b{i}.fc{i}.weight" for i in range(n)))
    assert {p.source: p.target for p in result.pairing.pairs} == {f"a{i}.fc{i}.weight": f"b{i}.fc{i}.weight"
                                                                  for i in range(n)}
    assert comparisons[0] <= n * fit.FEW
    assert any("kinds of containers" in x and "not aligned" in x for x in result.pairing.limited)


def test_the_cli_warns_when_the_limit_cut_the_comparison(tmp_path):
    n = 300
    source = tmp_path / "s.json"
    target = tmp_path / "t.json"
    write_spec_json(_specs(f"layer{i}.weight" for i in range(n)), source)
    write_spec_json(_specs(f"block{i}.weight" for i in range(n)), target)
    done = mapper("suggest", "--source", source, "--target", target, "--json")
    assert done.returncode == 0, done.stderr
    assert "mapper: warning: suggest: the modules of the root module and the root module: 89,700 pairs" \
        in done.stderr
    assert len(json.loads(done.stdout)["limited"]) == 1


def test_a_long_numbered_container_with_a_changed_layer_is_aligned_in_a_band_and_said_so(monkeypatch):
    n = 600  # the 300 × 300 children after the common run are more than fit.PAIR_LIMIT pairs
    source = _specs(f"features.{i}.weight" for i in range(n))
    target = _specs((f"features.{i}.weight" for i in range(n)), lambda i: (5, 4) if i == n // 2 else (4, 4))
    result = suggest(source, target)
    assert len(result.pairing.limited) == 1
    assert "the modules of 'features' and 'features': " in result.pairing.limited[0]
    assert "only alignments that shift a layer at most 66 places beyond the 0 layers added or removed" \
        in result.pairing.limited[0]
    monkeypatch.setattr(align, "PAIR_LIMIT", 10**9)  # the whole table: what the band must agree with here
    whole = suggest(source, target)
    assert not whole.pairing.limited
    assert result.pairing.pairs == whole.pairing.pairs
    assert (result.rules, result.pairing.skipped, result.pairing.new) == \
        (whole.rules, whole.pairing.skipped, whole.pairing.new)
    assert "# LIMITED: the modules of 'features'" in result.text and "LIMITED" not in whole.text


def test_thousands_of_listed_layer_numbers_become_literal_rules_not_a_pattern_the_rules_refuse():
    n = 2600  # (0|1|...|2599): over the 10,000 characters a rules file allows one pattern
    source = _specs(f"features.{i}.weight" for i in range(n))
    target = _specs(f"features.{i}.weight" for i in range(n) if i != n // 2)
    result = suggest(source, target)  # was: RulesError 'suggested.yaml:10: ... the pattern is 12,... characters long'
    assert len(result.pairing.pairs) == n - 1
    assert not result.plan.has_errors(strict=True)
    assert max(len(r.match) for r in result.rules) < 10_000
