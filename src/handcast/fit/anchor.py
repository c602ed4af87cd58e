"""Anchors for forecasting: both hands' MANO motion over a few observed frames, from their 2D keypoints.

:func:`lift_prefix` is the pipeline a user has at test time: the lifting model L on the frames' 2D keypoint
tracks (a single photo becomes a static track of ``static_frames`` identical frames), each observed hand
placed on its keypoints (:func:`handcast.fit.align.align_to_tracks`), then a reprojection refinement
(:func:`handcast.fit.refine`) so that the result reprojects onto the keypoints. ``handcast forecast``
imposes it as the known prefix of F's samples (:meth:`handcast.models.forecast.ForecastModel.known_tokens`);
the forecasting benchmark runs the same function on the test clips' 2D keypoints (never their 3D labels).

Units: metres, OpenCV camera of frame 0 of the prefix, hands (right, left), MANO flat axis-angle, mean
shape (betas 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from handcast.conventions import MIN_HAND_KEYPOINTS
from handcast.fit.align import align_to_tracks
from handcast.fit.refine import RefineConfig, refine
from handcast.geometry import sixd_to_aa

__all__ = ["AnchorConfig", "lift_prefix"]


@dataclass(frozen=True)
class AnchorConfig:
    """Settings of :func:`lift_prefix`.

    static_frames: a one-frame prefix is given to L as this many identical frames (a still hand).
    sampler / steps: L's sampler. iterations: Adam iterations of the refinement, split in ``rounds`` rounds
    with learning rates decreasing geometrically from ``lr`` to ``lr_end``. w_smooth: joint-acceleration
    weight (only for prefixes of 3 frames or more). w_limits: joint-limit penalty (rad^2).
    """

    static_frames: int = 16
    sampler: str = "ddim"
    steps: int = 10
    iterations: int = 300
    rounds: int = 3
    lr: float = 0.02
    lr_end: float = 0.002
    w_smooth: float = 1.0
    w_limits: float = 0.01


@torch.no_grad()
def _lift(lift_model, kp2d, conf, K, image_size, world_to_cam, generator, config: AnchorConfig):
    b, n = kp2d.shape[:2]
    batch = {"kp2d": kp2d, "kp2d_conf": conf, "K": K, "world_to_cam": world_to_cam, "image_size": image_size,
             "frame_mask": torch.ones(b, n, dtype=torch.bool, device=kp2d.device)}
    rot6d, wrist = lift_model.sample(batch, 1, config.sampler, config.steps, generator=generator)
    return sixd_to_aa(rot6d[:, 0]), wrist[:, 0]


def lift_prefix(lift_model, hand_model, kp2d: torch.Tensor, conf: torch.Tensor, K: torch.Tensor,
                image_size: torch.Tensor, world_to_cam: torch.Tensor | None = None,
                config: AnchorConfig = AnchorConfig(), generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Both hands' motion over N observed frames of B clips, fitted to their 2D keypoints.

    Args:
        lift_model: the lifting model L (:func:`handcast.models.lifting.load_lift`).
        hand_model: :class:`handcast.hand.HandModel` (keypoints path only).
        kp2d: (B, N, 2, 21, 2) pixels in the image of camera t, hands (right, left), common order (any value,
            NaN included, where conf is 0).
        conf: (B, N, 2, 21) in [0, 1]; 0 = missing. A hand enters a frame with >= MIN_HAND_KEYPOINTS keypoints.
        K: (B, 3, 3) pixels; image_size: (B, 2) (W, H) pixels.
        world_to_cam: (B, N, 4, 4) frame-0 camera -> camera t (default: a static camera).
    Returns:
        pose (B, N, 2, 16, 3) flat axis-angle (global orientation in the frame-0 camera), wrist (B, N, 2, 3)
        metres frame-0 camera, known (B, N, 2) bool (the hand was observed in that frame: only those are
        fitted, the others hold L's guess), reprojection error px (B,) (mean over the observed keypoints,
        NaN for a clip with none).
    """
    dev = kp2d.device
    b, n = kp2d.shape[:2]
    conf = torch.where(torch.isfinite(kp2d).all(-1), conf, torch.zeros_like(conf)).float()
    known = (conf > 0).sum(-1) >= MIN_HAND_KEYPOINTS  # (B, N, 2)
    conf = conf * known[..., None]
    kp = torch.where(conf[..., None] > 0, kp2d, torch.zeros_like(kp2d)).float()
    w2c = (torch.eye(4, device=dev).expand(b, n, 4, 4) if world_to_cam is None else world_to_cam).float()
    K, image_size = K.float(), image_size.float()
    if n == 1 and config.static_frames > 1:  # one photo: a still hand over L's window
        s = int(config.static_frames)
        pose, wrist = _lift(lift_model, kp.expand(b, s, *kp.shape[2:]), conf.expand(b, s, *conf.shape[2:]), K,
                            image_size, w2c.expand(b, s, 4, 4), generator, config)
        pose, wrist = pose[:, :1], wrist[:, :1]
    else:
        pose, wrist = _lift(lift_model, kp, conf, K, image_size, w2c, generator, config)
    betas = torch.zeros(b, 2, 10, device=dev)
    j0 = hand_model.rest_joints(betas)[..., 0, :][:, None]  # (B, 1, 2, 3)
    transl = wrist - j0
    transl = align_to_tracks(hand_model, pose, transl, betas, kp, conf, known, K, w2c)
    its, rounds = int(config.iterations), max(1, int(config.rounds))
    err = torch.full((b,), float("nan"))
    lrs = np.geomspace(config.lr, config.lr_end, rounds) if rounds > 1 else [config.lr]
    split = np.diff(np.round(np.linspace(0, its, rounds + 1))).astype(int)
    for lr, k in zip(lrs, split):
        if k <= 0:
            continue
        cfg = RefineConfig(iterations=int(k), lr=float(lr), tol=0.0, w_smooth=config.w_smooth if n >= 3 else 0.0,
                           w_limits=config.w_limits, record_history=False)
        with torch.enable_grad():  # callers may sample under no_grad
            r = refine(hand_model, pose, transl, betas, kp, conf, K, w2c, known, config=cfg)
        pose, transl, err = r.pose, r.transl, r.reproj_error_px
    if its <= 0:  # only the error of L + alignment
        cfg = RefineConfig(iterations=1, tol=float("inf"), record_history=False)
        with torch.enable_grad():
            err = refine(hand_model, pose, transl, betas, kp, conf, K, w2c, known, config=cfg).reproj_error_px
    # hands never observed keep L's values (refine leaves them as they are)
    return pose.detach(), (transl + j0).detach(), known, err.detach().cpu()
