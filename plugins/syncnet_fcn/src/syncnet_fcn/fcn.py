"""SyncNetFCN: the original SyncNet trunks run fully-convolutionally over a whole clip.

Shapes (B = batch, T = video frames at 25 fps, T' = T − 4, E = embedding_dim, K = max_offset):

- ``audio_mfcc``   [B, 1, 13, 4T]  MFCC at 100 Hz, 4 columns per video frame
- ``video_frames`` [B, 3, T, 224, 224]
- audio trunk  [B, 1, 13, 4T] → [B, 512, 1, T'];  video trunk → [B, 512, T', 1, 1]
- encoders (trunk, ``channel_conv``, ``channel_attn``) → [B, E, T'] each
- ``correlation`` → [B, 2K+1, T'];  ``sync_predictor`` and ``temporal_smoother`` keep it
- ``forward`` → (sync_probs [B, 2K+1, T'], audio_features [B, E, T'], video_features [B, E, T'])

Alignment. Feature step t is the 5-frame window of frames t..t+4, which pairs with MFCC
columns 4t..4t+19. The video trunk has no temporal padding, so its step t *is* the original
``netcnnlip`` on that window (exact up to float rounding). The audio trunk needs no
resampling: over 4T columns its time axis goes 4T → 2T−1 (MaxPool 3, stride 2) → T−1
(MaxPool 3, stride 2) → T−4 (Conv kernel 4), and output step t reads pooled columns t..t+3,
the same pooled columns ``netcnnaud`` reads on the window starting at column 4t. The two
differ only where the window's zero padding replaces real neighbouring columns: through the
padded 3×3 convs, step t sees columns 4t−8..4t+26, the window only 4t..4t+19.

Measured cosine similarity between whole-clip step t and ``netcnnaud`` on the window at
column 4t (random Gaussian MFCC, T = 9..25): mean ≈ 0.78, min ≈ 0.64 on a
``make_syncnet_checkpoint`` model (BatchNorm with measured running stats centres the
activations, so the edges weigh more); mean ≈ 0.93 when the MFCC is smoothed over 5 columns
(real MFCC are smooth in time); ≈ 0.986 with PyTorch's default init. DESIGN.md's "≈ 0.999"
is not reproduced. The alignment itself is exact: shifting the windows by 1..4 columns either
way lowers the similarity, and each whole-clip step is most similar to its own window
(tests/syncnet_fcn/test_activations.py). For bit-exact per-window audio features instead,
run ``conv_layers`` on the windows ``audio_mfcc.unfold(3, 20, 4)`` (5× the audio compute).

Offsets. Offset index k ∈ 0..2K stands for the offset o = k − K frames: video step t is
compared with audio step t − o (zero where t − o falls outside the clip), the same sign as
the AV offset syncnet_python reports.

Bounded receptive field. Every layer looks at a bounded stretch of time, so an output step
never depends on the far future of a stream and :class:`~syncnet_fcn.stream.StreamSync` can
compute the same numbers chunk by chunk with constant memory. That is why ``channel_attn``
squeezes over a local window of ``squeeze_radius`` steps each side (a mean over the whole clip
would make step 0 wait for the end of the stream); on clips of at most ``squeeze_radius + 1``
steps the window covers the whole clip and it is the classic global squeeze. Set
``squeeze_radius=None`` for the global one (such a model cannot stream).

Fixed calls. In eval mode the video trunk and every per-step layer (``channel_conv``, the
channel gate) run on fixed chunks of ``STEPS_PER_CALL`` steps, counted from step 0. oneDNN
picks its kernels by problem size, and kernels sum in different orders (≈1e-5 apart), so
the same step computed inside a call of another length could differ in its last bits; with
fixed calls a step's video features are bit-for-bit the same in a whole clip and in a
stream, and a long clip never holds more than one chunk's first-conv output (≈ 36 MB
instead of ≈ 7 GB for 60 s). Training mode runs whole sequences, so BatchNorm sees the
statistics of the whole batch.

Audio modes. ``audio_mode="clip"`` (default) runs the audio trunk once over the clip;
``audio_mode="window"`` runs it on every 20-column window separately (``unfold``), which
reproduces ``netcnnaud`` on each window exactly, at 5× the audio compute.
"""
from __future__ import annotations

import torch
from torch import nn

from .models import (AUDIO_WINDOW, FRAME_SIZE, MFCC_BINS, MFCC_PER_FRAME, VIDEO_WINDOW, audio_trunk,
                     video_trunk)

TRUNK_CHANNELS = 512
DEFAULT_SQUEEZE_RADIUS = 8  # steps each side: 17 steps ≈ 0.7 s of context for the channel gate
AUDIO_MODES = ("clip", "window")
STEPS_PER_CALL = 8  # see "Fixed calls" above
PREDICTOR_REACH = 4  # steps each side the head reads: two 3-tap convs and the 5-tap smoother
WINDOWS_PER_CALL = 64  # audio_mode="window" in eval mode: ≈ 20 MB of activations per call


def in_fixed_calls(fn, x: torch.Tensor, training: bool) -> torch.Tensor:
    """``fn`` (per step: no mixing across time) on [B, C, T'], in calls of ``STEPS_PER_CALL``
    steps from step 0 unless ``training`` (then one call, for the batch statistics)."""
    if training or x.shape[2] <= STEPS_PER_CALL:
        return fn(x)
    return torch.cat([fn(x[:, :, i:i + STEPS_PER_CALL]) for i in range(0, x.shape[2], STEPS_PER_CALL)],
                     dim=2)


def channel_conv(embedding_dim: int) -> nn.Sequential:
    """1×1 convs in the places of the FC head: index 0/1/3 ↔ ``netfc*.0/1/3``.

    [B, 512, T'] → [B, embedding_dim, T']. (A Linear weight [out, in] is this Conv1d
    weight [out, in, 1] without its last axis; the to-fcn rule set skips them anyway.)
    """
    return nn.Sequential(
        nn.Conv1d(TRUNK_CHANNELS, TRUNK_CHANNELS, kernel_size=1),
        nn.BatchNorm1d(TRUNK_CHANNELS),
        nn.ReLU(inplace=True),
        nn.Conv1d(TRUNK_CHANNELS, embedding_dim, kernel_size=1),
    )


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation over channels: [B, C, T'] → [B, C, T'], gated per channel.

    The squeeze at step t averages steps t − radius … t + radius that exist (a local mean;
    see the module docstring); ``radius=None`` averages the whole clip.
    """

    def __init__(self, channels: int, reduction: int = 16,
                 radius: int | None = DEFAULT_SQUEEZE_RADIUS):
        super().__init__()
        if radius is not None and radius < 0:
            raise ValueError(f"ChannelAttention: radius must be ≥ 0 or None, got {radius}")
        self.radius = radius
        hidden = max(channels // reduction, 1)
        self.gate = nn.Sequential(
            nn.Conv1d(channels, hidden, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv1d(hidden, channels, kernel_size=1),
            nn.Sigmoid(),
        )

    def squeeze(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T'] → per-step channel means [B, C, T'] (or [B, C, 1] when global)."""
        if self.radius is None:
            return x.mean(dim=2, keepdim=True)
        # count_include_pad=False: near the clip's ends the mean is over the steps that exist
        return nn.functional.avg_pool1d(x, 2 * self.radius + 1, stride=1, padding=self.radius,
                                        count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * in_fixed_calls(self.gate, self.squeeze(x), self.training)


class AudioEncoder(nn.Module):
    """MFCC [B, 1, 13, 4T] → audio features [B, E, T − 4] (see the module docstring).

    ``per_window=True`` is the exact per-window mode (``audio_mode="window"``).
    """

    def __init__(self, embedding_dim: int = 512, squeeze_radius: int | None = DEFAULT_SQUEEZE_RADIUS,
                 per_window: bool = False):
        super().__init__()
        self.per_window = per_window
        self.conv_layers = audio_trunk()
        self.channel_conv = channel_conv(embedding_dim)
        self.channel_attn = ChannelAttention(embedding_dim, radius=squeeze_radius)

    def trunk(self, audio_mfcc: torch.Tensor) -> torch.Tensor:
        """[B, 1, 13, 4T] → trunk features [B, 512, T − 4]."""
        if audio_mfcc.dim() != 4 or audio_mfcc.shape[1:3] != (1, MFCC_BINS):
            raise ValueError(f"audio_mfcc: expected [B, 1, {MFCC_BINS}, 4T], got "
                             f"{list(audio_mfcc.shape)}; add the channel axis with unsqueeze(1)")
        if not self.per_window:
            return self.conv_layers(audio_mfcc).squeeze(2)
        # [B, 1, 13, n, 20]: window t = columns 4t … 4t+19, each run alone as the original does
        windows = audio_mfcc.unfold(3, AUDIO_WINDOW, MFCC_PER_FRAME)
        batch, steps = windows.shape[0], windows.shape[3]
        flat = windows.permute(0, 3, 1, 2, 4).reshape(batch * steps, 1, MFCC_BINS, AUDIO_WINDOW)
        if self.training or len(flat) <= WINDOWS_PER_CALL:
            out = self.conv_layers(flat)
        else:  # bounded memory on long clips: all windows at once would grow with the clip
            out = torch.cat([self.conv_layers(flat[i:i + WINDOWS_PER_CALL])
                             for i in range(0, len(flat), WINDOWS_PER_CALL)])
        return out.reshape(batch, steps, -1).transpose(1, 2)

    def tail(self, features: torch.Tensor) -> torch.Tensor:
        """Trunk features [B, 512, T'] → audio features [B, E, T']."""
        return self.channel_attn(in_fixed_calls(self.channel_conv, features, self.training))

    def forward(self, audio_mfcc: torch.Tensor) -> torch.Tensor:
        return self.tail(self.trunk(audio_mfcc))


class VideoEncoder(nn.Module):
    """Frames [B, 3, T, 224, 224] → video features [B, E, T − 4]."""

    def __init__(self, embedding_dim: int = 512, squeeze_radius: int | None = DEFAULT_SQUEEZE_RADIUS):
        super().__init__()
        self.conv_layers = video_trunk()
        self.channel_conv = channel_conv(embedding_dim)
        self.channel_attn = ChannelAttention(embedding_dim, radius=squeeze_radius)

    def trunk(self, video_frames: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, 224, 224] → trunk features [B, 512, T − 4]."""
        if (video_frames.dim() != 5 or video_frames.shape[1] != 3
                or video_frames.shape[2] < VIDEO_WINDOW
                or video_frames.shape[3:] != (FRAME_SIZE, FRAME_SIZE)):
            raise ValueError(f"video_frames: expected [B, 3, T ≥ {VIDEO_WINDOW}, {FRAME_SIZE}, "
                             f"{FRAME_SIZE}] (the trunk's last conv needs {FRAME_SIZE}×"
                             f"{FRAME_SIZE} frames), got {list(video_frames.shape)}")
        steps = video_frames.shape[2] - (VIDEO_WINDOW - 1)
        if self.training or steps <= STEPS_PER_CALL:
            return self.conv_layers(video_frames).flatten(2)
        # no temporal padding: the 4 frames each chunk shares with the next give the same steps
        return torch.cat([self.conv_layers(video_frames[:, :, i:i + STEPS_PER_CALL + VIDEO_WINDOW - 1])
                          .flatten(2) for i in range(0, steps, STEPS_PER_CALL)], dim=2)

    def tail(self, features: torch.Tensor) -> torch.Tensor:
        """Trunk features [B, 512, T'] → video features [B, E, T']."""
        return self.channel_attn(in_fixed_calls(self.channel_conv, features, self.training))

    def forward(self, video_frames: torch.Tensor) -> torch.Tensor:
        return self.tail(self.trunk(video_frames))


class OffsetCorrelation(nn.Module):
    """Cosine similarity of video vs audio at offsets −K…K (no parameters).

    video, audio [B, E, T'] → [B, 2K+1, T'] where out[:, k, t] = cos(video[:, :, t],
    audio[:, :, t − (k − K)]), and 0 where t − (k − K) lies outside 0..T'−1.
    """

    def __init__(self, max_offset: int):
        super().__init__()
        self.max_offset = max_offset

    def valid_mask(self, steps: int, device: torch.device | None = None) -> torch.Tensor:
        """Bool [2K+1, steps]: True where the compared audio step exists."""
        offsets = torch.arange(-self.max_offset, self.max_offset + 1, device=device)
        source = torch.arange(steps, device=device)[None, :] - offsets[:, None]
        return (source >= 0) & (source < steps)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        k, steps = self.max_offset, video.shape[2]
        video = nn.functional.normalize(video, dim=1)
        # K zeros each side: normalised zeros give cosine 0 for out-of-range steps.
        audio = nn.functional.pad(nn.functional.normalize(audio, dim=1), (k, k))
        # audio step t − o sits at padded index t + (K − o) = t + (2K − index).
        return torch.stack([(video * audio[:, :, 2 * k - i: 2 * k - i + steps]).sum(dim=1)
                            for i in range(2 * k + 1)], dim=1)


def sync_predictor(num_offsets: int, hidden: int = 128) -> nn.Sequential:
    """Per-step logits from the correlation: [B, 2K+1, T'] → [B, 2K+1, T']."""
    return nn.Sequential(
        nn.Conv1d(num_offsets, hidden, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv1d(hidden, hidden, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv1d(hidden, num_offsets, kernel_size=1),
    )


def temporal_smoother(num_offsets: int, kernel_size: int = 5) -> nn.Conv1d:
    """Depthwise Conv1d over time on the logits, [B, 2K+1, T'] → same shape.

    Starts as the identity (centre tap 1) so an untrained smoother does not blur offsets.
    """
    conv = nn.Conv1d(num_offsets, num_offsets, kernel_size, padding=kernel_size // 2,
                     groups=num_offsets)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, 0, kernel_size // 2] = 1.0
        conv.bias.zero_()
    return conv


class SyncNetFCN(nn.Module):
    """Fully-convolutional SyncNet: per-frame offset probabilities for a whole clip.

    ``forward(audio_mfcc [B, 1, 13, 4T], video_frames [B, 3, T, 224, 224])`` →
    ``(sync_probs [B, 2K+1, T−4], audio_features [B, E, T−4], video_features [B, E, T−4])``.
    ``sync_probs`` is a softmax over offsets −K…K (index k ↔ offset k − K frames); offsets
    whose audio step lies outside the clip get probability 0. The features are the ones the
    correlation compared. Audio longer than 4T columns is cut to 4T; shorter is an error.

    The forward pass is ``from_trunks(*trunks(...))``: callers that already hold trunk
    features (a frozen trunk's cache, a stream) enter at ``from_trunks``.
    """

    def __init__(self, embedding_dim: int = 512, max_offset: int = 15,
                 squeeze_radius: int | None = DEFAULT_SQUEEZE_RADIUS, audio_mode: str = "clip"):
        super().__init__()
        if embedding_dim < 1 or max_offset < 0:
            raise ValueError(f"SyncNetFCN: embedding_dim must be ≥ 1 and max_offset ≥ 0, "
                             f"got {embedding_dim} and {max_offset}")
        if audio_mode not in AUDIO_MODES:
            raise ValueError(f"SyncNetFCN: audio_mode {audio_mode!r} is not one of {list(AUDIO_MODES)}")
        self.embedding_dim = embedding_dim
        self.max_offset = max_offset
        num_offsets = 2 * max_offset + 1
        self.audio_encoder = AudioEncoder(embedding_dim, squeeze_radius, per_window=audio_mode == "window")
        self.video_encoder = VideoEncoder(embedding_dim, squeeze_radius)
        self.correlation = OffsetCorrelation(max_offset)
        self.sync_predictor = sync_predictor(num_offsets)
        self.temporal_smoother = temporal_smoother(num_offsets)

    @property
    def audio_mode(self) -> str:
        return "window" if self.audio_encoder.per_window else "clip"

    @property
    def squeeze_radius(self) -> int | None:
        return self.audio_encoder.channel_attn.radius

    def refine_radius(self) -> int | None:
        """How many steps each side ``refine`` reads (None: the whole clip); 0 here."""
        return 0

    def trunks(self, audio_mfcc: torch.Tensor,
               video_frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Aligned trunk features (audio [B, 512, T−4], video [B, 512, T−4]); checks the inputs."""
        video = self.video_encoder.trunk(video_frames)  # first: it validates T
        columns = MFCC_PER_FRAME * video_frames.shape[2]
        if audio_mfcc.dim() != 4 or audio_mfcc.shape[3] < columns:
            raise ValueError(f"audio_mfcc: expected [B, 1, {MFCC_BINS}, ≥{columns}] for "
                             f"{video_frames.shape[2]} video frames (4 MFCC columns per frame), "
                             f"got {list(audio_mfcc.shape)}")
        return self.audio_encoder.trunk(audio_mfcc[..., :columns]), video

    def encode(self, audio_mfcc: torch.Tensor,
               video_frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Aligned (audio [B, E, T−4], video [B, E, T−4]) before any cross-step mixing."""
        audio, video = self.trunks(audio_mfcc, video_frames)
        return self.audio_encoder.tail(audio), self.video_encoder.tail(video)

    def refine(self, audio: torch.Tensor,
               video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hook for subclasses to mix features before the correlation; identity here."""
        return audio, video

    def head_logits(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """Refined features → per-step logits [B, 2K+1, T'], out-of-range offsets at the
        dtype's minimum (so a softmax gives them 0 and cross-entropy ignores them)."""
        logits = self.temporal_smoother(self.sync_predictor(self.correlation(video, audio)))
        valid = self.correlation.valid_mask(logits.shape[2], device=logits.device)
        return logits.masked_fill(~valid, torch.finfo(logits.dtype).min)

    def from_trunks(self, audio_trunk: torch.Tensor, video_trunk: torch.Tensor, *,
                    logits: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Trunk features (audio, video [B, 512, T']) → ``forward``'s outputs; with
        ``logits=True`` the first one is ``head_logits`` instead of the probabilities."""
        audio, video = self.refine(self.audio_encoder.tail(audio_trunk),
                                   self.video_encoder.tail(video_trunk))
        scores = self.head_logits(audio, video)
        return (scores if logits else torch.softmax(scores, dim=1)), audio, video

    def forward(self, audio_mfcc: torch.Tensor,
                video_frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.from_trunks(*self.trunks(audio_mfcc, video_frames))
