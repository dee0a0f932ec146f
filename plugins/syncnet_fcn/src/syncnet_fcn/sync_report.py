"""What ``sync`` found for one clip, in one value that the text, JSON and plot all render.

Offsets are in frames at 25 fps, −K…K; offset o means video frame t matches the audio of
frame t − o, so o > 0: the sound comes o frames (40·o ms) before the picture that matches it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .features import FPS
from .instance import EvalResult
from .original import OriginalResult

STEPS_PER_LINE = 20


@dataclass(frozen=True)
class SyncReport:
    """``scores``/``table`` are probabilities (higher is better) for the FCN models and
    distances (lower is better) for the original; ``table`` is [offsets, steps]."""

    file: str
    model: str
    checkpoint: str
    frames: int
    offset: int
    confidence: float
    measure: str  # "probability" | "distance"
    offsets: tuple[int, ...]
    scores: tuple[float, ...]
    step_offsets: tuple[int, ...]
    step_confidences: tuple[float, ...]
    table: torch.Tensor = field(repr=False)
    notes: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)
    decoded: int | None = None  # frames decoded from the file; ``frames`` are those the model used

    @property
    def seconds(self) -> float:
        return self.frames / FPS

    @property
    def higher_is_better(self) -> bool:
        return self.measure == "probability"

    def as_json(self) -> dict:
        return {
            "file": self.file, "model": self.model, "checkpoint": self.checkpoint,
            "frames": self.frames, "seconds": round(self.seconds, 3), "fps": FPS,
            "decoded_frames": self.frames if self.decoded is None else self.decoded,
            "offset": self.offset, "offset_ms": 1000 * self.offset // FPS,
            "confidence": self.confidence,
            "confidence_measure": ("top minus median probability" if self.higher_is_better
                                   else "median minus minimum distance"),
            "offsets": list(self.offsets),
            f"mean_{self.measure}": list(self.scores),
            "steps": [{"step": i, "time": round(i / FPS, 3), "offset": o, "confidence": c}
                      for i, (o, c) in enumerate(zip(self.step_offsets, self.step_confidences))],
            "notes": list(self.notes), **self.extra,
        }


def from_fcn(result: EvalResult, probs: torch.Tensor, *, file: str, model: str, checkpoint: str,
             frames: int, notes: list[str], decoded: int | None = None) -> SyncReport:
    k = result.max_offset
    return SyncReport(file, model, checkpoint, frames, result.offset, result.confidence, "probability",
                      tuple(range(-k, k + 1)), result.mean_probs, result.offsets, result.confidences,
                      probs, tuple(notes), decoded=decoded)


def from_original(result: OriginalResult, *, file: str, checkpoint: str, frames: int,
                  notes: list[str], decoded: int | None = None) -> SyncReport:
    v = result.vshift
    # column j of the distance table is offset v − j: flip it so that rows run −v…v
    table = result.dists.flip(1).T.contiguous()
    return SyncReport(file, "original", checkpoint, frames, result.offset, result.confidence, "distance",
                      tuple(range(-v, v + 1)), tuple(reversed(result.mean_dists)), result.offsets,
                      result.smoothed_confidences, table, tuple(notes),
                      {"min_dist": result.min_dist, "raw_step_confidences": list(result.confidences)}, decoded)


def describe_offset(offset: int) -> str:
    ms = 1000 * offset // FPS
    if offset == 0:
        return "0 frames (in sync)"
    lead = "before" if offset > 0 else "after"
    unit = "frame" if abs(offset) == 1 else "frames"
    return f"{offset:+d} {unit} ({ms:+d} ms: the sound comes {abs(ms)} ms {lead} the picture)"


def render_text(report: SyncReport) -> str:
    measure = ("top probability − median probability" if report.higher_is_better
               else "median distance − minimum distance")
    decoded = report.frames if report.decoded is None else report.decoded
    used = "" if decoded == report.frames else f", {report.frames} of them usable ({report.seconds:.2f} s)"
    lines = [f"{report.file}: {decoded} frames ({decoded / FPS:.2f} s) at {FPS} fps{used}, "
             f"model {report.model} ({report.checkpoint})"]
    lines += [f"  note: {note}" for note in report.notes]
    lines += [f"AV offset:   {describe_offset(report.offset)}",
              f"Confidence:  {report.confidence:.3f} ({measure})",
              f"Per-step offsets ({len(report.step_offsets)} steps; step t is frames t…t+4, "
              f"{1000 // FPS} ms apart):"]
    for first in range(0, len(report.step_offsets), STEPS_PER_LINE):
        chunk = report.step_offsets[first:first + STEPS_PER_LINE]
        lines.append(f"  {first / FPS:6.2f} s  " + " ".join(f"{o:+3d}" for o in chunk))
    return "\n".join(lines)
