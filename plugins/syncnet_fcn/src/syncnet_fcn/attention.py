"""SyncNetFCN_WithAttention: SyncNetFCN plus temporal and cross-modal attention.

Between the encoders and the correlation, each modality attends over its own time axis
(``temporal_attn_audio``, ``temporal_attn_video``), then each attends to the other
(``cross_attn``). Every block is residual with a LayerNorm and keeps [B, E, T'], so all
shapes are those of :mod:`syncnet_fcn.fcn`. The conv trunks are unchanged, so the same
rule set loads the original SyncNet weights into this model.

Attention is local: a step attends to the steps at most ``attention_radius`` away (a band
mask), for the reason ``channel_attn`` squeezes locally: every output must depend on a
bounded stretch of the stream so that StreamSync can compute it exactly, with constant
memory. ``attention_radius=None`` attends over the whole clip (that model cannot stream).
"""
from __future__ import annotations

import torch
from torch import nn

from .fcn import DEFAULT_SQUEEZE_RADIUS, SyncNetFCN

DEFAULT_ATTENTION_RADIUS = 8  # steps each side


def _check_heads(embedding_dim: int, num_heads: int) -> None:
    if num_heads < 1 or embedding_dim % num_heads:
        raise ValueError(f"attention: embedding_dim {embedding_dim} must be a multiple of "
                         f"num_heads {num_heads}; pick num_heads dividing it")


def band_mask(steps: int, radius: int | None, device: torch.device | None = None) -> torch.Tensor | None:
    """Bool [steps, steps], True where query i may NOT see key j (|i − j| > radius); None
    when ``radius`` is None (global attention)."""
    if radius is None:
        return None
    index = torch.arange(steps, device=device)
    return (index[:, None] - index[None, :]).abs() > radius


def _check_radius(radius: int | None) -> None:
    if radius is not None and radius < 0:
        raise ValueError(f"attention: radius must be ≥ 0 or None, got {radius}")


class TemporalSelfAttention(nn.Module):
    """Self-attention over time within one modality: [B, E, T'] → [B, E, T']."""

    def __init__(self, embedding_dim: int, num_heads: int = 8, dropout: float = 0.0,
                 radius: int | None = DEFAULT_ATTENTION_RADIUS):
        super().__init__()
        _check_heads(embedding_dim, num_heads)
        _check_radius(radius)
        self.radius = radius
        self.attn = nn.MultiheadAttention(embedding_dim, num_heads, dropout=dropout,
                                          batch_first=True)
        self.norm = nn.LayerNorm(embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.transpose(1, 2)  # [B, T', E]: MultiheadAttention wants time before channels
        mask = band_mask(seq.shape[1], self.radius, seq.device)
        mixed, _ = self.attn(seq, seq, seq, attn_mask=mask, need_weights=False)
        return self.norm(seq + mixed).transpose(1, 2)


class CrossModalAttention(nn.Module):
    """Audio attends to video and video to audio: two [B, E, T'] → two [B, E, T'].

    Both directions read the *input* features of the other modality, so the result does
    not depend on which direction is computed first.
    """

    def __init__(self, embedding_dim: int, num_heads: int = 8, dropout: float = 0.0,
                 radius: int | None = DEFAULT_ATTENTION_RADIUS):
        super().__init__()
        _check_heads(embedding_dim, num_heads)
        _check_radius(radius)
        self.radius = radius
        self.audio_from_video = nn.MultiheadAttention(embedding_dim, num_heads,
                                                      dropout=dropout, batch_first=True)
        self.video_from_audio = nn.MultiheadAttention(embedding_dim, num_heads,
                                                      dropout=dropout, batch_first=True)
        self.audio_norm = nn.LayerNorm(embedding_dim)
        self.video_norm = nn.LayerNorm(embedding_dim)

    def forward(self, audio: torch.Tensor,
                video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, v = audio.transpose(1, 2), video.transpose(1, 2)  # [B, T', E]
        mask = band_mask(a.shape[1], self.radius, a.device)
        a_mixed, _ = self.audio_from_video(a, v, v, attn_mask=mask, need_weights=False)
        v_mixed, _ = self.video_from_audio(v, a, a, attn_mask=mask, need_weights=False)
        return (self.audio_norm(a + a_mixed).transpose(1, 2),
                self.video_norm(v + v_mixed).transpose(1, 2))


class SyncNetFCN_WithAttention(SyncNetFCN):
    """SyncNetFCN with temporal self-attention per modality and cross-modal attention.

    Same constructor defaults, inputs and outputs as :class:`SyncNetFCN`; ``num_heads``
    must divide ``embedding_dim``. The returned features are the attended ones.
    """

    def __init__(self, embedding_dim: int = 512, max_offset: int = 15, num_heads: int = 8,
                 squeeze_radius: int | None = DEFAULT_SQUEEZE_RADIUS,
                 attention_radius: int | None = DEFAULT_ATTENTION_RADIUS, audio_mode: str = "clip"):
        super().__init__(embedding_dim=embedding_dim, max_offset=max_offset,
                         squeeze_radius=squeeze_radius, audio_mode=audio_mode)
        self.attention_radius = attention_radius
        self.temporal_attn_audio = TemporalSelfAttention(embedding_dim, num_heads, radius=attention_radius)
        self.temporal_attn_video = TemporalSelfAttention(embedding_dim, num_heads, radius=attention_radius)
        self.cross_attn = CrossModalAttention(embedding_dim, num_heads, radius=attention_radius)

    def refine_radius(self) -> int | None:
        """Temporal attention then cross attention: 2 × attention_radius steps each side."""
        return None if self.attention_radius is None else 2 * self.attention_radius

    def refine(self, audio: torch.Tensor,
               video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cross_attn(self.temporal_attn_audio(audio), self.temporal_attn_video(video))
