"""The seed's verbose transfer report, rendered from the Plan (no second code path)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from mapper_core.plan import Plan
from mapper_core.specs import format_shape

if TYPE_CHECKING:
    from torch import nn

RULE = "=" * 80
THIN = "-" * 80
BRANCHES = (
    ("AUDIO ENCODER", "netcnnaud", "audio_encoder.conv_layers"),
    ("VIDEO ENCODER", "netcnnlip", "video_encoder.conv_layers"),
)


def branch_counts(plan: Plan, source_prefix: str) -> tuple[int, int]:
    """(loaded, skipped) source keys of one trunk, from the plan."""
    loaded = sum(1 for m in plan.loadable if m.source.startswith(source_prefix + "."))
    skipped = sum(1 for m in plan.mismatched if m.source.startswith(source_prefix + "."))
    skipped += sum(1 for k in plan.unmatched if k.startswith(source_prefix + "."))
    return loaded, skipped


def render_transfer(plan: Plan, checkpoint: str) -> str:
    """Mapping sections per branch and the transfer summary, as in the seed's guide."""
    lines = [RULE, "TRANSFER LEARNING: Loading pretrained SyncNet weights into FCN model", RULE,
             f"✓ Loaded pretrained checkpoint from: {checkpoint}",
             f"  Total parameters in checkpoint: {plan.source_count}"]
    loadable = {m.source for m in plan.loadable}
    for title, src, dst in BRANCHES:
        lines += ["", THIN, f"{title}: Mapping {src}.* → {dst}.*", THIN]
        for m in plan.mapped:
            if m.source.startswith(src + "."):
                mark = "✓" if m.source in loadable else "✗"
                lines.append(f"  {mark} {m.source} → {m.target} {format_shape(m.shape)}")
        for mm in plan.mismatched:
            if mm.source.startswith(src + "."):
                lines.append(f"  ✗ {mm.source}: shape {format_shape(mm.shape)} vs target "
                             f"{format_shape(mm.target_shape)} (not loaded)")
    audio, video = (branch_counts(plan, src) for _, src, _ in BRANCHES)
    fc_skipped = sum(1 for s in plan.skipped if s.pattern is not None)
    lines += ["", RULE, "TRANSFER LEARNING SUMMARY", RULE,
              f"Audio conv layers loaded:   {audio[0]}",
              f"Audio conv layers skipped:  {audio[1]}",
              f"Video conv layers loaded:   {video[0]}",
              f"Video conv layers skipped:  {video[1]}",
              f"FC layers skipped:          {fc_skipped}"]
    if plan.unmatched:
        lines.append(f"Unmatched checkpoint keys:  {len(plan.unmatched)}")
    lines.append(RULE)
    return "\n".join(lines)


def parameter_counts(model: "nn.Module") -> tuple[int, int]:
    """(frozen, trainable) parameter values."""
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return frozen, trainable


def render_freezing(model: "nn.Module") -> str:
    frozen, trainable = parameter_counts(model)
    return "\n".join(["", "Freezing loaded conv layers...",
                      f"  Frozen parameters:    {frozen:,}",
                      f"  Trainable parameters: {trainable:,}"])


def render_parameter_summary(model: "nn.Module") -> str:
    frozen, trainable = parameter_counts(model)
    total = frozen + trainable
    share = (lambda n: f"{100 * n / total:.1f}%") if total else (lambda n: "n/a")
    return "\n".join(["", RULE, "MODEL PARAMETER SUMMARY", RULE,
                      f"Frozen parameters:     {frozen:,} ({share(frozen)})",
                      f"Trainable parameters:  {trainable:,} ({share(trainable)})",
                      f"Total parameters:      {total:,}", RULE])
