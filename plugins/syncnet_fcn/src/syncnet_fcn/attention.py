"""SyncNetFCN_WithAttention: SyncNetFCN plus temporal and cross-modal attention.

Between the encoders and the correlation, each modality attends over its own time axis
(``temporal_attn_audio``, ``temporal_attn_video``), then each attends to the other
(``cross_attn``). Every block is residual with a LayerNorm and keeps [B, E, T'], so all
shapes are those of :mod:`syncnet_fcn.fcn`. The conv trunks are unchanged, so the same
rule set loads the original SyncNet weights into this model.
"""
from __future__ import annotations

import torch
from torch import nn

from .fcn import SyncNetFCN


def _check_heads(embedding_dim: int, num_heads: int) -> None:
    if num_heads < 1 or embedding_dim % num_heads:
        raise ValueError(f"attention: embedding_dim {embedding_dim} must be a multiple of "
                         f"num_heads {num_heads}; pick num_heads dividing it")


class TemporalSelfAttention(nn.Module):
    """Self-attention over time within one modality: [B, E, T'] → [B, E, T']."""

    def __init__(self, embedding_dim: int, num_heads: int = 8, dropout: float = 0.0):
        super().__init__()
        _check_heads(embedding_dim, num_heads)
        self.attn = nn.MultiheadAttention(embedding_dim, num_heads, dropout=dropout,
                                          batch_first=True)
        self.norm = nn.LayerNorm(embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.transpose(1, 2)  # [B, T', E]: MultiheadAttention wants time before channels
        mixed, _ = self.attn(seq, seq, seq, need_weights=False)
        return self.norm(seq + mixed).transpose(1, 2)


class CrossModalAttention(nn.Module):
    """Audio attends to video and video to audio: two [B, E, T'] → two [B, E, T'].

    Both directions read the *input* features of the other modality, so the result does
    not depend on which direction is computed first.
    """

    def __init__(self, embedding_dim: int, num_heads: int = 8, dropout: float = 0.0):
        super().__init__()
        _check_heads(embedding_dim, num_heads)
        self.audio_from_video = nn.MultiheadAttention(embedding_dim, num_heads,
                                                      dropout=dropout, batch_first=True)
        self.video_from_audio = nn.MultiheadAttention(embedding_dim, num_heads,
                                                      dropout=dropout, batch_first=True)
        self.audio_norm = nn.LayerNorm(embedding_dim)
        self.video_norm = nn.LayerNorm(embedding_dim)

    def forward(self, audio: torch.Tensor,
                video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, v = audio.transpose(1, 2), video.transpose(1, 2)  # [B, T', E]
        a_mixed, _ = self.audio_from_video(a, v, v, need_weights=False)
        v_mixed, _ = self.video_from_audio(v, a, a, need_weights=False)
        return (self.audio_norm(a + a_mixed).transpose(1, 2),
                self.video_norm(v + v_mixed).transpose(1, 2))


class SyncNetFCN_WithAttention(SyncNetFCN):
    """SyncNetFCN with temporal self-attention per modality and cross-modal attention.

    Same constructor defaults, inputs and outputs as :class:`SyncNetFCN`; ``num_heads``
    must divide ``embedding_dim``. The returned features are the attended ones.
    """

    def __init__(self, embedding_dim: int = 512, max_offset: int = 15, num_heads: int = 8):
        super().__init__(embedding_dim=embedding_dim, max_offset=max_offset)
        self.temporal_attn_audio = TemporalSelfAttention(embedding_dim, num_heads)
        self.temporal_attn_video = TemporalSelfAttention(embedding_dim, num_heads)
        self.cross_attn = CrossModalAttention(embedding_dim, num_heads)

    def refine(self, audio: torch.Tensor,
               video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cross_attn(self.temporal_attn_audio(audio), self.temporal_attn_video(video))
