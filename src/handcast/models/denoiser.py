"""MDM-style transformer denoiser for motion: [timestep token, condition tokens, motion tokens].

The sequence fed to a post-norm transformer encoder is the timestep token, then any number of condition
token blocks (each modality through its own :class:`TokenMLP`), then one token per frame of the noisy
motion; sinusoidal positions run over the whole sequence. Only the motion outputs are read, projected
back to the motion dimension as the x0 prediction.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class DenoiserConfig:
    """Architecture of :class:`MotionDenoiser`. ``paper()`` gives the published size."""

    motion_dim: int = 198
    width: int = 1024
    layers: int = 16
    heads: int = 4
    ff_width: int = 1024
    dropout: float = 0.1

    @classmethod
    def paper(cls) -> "DenoiserConfig":
        return cls()

    @classmethod
    def tiny(cls) -> "DenoiserConfig":
        return cls(width=128, layers=4, heads=4, ff_width=256, dropout=0.1)

    def to_dict(self) -> dict:
        return asdict(self)


def sinusoidal(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (any shape) positions -> (..., dim), as in Vaswani et al."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    args = positions.to(torch.float32).unsqueeze(-1) * freqs
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[..., :1])], dim=-1)
    return emb


class TokenMLP(nn.Module):
    """A 3-layer MLP turning one condition modality (..., in_dim) into tokens (..., width)."""

    def __init__(self, in_dim: int, width: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, width), nn.GELU(), nn.Linear(width, width), nn.GELU(), nn.Linear(width, width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MotionDenoiser(nn.Module):
    """Predicts clean motion x0 (B, T, D) from noisy motion, the diffusion step and condition tokens."""

    def __init__(self, config: DenoiserConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.input = nn.Linear(config.motion_dim, w)
        self.time_mlp = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        layer = nn.TransformerEncoderLayer(
            d_model=w, nhead=config.heads, dim_feedforward=config.ff_width, dropout=config.dropout,
            activation="gelu", batch_first=True, norm_first=False,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=config.layers, enable_nested_tensor=False)
        self.output = nn.Linear(w, config.motion_dim)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor | None = None,
        cond_mask: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
        frame_cond: torch.Tensor | None = None,
        return_hidden: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x_t (B, T, D) noisy motion; t (B,) diffusion steps; cond (B, N, width) condition tokens or None;
        cond_mask (B, N) bool, True = token present; frame_mask (B, T) bool, True = real (not padded) frame;
        frame_cond (B, T, width) or None: per-frame condition ADDED to the motion tokens (no extra tokens).
        Returns the x0 prediction (B, T, D) (and, with ``return_hidden``, the motion tokens' last hidden
        states (B, T, width) for auxiliary heads). Padded frames and absent tokens are never attended to."""
        b, n_frames, _ = x_t.shape
        w = self.config.width
        time_tok = self.time_mlp(sinusoidal(t, w)).unsqueeze(1)
        parts = [time_tok]
        masks = [torch.ones(b, 1, dtype=torch.bool, device=x_t.device)]
        if cond is not None and cond.shape[1] > 0:
            parts.append(cond)
            masks.append(cond_mask if cond_mask is not None
                         else torch.ones(cond.shape[:2], dtype=torch.bool, device=x_t.device))
        motion = self.input(x_t)
        if frame_cond is not None:
            motion = motion + frame_cond
        parts.append(motion)
        masks.append(frame_mask if frame_mask is not None
                     else torch.ones(b, n_frames, dtype=torch.bool, device=x_t.device))
        seq = torch.cat(parts, dim=1)
        pos = sinusoidal(torch.arange(seq.shape[1], device=seq.device), w)
        seq = seq + pos.to(seq.dtype)
        keep = torch.cat(masks, dim=1)
        hidden = self.encoder(seq, src_key_padding_mask=~keep)[:, -n_frames:]
        out = self.output(hidden)
        return (out, hidden) if return_hidden else out
