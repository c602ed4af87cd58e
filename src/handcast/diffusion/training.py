"""Training-side pieces: noising, the masked x0 loss and condition dropout."""

from __future__ import annotations

import torch


def noisy_input(scheduler, x0: torch.Tensor, generator: torch.Generator | None = None):
    """Draw t ~ U{0..N-1} per batch item and noise ``x0`` (B, ...) to x_t. Returns (x_t, t, noise)."""
    b = x0.shape[0]
    n = scheduler.config.num_train_timesteps
    t = torch.randint(0, n, (b,), device=x0.device, generator=generator)
    noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    return scheduler.add_noise(x0, noise, t), t, noise


def diffusion_loss(pred_x0: torch.Tensor, x0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean squared error between predicted and true x0.

    pred_x0, x0: (B, T, D); mask: (B, T) or (B, T, D) bool/float, 1 where the target is supervised.
    The mean is over supervised entries only (0 if nothing is supervised).
    """
    mask = mask.to(pred_x0.dtype)
    if mask.dim() == pred_x0.dim() - 1:
        mask = mask.unsqueeze(-1).expand_as(pred_x0)
    err = (pred_x0 - x0) ** 2 * mask
    return err.sum() / mask.sum().clamp_min(1.0)


def condition_dropout(
    tokens: torch.Tensor,
    p_token: float = 0.1,
    p_all: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Zero condition tokens at random during training.

    tokens: (B, N, C). Each token is zeroed independently with probability ``p_token`` (the reference
    code's per-token dropout); with probability ``p_all`` a batch item loses all its condition tokens
    (whole-condition dropout, which trains the unconditional model used by classifier-free guidance).
    """
    if p_token <= 0 and p_all <= 0:
        return tokens
    b, n = tokens.shape[:2]
    keep = torch.ones(b, n, device=tokens.device, dtype=tokens.dtype)
    if p_token > 0:
        keep = keep * (torch.rand(b, n, device=tokens.device, generator=generator) >= p_token).to(tokens.dtype)
    if p_all > 0:
        whole = (torch.rand(b, 1, device=tokens.device, generator=generator) >= p_all).to(tokens.dtype)
        keep = keep * whole
    return tokens * keep.unsqueeze(-1)
