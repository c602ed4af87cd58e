"""The canonical (right) hand of the hand model: meshes from rotations, pose-space sampling.

The pose estimator works on right hands only (left hands are mirrored, see :mod:`handcast.data.crops`),
so these helpers call the right smplx layer of a :class:`handcast.hand.HandModel` directly.
"""

from __future__ import annotations

import numpy as np
import torch

from handcast.conventions import MANO21_TO_COMMON
from handcast.geometry import aa_to_rotmat
from handcast.hand.pose import clamp_to_limits


def right_hand(hand_model, rotmats: torch.Tensor, betas: torch.Tensor | None = None,
               root_relative: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-hand mesh and keypoints from rotations.

    rotmats: (B, 16, 3, 3) MANO joint rotations (flat convention, joint 0 = global orientation in the camera
    frame); betas: (B, 10) or None. Returns (vertices (B, V, 3), keypoints (B, 21, 3) common order), metres,
    with the wrist (keypoint 0) at the origin if ``root_relative`` (else in the model frame, no translation).
    Differentiable."""
    from smplx.lbs import lbs

    layer = hand_model.layers[0]
    b = rotmats.shape[0]
    if betas is None:
        betas = rotmats.new_zeros(b, 10)
    v, j = lbs(betas.to(rotmats.dtype), rotmats, layer.v_template, layer.shapedirs, layer.posedirs,
               layer.J_regressor, layer.parents, layer.lbs_weights, pose2rot=False)
    tips = v[:, list(hand_model.tip_vertex_ids)]
    kp = torch.cat([j, tips], dim=1)[:, list(MANO21_TO_COMMON)]
    if root_relative:
        w = kp[:, :1]
        v, kp = v - w, kp - w
    return v, kp


def palm_vertex_ids(hand_model, threshold: float = 0.8, minimum: int = 50) -> np.ndarray:
    """Vertices moved (almost) only by the global orientation: skinning weight of joint 0 above
    ``threshold`` (at least the ``minimum`` most root-weighted ones). int64 (P,)."""
    w = hand_model.layers[0].lbs_weights[:, 0].detach().cpu().numpy()
    ids = np.flatnonzero(w > threshold)
    if len(ids) < minimum:
        ids = np.argsort(-w)[:minimum]
    return np.sort(ids).astype(np.int64)


def random_rotations(n: int, generator: torch.Generator | None = None, dtype=torch.float32) -> torch.Tensor:
    """(n, 3, 3) rotations uniform on SO(3) (normalised Gaussian quaternions), from ``generator``."""
    import roma

    q = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return roma.unitquat_to_rotmat(q).to(dtype)


def finger_pose_pool(hand_model, n: int, seed: int = 0) -> np.ndarray:
    """(n, 15, 3) right-hand finger poses (axis-angle, flat convention) from the model's pose space.

    Open model: its own pose sampler (grasp-like curls, 80 %, and independent uniform angles inside the
    anatomical ranges, 20 %). MANO: Gaussian coefficients on its PCA basis (std 1.5 / sqrt(1 + k) for
    component k) around ``hands_mean``. Both clamped to the model's joint limits."""
    rng = np.random.default_rng(seed)
    if hand_model.kind == "open":
        from handcast.hand import open_model as om

        grasp, uni = om.sample_poses(om.design_skeleton(), n, seed)
        pick = rng.random(n) < 0.8
        fingers = np.where(pick[:, None, None], grasp, uni)
    else:
        comps = getattr(hand_model.layers[0], "np_hand_components", None)
        mean = hand_model.hands_mean[0].detach().cpu().numpy().astype(np.float64)
        comps = np.eye(45) if comps is None else np.asarray(comps, np.float64).reshape(-1, 45)
        k = np.arange(comps.shape[0])
        coef = rng.standard_normal((n, comps.shape[0])) * (1.5 / np.sqrt(1.0 + k))
        fingers = (mean + coef @ comps).reshape(n, 15, 3)
    lim = hand_model.joint_limits[0].detach().cpu().numpy().astype(np.float64)
    full = np.concatenate([np.zeros((n, 1, 3)), fingers], axis=1)
    return clamp_to_limits(full, lim)[:, 1:]


def sample_meshes(hand_model, n: int, generator: torch.Generator, fingers: torch.Tensor,
                  betas_std: float = 1.0, betas_wide: float = 0.3) -> torch.Tensor:
    """(n, V, 3) root-relative right-hand meshes (m) with uniform random global orientation, finger poses
    drawn from ``fingers`` (P, 15, 3) axis-angle and shapes betas ~ N(0, betas_std) (a fraction
    ``betas_wide`` of them uniform in [-3.2, 3.2]). Deterministic given ``generator``."""
    return sample_hands(hand_model, n, generator, fingers, betas_std, betas_wide)[0]


def sample_hands(hand_model, n: int, generator: torch.Generator, fingers: torch.Tensor,
                 betas_std: float = 1.0, betas_wide: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """The hands of :func:`sample_meshes`: (vertices (n, V, 3), keypoints (n, 21, 3) common order), m,
    root-relative (wrist = 0)."""
    idx = torch.randint(0, fingers.shape[0], (n,), generator=generator)
    R = torch.cat([random_rotations(n, generator).unsqueeze(1), aa_to_rotmat(fingers[idx].to(torch.float32))], dim=1)
    b = torch.randn(n, 10, generator=generator) * betas_std
    wide = torch.rand(n, 1, generator=generator) < betas_wide
    b = torch.where(wide, torch.rand(n, 10, generator=generator) * 6.4 - 3.2, b)
    with torch.no_grad():
        return right_hand(hand_model, R.to(hand_model.hands_mean.dtype), b.to(hand_model.hands_mean.dtype))
