"""Multi-hypothesis aggregation: S samples of a hand -> one estimate (issue 5, section 4).

Every function is torch, batched over leading dims, and also takes numpy arrays (numpy in -> numpy out).
Samples are ``(..., S, P, 3)``: S hypotheses of P points (21 joints or V vertices), metres, root-relative,
canonical camera frame.

* :func:`pose_mean`       pose-level mean: the average hypothesis.
* :func:`joint_median`    joint-level median: per point, the geometric median of its S positions
                          (Weiszfeld iterations), robust to a minority of outlying hypotheses.
* :func:`reprojection_errors` / :func:`reprojection_weights` / :func:`weighted_mean`: weighting by
                          consistency with the 2D keypoints: each hypothesis gets the root translation that
                          best explains the keypoints (:func:`fit_root`), its per-joint pixel error e, and
                          softmax(-e / tau) weights over the hypotheses (per joint for joints, per hypothesis
                          from the mean error for meshes).
* :func:`best_of_n`       the oracle: index of the hypothesis closest to the ground truth (reported
                          separately, never a deployable estimate).
"""

from __future__ import annotations

import torch

from handcast.errors import HandcastError
from handcast.geometry._compat import as_float, numpy_io
from handcast.geometry.procrustes import procrustes_align

AGGREGATIONS: tuple[str, ...] = ("single", "mean", "median", "reproj")
"""Names of the deployable aggregations (``single`` = the first hypothesis, no aggregation)."""


def _check_samples(x: torch.Tensor, name: str = "samples") -> None:
    if x.ndim < 3 or x.shape[-1] != 3:
        raise HandcastError(f"{name} must have shape (..., S, P, 3), got {tuple(x.shape)}")
    if x.shape[-3] < 1:
        raise HandcastError(f"{name} has no hypotheses (S = 0)")


@numpy_io
def pose_mean(samples: torch.Tensor) -> torch.Tensor:
    """(..., S, P, 3) -> (..., P, 3): the mean over hypotheses."""
    (x,) = as_float(samples)
    _check_samples(x)
    return x.mean(-3)


@numpy_io
def joint_median(samples: torch.Tensor, iterations: int = 10, eps: float = 1e-9) -> torch.Tensor:
    """(..., S, P, 3) -> (..., P, 3): per point, the geometric median of its S positions.

    Weiszfeld's algorithm started from the coordinate-wise median (``iterations`` steps); with S <= 2 it is
    the mean (any point on the segment is a median). The result minimises sum_s |p - x_s| for each point."""
    (x,) = as_float(samples)
    _check_samples(x)
    if x.shape[-3] <= 2:
        return x.mean(-3)
    p = x.median(dim=-3).values
    for _ in range(int(iterations)):
        diff = x - p.unsqueeze(-3)
        d = torch.sqrt(diff[..., 0] ** 2 + diff[..., 1] ** 2 + diff[..., 2] ** 2).clamp_min_(eps)  # (..., S, P)
        w = d.reciprocal_().unsqueeze(-1)
        p = (w * x).sum(-3) / w.sum(-3)
    return p


@numpy_io
def fit_root(joints: torch.Tensor, kp2d: torch.Tensor, conf: torch.Tensor, K: torch.Tensor,
             min_depth: float = 0.05) -> torch.Tensor:
    """Translation t (..., 3) putting root-relative joints (..., 21, 3) where they explain the 2D keypoints.

    Minimises sum_j conf_j |(X_j + t) - z_j' ray_j|^2 in the algebraic (linear) form: with the keypoint's
    normalised ray (x_j, y_j) = K^-1 (u, v, 1), each joint gives (X + t_x) - x_j (Z + t_z) = 0 and
    (Y + t_y) - y_j (Z + t_z) = 0. kp2d (..., 21, 2) pixels of the camera K (..., 3, 3); conf (..., 21)
    weights (0 = ignored). Exact for noise-free keypoints. The depth is kept >= ``min_depth`` m; with fewer
    than 2 usable keypoints the root is put at ``min_depth`` straight ahead."""
    joints, kp2d, conf, K = as_float(joints, kp2d, conf, K)
    Kinv = torch.linalg.inv(K)
    ones = torch.ones_like(kp2d[..., :1])
    ray = (Kinv.unsqueeze(-3) @ torch.cat([kp2d, ones], -1).unsqueeze(-1)).squeeze(-1)  # (..., 21, 3)
    x, y = ray[..., 0], ray[..., 1]
    X, Y, Z = joints[..., 0], joints[..., 1], joints[..., 2]
    w = conf.clamp_min(0.0)
    w = torch.where(torch.isfinite(x) & torch.isfinite(y), w, torch.zeros_like(w))
    x, y = torch.nan_to_num(x), torch.nan_to_num(y)
    zero, one = torch.zeros_like(x), torch.ones_like(x)
    # rows a . t = b for the u and v equations
    A = torch.stack([torch.stack([one, zero, -x], -1), torch.stack([zero, one, -y], -1)], -2)  # (..., 21, 2, 3)
    b = torch.stack([x * Z - X, y * Z - Y], -1)  # (..., 21, 2)
    Aw = A * w[..., None, None]
    M = torch.einsum("...jri,...jrk->...ik", Aw, A)
    r = torch.einsum("...jri,...jr->...i", Aw, b)
    eye = torch.eye(3, dtype=M.dtype, device=M.device)
    ok = (w > 0).sum(-1) >= 2
    M = torch.where(ok[..., None, None], M, eye.expand_as(M)) + 1e-9 * eye
    t = torch.linalg.solve(M, r.unsqueeze(-1)).squeeze(-1)
    fallback = torch.zeros_like(t)
    fallback[..., 2] = min_depth
    t = torch.where(ok[..., None], t, fallback)
    return torch.cat([t[..., :2], t[..., 2:].clamp_min(min_depth)], -1)


@numpy_io
def reprojection_errors(samples: torch.Tensor, kp2d: torch.Tensor, conf: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Per-joint pixel errors (..., S, 21) of each joint hypothesis (..., S, 21, 3) placed at its own best
    root (:func:`fit_root`) against the keypoints kp2d (..., 21, 2) with conf (..., 21) and camera K (..., 3, 3).
    Keypoints with conf 0 get error 0."""
    samples, kp2d, conf, K = as_float(samples, kp2d, conf, K)
    _check_samples(samples)
    kp = kp2d.unsqueeze(-3)
    c = conf.unsqueeze(-2).expand(samples.shape[:-1])
    Ks = K.unsqueeze(-3)
    t = fit_root(samples, kp.expand(samples.shape[:-1] + (2,)), c, Ks.expand(samples.shape[:-2] + (3, 3)))
    P = samples + t.unsqueeze(-2)
    uvw = (Ks.unsqueeze(-3) @ P.unsqueeze(-1)).squeeze(-1)
    uv = uvw[..., :2] / uvw[..., 2:].clamp_min(1e-6)
    err = (uv - kp).norm(dim=-1)
    return torch.where(c > 0, err, torch.zeros_like(err))


@numpy_io
def reprojection_weights(errors: torch.Tensor, tau: float, per_joint: bool = True) -> torch.Tensor:
    """Softmax(-error / tau) over the hypotheses. errors (..., S, J) pixels -> weights (..., S, J) if
    ``per_joint``, else (..., S) from the mean error over joints. Each set of weights sums to 1."""
    (e,) = as_float(errors)
    if tau <= 0:
        raise HandcastError(f"tau must be positive, got {tau}")
    if not per_joint:
        e = e.mean(-1)
        return torch.softmax(-e / tau, dim=-1)
    return torch.softmax(-e / tau, dim=-2)


@numpy_io
def weighted_mean(samples: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_s w_s x_s: samples (..., S, P, 3) with weights (..., S) (one per hypothesis) or (..., S, P)
    (one per hypothesis and point) -> (..., P, 3). Weights are renormalised to sum to 1 over S."""
    x, w = as_float(samples, weights)
    _check_samples(x)
    if w.shape == x.shape[:-2]:
        w = w.unsqueeze(-1).expand(x.shape[:-1])
    if w.shape != x.shape[:-1]:
        raise HandcastError(f"weights of shape {tuple(w.shape)} do not match samples {tuple(x.shape)}")
    w = w / w.sum(-2, keepdim=True).clamp_min(1e-12)
    return (w.unsqueeze(-1) * x).sum(-3)


@numpy_io
def best_of_n(samples: torch.Tensor, gt: torch.Tensor, procrustes: bool = True) -> torch.Tensor:
    """ORACLE: index (...) of the hypothesis (..., S, P, 3) with the lowest mean point error to ``gt``
    (..., P, 3), after a similarity Procrustes per hypothesis if ``procrustes`` (the PA metrics' sense)."""
    x, g = as_float(samples, gt)
    _check_samples(x)
    g = g.unsqueeze(-3).expand_as(x)
    if procrustes:
        x = procrustes_align(x, g)
    return (x - g).norm(dim=-1).mean(-1).argmin(-1)


@numpy_io
def select(samples: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """samples (..., S, P, 3), index (...) -> (..., P, 3) the chosen hypothesis."""
    x, = as_float(samples)
    idx = torch.as_tensor(index, device=x.device).long()
    idx = idx[..., None, None, None].expand(x.shape[:-3] + (1,) + x.shape[-2:])
    return x.gather(-3, idx).squeeze(-3)


def aggregate(joint_samples: torch.Tensor, vertex_samples: torch.Tensor | None, method: str,
              kp2d: torch.Tensor | None = None, conf: torch.Tensor | None = None, K: torch.Tensor | None = None,
              tau: float = 4.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One estimate from hypotheses with ``method`` in :data:`AGGREGATIONS`.

    joint_samples (B, S, 21, 3), vertex_samples (B, S, V, 3) or None (torch); for "reproj" also kp2d
    (B, 21, 2) pixels, conf (B, 21), K (B, 3, 3) of the crop and ``tau`` in pixels.
    Returns (joints (B, 21, 3), vertices (B, V, 3) or None). In "reproj" the joints use per-joint weights and
    the mesh one weight per hypothesis (from its mean joint error)."""
    if method not in AGGREGATIONS:
        raise HandcastError(f"unknown aggregation {method!r}; choose from {', '.join(AGGREGATIONS)}")
    v = vertex_samples
    if method == "single":
        return joint_samples[:, 0], (None if v is None else v[:, 0])
    if method == "mean":
        return pose_mean(joint_samples), (None if v is None else pose_mean(v))
    if method == "median":
        return joint_median(joint_samples), (None if v is None else joint_median(v))
    if kp2d is None or conf is None or K is None:
        raise HandcastError("the 'reproj' aggregation needs the 2D keypoints, their confidence and the crop camera")
    err = reprojection_errors(joint_samples, kp2d, conf, K)
    j = weighted_mean(joint_samples, reprojection_weights(err, tau, per_joint=True))
    mv = None if v is None else weighted_mean(v, reprojection_weights(err, tau, per_joint=False))
    return j, mv
