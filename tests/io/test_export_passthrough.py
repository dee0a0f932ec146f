"""export with the source specs reads `unmatched: keep` backwards: a passed-through key goes back
under its own name, unchanged (rule -1 is no rule: never the last rule's transform)."""
from mapper_core.io.export import plan_export
from mapper_core.rules import parse_rules
from mapper_core.specs import TensorSpec


def test_a_passed_through_key_is_exported_as_it_is_and_not_through_the_last_rule():
    rules = parse_rules("version: 1\nunmatched: keep\nrules:\n- {match: 'fc\\.weight', target: 'conv.weight', "
                        "transform: [{unsqueeze: {dim: 2}}]}\n", "r.yaml")
    source = {"fc.weight": TensorSpec("F32", (8, 4)), "extra": TensorSpec("F32", (3,))}
    target = {"conv.weight": TensorSpec("F32", (8, 4, 1)), "extra": TensorSpec("F32", (3,))}
    plan = plan_export(rules, target, source_specs=source)
    entries = {e.target: e for e in plan.entries}
    assert entries["extra"].source == "extra" and entries["extra"].inverse == ()
    assert entries["conv.weight"].source == "fc.weight" and len(entries["conv.weight"].inverse) == 1
    assert plan.problems == ()
