"""Weighted similarity Procrustes (Umeyama), torch or numpy, batched, differentiable.

Finds scale s, proper rotation R (det +1) and translation t minimising

    sum_i w_i || s R src_i + t - dst_i ||^2

over the N points of each batch element. Closed form (Umeyama 1991): with weighted means mu_s, mu_d,
centred points and the weighted cross-covariance C = sum_i w_i (dst_i - mu_d)(src_i - mu_s)^T,
R = the rotation nearest to C (``roma.special_procrustes``, which flips the last singular vector
when needed so det R = +1), s = <R, C> / sum_i w_i |src_i - mu_s|^2, t = mu_d - s R mu_s.

Robustness
  * Points with zero weight are ignored entirely (their coordinates may even be NaN).
  * Negative weights are treated as zero.
  * All weights zero -> identity (s = 1, R = I, t = 0).
  * All weighted source points coincide (no spread) -> s = 1, R = I, t = mu_d - mu_s (pure translation).
  * Colinear / planar points give a valid (non-unique) rotation.
"""

from __future__ import annotations

import roma
import torch

from handcast.geometry._compat import as_float, matvec, numpy_io

# Source spread (weighted variance, in squared input units) below which the fit is a pure translation.
_VAR_EPS = 1e-14


@numpy_io
def similarity_procrustes(
    src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best similarity taking ``src`` onto ``dst``.

    Args:
        src: (..., N, 3) source points (any unit, any frame).
        dst: (..., N, 3) target points, same unit; batch dims broadcast with ``src``.
        weights: (..., N) non-negative per-point weights (e.g. a validity mask), or None for all ones.

    Returns:
        scale (...), R (..., 3, 3) with det +1, t (..., 3) such that ``scale * R @ src + t ~ dst``.
        numpy in -> numpy out.
    """
    if weights is None:
        src, dst = as_float(src, dst)
        w = torch.ones(src.shape[:-1], dtype=src.dtype, device=src.device)
    else:
        src, dst, w = as_float(src, dst, weights)
    batch = torch.broadcast_shapes(src.shape[:-2], dst.shape[:-2], w.shape[:-1])
    n = torch.broadcast_shapes(src.shape[-2:-1], dst.shape[-2:-1], w.shape[-1:])
    src = src.expand(*batch, *n, 3)
    dst = dst.expand(*batch, *n, 3)
    w = w.expand(*batch, *n).clamp_min(0.0)

    used = (w > 0).unsqueeze(-1)
    src = torch.where(used, src, torch.zeros_like(src))
    dst = torch.where(used, dst, torch.zeros_like(dst))
    wsum = w.sum(-1, keepdim=True)
    wn = w / torch.where(wsum > 0, wsum, torch.ones_like(wsum))  # (..., N), sums to 1 or 0

    mu_s = (wn.unsqueeze(-1) * src).sum(-2)  # (..., 3)
    mu_d = (wn.unsqueeze(-1) * dst).sum(-2)
    sc = src - mu_s.unsqueeze(-2)
    dc = dst - mu_d.unsqueeze(-2)
    var_s = (wn * (sc * sc).sum(-1)).sum(-1)  # (...)
    cov = torch.einsum("...n,...ni,...nj->...ij", wn, dc, sc)  # (..., 3, 3)

    degenerate = var_s <= _VAR_EPS
    eye = torch.eye(3, dtype=src.dtype, device=src.device).expand_as(cov)
    R = roma.special_procrustes(torch.where(degenerate[..., None, None], eye, cov))
    R = torch.where(degenerate[..., None, None], eye, R)
    var_safe = torch.where(degenerate, torch.ones_like(var_s), var_s)
    scale = torch.where(degenerate, torch.ones_like(var_s), (R * cov).sum((-2, -1)) / var_safe)
    t = mu_d - scale.unsqueeze(-1) * matvec(R, mu_s)
    return scale, R, t


@numpy_io
def apply_similarity(scale: torch.Tensor, R: torch.Tensor, t: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``scale * R @ p + t`` for points (..., N, 3) with scale (...), R (..., 3, 3), t (..., 3)."""
    scale, R, t, points = as_float(scale, R, t, points)
    return scale[..., None, None] * (points @ R.transpose(-1, -2)) + t.unsqueeze(-2)


@numpy_io
def procrustes_align(src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``src`` (..., N, 3) moved by the best similarity onto ``dst`` (..., N, 3); see :func:`similarity_procrustes`.

    Returns the aligned source with the broadcast batch shape (..., N, 3); numpy in -> numpy out.
    """
    scale, R, t = similarity_procrustes(src, dst, weights)
    src_b = as_float(src, dst)[0] if weights is None else as_float(src, dst, weights)[0]
    return apply_similarity(scale, R, t, src_b)


__all__ = ["similarity_procrustes", "apply_similarity", "procrustes_align"]
