"""make_plan: source specs + rules (+ target specs) → Plan. Pure: headers only, no I/O, no torch.

Per source key, in this order:

1. skip patterns: the first that fully matches leaves the key behind (even if a rule would take it);
2. rules, in order: the first whose pattern fully matches *and* whose template renders wins
   (a table without the captured entry, a shift below 0 or a group that took no part
   lets the next rule try);
3. otherwise the key is unmatched, and the unmatched policy (``unmatched:`` in the rules, or the
   ``unmatched`` argument) decides: ``error`` (the plan fails), ``keep`` (passed through under
   its own name, rule ``PASS_THROUGH``), ``drop`` (left behind and listed).

With target specs, a mapped key whose target is absent or has another shape is a
mismatch, handled by the rule's ``on_shape_mismatch``; a different dtype is not a mismatch.
A rule's ``transform:`` steps are inferred on the header first: the shape after them is what
is compared, and a step that cannot apply to the key's shape is a mismatch with a reason.
Then every loadable tensor is kind-checked (:mod:`.kind_check`): its source and target modules
must be of compatible kinds, and the members of a module must travel together. Target keys
nothing fills are ``uninitialized``, or ``expected_uninitialized`` when a ``new:`` pattern of
the rules declares them; with ``target_ties`` (names that are one tensor in the target model, an
output layer sharing the embedding), a key nothing fills whose tied partner is filled is neither:
it is in ``tied_filled``, filled through the tie.
"""
from __future__ import annotations

from operator import attrgetter
from typing import Any, Callable, Mapping, Sequence

from ..rules.key_pattern import full_matcher
from ..rules.combined import LONG, Blocks, joinable
from ..rules.matcher import Matcher
from .kind_check import check_kinds
from .plan import PASS_THROUGH, UNMATCHED_POLICIES, Collision, Mapped, Mismatch, NonTensor, Plan, Skipped
from .unused import unused_rules
from ..rules.ruleset import RuleSet
from ..specs import TensorSpec, shown_shape
from ..rules.transforms import TransformChainError, chain_peak, chain_spec
from ..gc_pause import pauses_gc

_target = attrgetter("target")

# A transform may make a tensor up to this large, or this many times its source's size, whichever is
# more (the same bound --allow-expansion lifts for torch files): `pad: {after: 268435456}` on a
# 10-value tensor would otherwise pass the plan and fail to allocate a gigabyte in convert.
EXPANSION_FLOOR = 256 * 2**20
EXPANSION_RATIO = 4
MAX_TENSOR_BYTES = 2**63  # torch sizes and byte counts are signed 64-bit
EMPTY_TARGET = ("its target template gives an empty key, a name no module can hold; change the template (or narrow "
                "the match) so that every key the rule takes gets a name")


def expansion_limit(source_bytes: int) -> int:
    """The most bytes a transform chain may make from a tensor of ``source_bytes``."""
    return max(EXPANSION_FLOOR, EXPANSION_RATIO * source_bytes)


@pauses_gc
def make_plan(
    source_specs: Mapping[str, TensorSpec],
    ruleset: RuleSet,
    target_specs: Mapping[str, TensorSpec] | None = None,
    *,
    source_origin: str | None = None,
    target_origin: str | None = None,
    unmatched: str | None = None,
    non_tensor: Mapping[str, str] | None = None,
    target_module_types: Mapping[str, str] | None = None,
    allow_expansion: bool = False,
    target_ties: Sequence[Sequence[str]] = (),
) -> Plan:
    """Plan what happens to every source key and which target keys get filled.

    ``unmatched`` overrides the rules' ``unmatched:`` policy (error | keep | drop);
    ``non_tensor`` maps the source's non-tensor values to their type names (listed, left behind);
    ``target_module_types`` maps target module names (the key before its last dot) to their class
    names when the target is a real model, for the kind check and its messages.
    A transform chain that would make (or pass through) a tensor larger than
    :func:`expansion_limit` of its source is an error for that key unless ``allow_expansion``.
    ``target_ties`` are groups of target names that are one tensor (tied weights of a model: see
    :func:`mapper_core.train.apply.module_ties`): a name nothing fills is filled through its tie when
    the plan fills another name of its group (``Plan.tied_filled``).
    """
    policy = ruleset.unmatched if unmatched is None else unmatched
    if policy not in UNMATCHED_POLICIES:
        raise ValueError(f"unknown unmatched policy {policy!r}; use one of {', '.join(UNMATCHED_POLICIES)}")
    rules = ruleset.rules
    # One index over skip patterns then rules: candidate ids come out ascending, so skip
    # patterns are tried first, and each group in its own order. Per candidate the matcher
    # remembers its steps: (full match, renderer or None for a skip pattern, index in its group).
    steps = [(full_matcher(s.pattern), None, i) for i, s in enumerate(ruleset.skip)] + \
        [(full_matcher(r.pattern), r.template.renderer, i) for i, r in enumerate(rules)]  # renderers: once per Rule
    patterns = [s.pattern for s in ruleset.skip] + [r.pattern for r in rules]
    candidates = Matcher(patterns, answer=_answers(steps, patterns)).cached_candidates
    skip_text = [s.match for s in ruleset.skip]

    mapped: list[Mapped] = []
    skipped: list[Skipped] = []
    unmatched: list[str] = []
    mismatched: list[Mismatch] = []
    used = [False] * len(rules)
    has_target = target_specs is not None
    targets = target_specs if target_specs is not None else {}
    # per rule: its index when its entries need no checks (no target, no transform), else None
    plain = [None if has_target or r.transform else r.index for r in rules]
    keep = policy == "keep"
    add = mapped.append
    make, entry = tuple.__new__, Mapped  # Mapped(...) of all ten fields, without its keyword handling

    for key, spec in source_specs.items():
        found = candidates(key)
        if found.__class__ is not tuple:  # a long list the index could not narrow: tried a block at a time
            found = found.from_first_possible(key)
        for fullmatch, render, i in found:
            m = fullmatch(key)
            if m is None:
                continue
            if render is None:  # a skip pattern
                skipped.append(Skipped(key, skip_text[i]))
                break
            target = render(m)
            if target is None:
                continue
            used[i] = True
            if not target:  # no module holds a tensor named '': a rules mistake, whatever on_shape_mismatch says
                mismatched.append(Mismatch(key, target, i, tuple(spec.shape), None, "error", spec.dtype, None,
                                           EMPTY_TARGET, None, rules[i].line))
                add(Mapped(key, target, i, spec.dtype, tuple(spec.shape)))  # listed, as other errors' entries are
                break
            index = plain[i]
            if index is not None:  # the common case, without the checks below
                add(make(entry, (key, target, index, spec.dtype, tuple(spec.shape), None, None, (), None, None)))
            else:
                _check(key, spec, rules[i], target, targets if has_target else None, allow_expansion,
                       add, skipped, mismatched)
            break
        else:  # no skip pattern and no rule takes the key
            if not keep:
                unmatched.append(key)
            elif not has_target:
                add(make(entry, (key, key, PASS_THROUGH, spec.dtype, tuple(spec.shape), None, None, (), None, None)))
            else:
                _check(key, spec, None, key, targets, allow_expansion, add, skipped, mismatched)

    collisions = _collisions(mapped, rules)
    bad_targets = {c.target for c in collisions}
    bad_sources = {m.source for m in mismatched}
    loadable = [m for m in mapped if m.target not in bad_targets and m.source not in bad_sources] \
        if bad_targets or bad_sources else mapped
    kind_mismatches, (source_kinds, target_kinds) = check_kinds(loadable, source_specs, target_specs if has_target else None,
                                  [r.on_kind_mismatch for r in rules], target_module_types)
    uninitialized: tuple[str, ...] = ()
    expected: tuple[str, ...] = ()
    tied: tuple[tuple[str, str], ...] = ()
    if has_target:
        filled = set(map(_target, loadable))
        empty = sorted(k for k in targets if k not in filled)
        if target_ties and empty:
            tied = tied_partners(empty, filled, target_ties)
            through_tie = {k for k, _ in tied}
            empty = [k for k in empty if k not in through_tie]
        # through the prefix index, as the rules: `mapper suggest` writes a `new:` pattern per module
        new = [full_matcher(p.pattern) for p in ruleset.new]
        declared = Matcher([p.pattern for p in ruleset.new]).cached_candidates
        is_new = {k: any(new[i](k) for i in declared(k)) for k in empty}
        expected = tuple(k for k in empty if is_new[k])
        uninitialized = tuple(k for k in empty if not is_new[k])

    return Plan(
        rules_name=ruleset.name,
        mapped=tuple(mapped),
        skipped=tuple(skipped),
        unmatched=tuple(unmatched),
        uninitialized=uninitialized,
        mismatched=tuple(mismatched),
        collisions=collisions,
        # why each unused rule took no key: after the fact, for those rules only
        unused_rules=unused_rules(source_specs, ruleset, used, mapped, skipped),
        source_count=len(source_specs),
        target_count=len(targets) if has_target else None,
        source_origin=source_origin,
        target_origin=target_origin,
        rules_origin=ruleset.origin,
        rules_sha256=ruleset.sha256,
        unmatched_policy=policy,
        non_tensor=tuple(NonTensor(k, t) for k, t in (non_tensor or {}).items()),
        kind_mismatches=kind_mismatches,
        expected_uninitialized=expected,
        tied_filled=tied,
        module_kinds=(source_kinds, target_kinds),
    )


def tied_partners(empty: Sequence[str], filled: set[str],
                  ties: Sequence[Sequence[str]]) -> tuple[tuple[str, str], ...]:
    """(name, the filled name it is one tensor with) for each of the ``empty`` names that ``ties``
    groups with a ``filled`` one: the first filled name of its group, in the group's order."""
    partner: dict[str, str] = {}
    for names in ties:
        first = next((n for n in names if n in filled), None)
        if first is not None:
            partner.update((n, first) for n in names if n not in filled)
    return tuple((k, partner[k]) for k in empty if k in partner)


def _answers(steps: list[tuple], patterns: list) -> Callable[[list[int]], Any]:
    """What the matcher remembers for a key class: the candidates' steps, as a tuple, or for a list
    of :data:`~mapper_core.rules.combined.LONG` or more as :class:`~mapper_core.rules.combined.Blocks`
    (one per distinct list; blocks shared between lists compile once)."""
    texts: list = []
    lists: dict[tuple[int, ...], Blocks] = {}
    alternations: dict = {}

    def answer(ids: list[int]) -> Any:
        if len(ids) < LONG:
            return tuple(map(steps.__getitem__, ids))
        if not texts:
            texts.extend(map(joinable, patterns))
        found = lists.get(key := tuple(ids))
        if found is None:
            found = lists[key] = Blocks([steps[i] for i in ids], [texts[i] for i in ids], alternations)
        return found

    return answer


def _check(key: str, spec: TensorSpec, rule, target: str, targets: Mapping[str, TensorSpec] | None,
           allow_expansion: bool, add, skipped: list[Skipped], mismatched: list[Mismatch]) -> None:
    """Plan a key that ``rule`` (None: passed through) takes to ``target`` with the checks: its
    transform (inferred on the header, bounded), and the shape of its target when ``targets`` is given."""
    index = PASS_THROUGH if rule is None else rule.index
    shape = tuple(spec.shape)
    extra: dict = {}
    reason = ""
    too_big = None
    out_shape = shape
    if rule is not None and rule.transform:
        try:
            out = chain_spec(rule.transform, spec)
            out_shape = tuple(out.shape)
            extra = {"transform": rule.transform, "out_dtype": out.dtype, "out_shape": out_shape}
            too_big = _expansion(rule.transform, spec, allow_expansion)
            if too_big:
                reason = too_big
                extra = {"transform": rule.transform}
        except TransformChainError as exc:
            reason = str(exc)  # the rule and key are fields of the Mismatch: messages name them once
            extra = {"transform": rule.transform}
    if targets is None and not reason:
        add(Mapped(key, target, index, spec.dtype, shape, **extra))
        return
    tspec = None if targets is None else targets.get(target)
    tshape = None if tspec is None else tuple(tspec.shape)
    tdtype = None if tspec is None else tspec.dtype
    if reason or (targets is not None and tshape != out_shape):
        # a bomb is an error even under on_shape_mismatch: skip (the key is not merely of another shape)
        action = "error" if rule is None or too_big else rule.on_shape_mismatch
        mismatched.append(Mismatch(key, target, index, shape, tshape, action, spec.dtype, tdtype,
                                   reason, out_shape if "transform" in extra and not reason else None,
                                   None if rule is None else rule.line))
        if action == "skip":
            skipped.append(Skipped(key, None, index))
            return
    add(Mapped(key, target, index, spec.dtype, shape, tshape, tdtype, **extra))


def _expansion(steps: tuple, spec: TensorSpec, allowed: bool) -> str | None:
    """Why a transform chain makes too large a tensor from ``spec`` (see :func:`expansion_limit`; only
    what no tensor can hold when the expansion is ``allowed``), or None."""
    peak = chain_peak(steps, spec)
    if peak.nbytes >= MAX_TENSOR_BYTES:
        return (f"its transform makes a {peak.dtype} tensor of shape {shown_shape(peak.shape)} "
                f"({_size(peak.nbytes)}), more than any tensor can hold (2**63 bytes), even with --allow-expansion; check the step's parameters")
    limit = expansion_limit(spec.nbytes)
    if allowed or peak.nbytes <= limit:
        return None
    return (f"its transform makes a {peak.dtype} tensor of shape {shown_shape(peak.shape)} ({_size(peak.nbytes)}) from "
            f"{_size(spec.nbytes)}, past the expansion limit of {_size(limit)} (the larger of "
            f"{_size(EXPANSION_FLOOR)} and {EXPANSION_RATIO}x the source tensor); check the step's parameters, or pass "
            "--allow-expansion (Python: allow_expansion=True) if the size is intended")


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,} bytes"


def _collisions(mapped: list[Mapped], rules) -> tuple[Collision, ...]:
    """Targets that two or more mapped sources claim, in the order their first source appears."""
    if len(set(map(_target, mapped))) == len(mapped):  # the usual, clean case costs one set
        return ()
    by_target: dict[str, list[Mapped]] = {}
    for m in mapped:
        by_target.setdefault(m.target, []).append(m)
    return tuple(
        Collision(target, tuple(m.source for m in group), tuple(m.rule for m in group),
                  tuple(None if m.rule < 0 else rules[m.rule].line for m in group))
        for target, group in by_target.items()
        if len(group) > 1
    )
