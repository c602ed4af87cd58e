"""Closed-form placement of hands on their 2D keypoints: a per-(frame, hand) translation, rotations kept.

For each frame t and hand h with at least 3 detected keypoints, the offset ``e`` (camera t) minimises the
confidence-weighted algebraic reprojection error ``sum_k c_k |x_k (Z_k + e_z) - (X_k + e_x)|^2`` (and the
same in y), where ``(x_k, y_k)`` is the detected keypoint in normalised image coordinates (``K^-1 uv``)
and ``X`` the model's keypoint in camera t. It is linear least squares in 3 unknowns, so the hand's depth
follows its size in the image: with the mean shape, a hand larger than average is placed too close.

Used after lifting (``handcast lift`` puts L's sample on the tracks before refining) and as a benchmark
row and reference (``handcast bench lifting``).
"""

from __future__ import annotations

import numpy as np
import torch

from handcast.conventions import MIN_HAND_KEYPOINTS

__all__ = ["align_offsets", "align_to_tracks"]



def align_offsets(X0: np.ndarray, uv: np.ndarray, conf: np.ndarray, observed: np.ndarray, K: np.ndarray,
                  world_to_cam: np.ndarray) -> np.ndarray:
    """Offsets (..., T, 2, 3) in metres, frame-0 camera, that put each observed hand on its 2D keypoints.

    X0: (..., T, 2, 21, 3) keypoints, m, frame-0 camera. uv: (..., T, 2, 21, 2) pixels in camera t (any
    value where conf is 0, NaN included). conf: (..., T, 2, 21). observed: (..., T, 2) bool (hands not
    observed, or with fewer than 3 keypoints, get a zero offset). K: (..., 3, 3). world_to_cam: (..., T, 4, 4)
    frame-0 camera -> camera t. An offset that would put a keypoint closer than 5 cm to the camera plane is
    dropped (zero).
    """
    X0, K, w2c = (np.asarray(a, np.float64) for a in (X0, K, world_to_cam))
    R, tt = w2c[..., :3, :3], w2c[..., :3, 3]
    Xc = np.einsum("...tij,...thkj->...thki", R, X0) + tt[..., None, None, :]
    Kinv = np.linalg.inv(K)
    uv1 = np.concatenate([np.nan_to_num(np.asarray(uv, np.float64)), np.ones(np.shape(uv)[:-1] + (1,))], -1)
    xn = np.einsum("...ij,...thkj->...thki", Kinv, uv1)  # normalised image coordinates
    obs = np.asarray(observed, bool) & ((np.asarray(conf) > 0).sum(-1) >= MIN_HAND_KEYPOINTS)
    c = np.where(obs[..., None], np.asarray(conf, np.float64), 0.0)
    # rows: [1, 0, -x] e = x Z - X ; [0, 1, -y] e = y Z - Y
    A = np.zeros(c.shape + (2, 3))
    A[..., 0, 0] = 1.0
    A[..., 1, 1] = 1.0
    A[..., 0, 2] = -xn[..., 0]
    A[..., 1, 2] = -xn[..., 1]
    b = np.stack([xn[..., 0] * Xc[..., 2] - Xc[..., 0], xn[..., 1] * Xc[..., 2] - Xc[..., 1]], -1)
    Aw = A * c[..., None, None]
    AtA = np.einsum("...kri,...krj->...ij", Aw, A) + 1e-9 * np.eye(3)
    Atb = np.einsum("...kri,...kr->...i", Aw, b)
    e = np.linalg.solve(AtA, Atb[..., None])[..., 0]  # (..., T, 2, 3) camera t
    d = np.einsum("...tji,...thj->...thi", R, e)  # back to the frame-0 camera
    z_new = Xc[..., 2] + e[..., None, 2]
    keep = obs & (z_new > 0.05).all(-1)
    return np.where(keep[..., None], d, 0.0)


def align_to_tracks(hand_model, pose: torch.Tensor, transl: torch.Tensor, betas: torch.Tensor, kp2d, conf,
                    observed, K, world_to_cam) -> torch.Tensor:
    """MANO translations moved so that each observed hand lies on its 2D keypoints (see the module doc).

    pose (..., T, 2, 16, 3) flat axis-angle, transl (..., T, 2, 3) m and betas (..., 2, 10), frame-0 camera;
    the 2D arguments as in :func:`align_offsets`. Returns the new transl (unobserved hands unchanged)."""
    with torch.no_grad():
        b = betas[..., None, :, :].expand(*pose.shape[:-2], 10)
        X0 = hand_model.keypoints(pose, b, transl, rep="aa", convention="flat").double().cpu().numpy()
    d = align_offsets(X0, _np(kp2d), _np(conf), _np(observed), _np(K), _np(world_to_cam))
    return transl + torch.from_numpy(d).to(transl)


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
