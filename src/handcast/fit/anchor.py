"""Anchors for forecasting: both hands' MANO motion over a few observed frames, from their 2D keypoints.

:func:`lift_prefix` is the pipeline a user has at test time: the lifting model L on the frames' 2D keypoint
tracks (a single photo becomes a static track of ``static_frames`` identical frames), each observed hand
placed on its keypoints (:func:`handcast.fit.align.align_to_tracks`), then a reprojection refinement
(:func:`handcast.fit.refine`) so that the result reprojects onto the keypoints, run from L's hand orientation
and 23 turns of it (:func:`orientation_turns`), each hand keeping the start that reprojects clearly best. ``handcast forecast``
imposes it as the known prefix of F's samples (:meth:`handcast.models.forecast.ForecastModel.known_tokens`);
the forecasting benchmark runs the same function on the test clips' 2D keypoints (never their 3D labels).

Units: metres, OpenCV camera of frame 0 of the prefix, hands (right, left), MANO flat axis-angle, mean
shape (betas 0).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from handcast.conventions import MIN_HAND_KEYPOINTS
from handcast.errors import HandcastError
from handcast.fit.align import align_to_tracks
from handcast.fit.refine import RefineConfig, refine
from handcast.geometry import aa_to_rotmat, project, rotmat_to_aa, transform_points
from handcast.models.lifting import average_samples, keep_weights

__all__ = ["AnchorConfig", "lift_prefix"]


@dataclass(frozen=True)
class AnchorConfig:
    """Settings of :func:`lift_prefix`.

    static_frames: a one-frame prefix is given to L as this many identical frames (a still hand).
    sampler / steps: L's sampler. samples: L's samples drawn; keep: how many of them are averaged, those most
    consistent with the 2D keypoints per frame, hand and part (:func:`handcast.models.lifting.select_weights`;
    None: all of them).
    iterations: Adam iterations of the refinement, split in ``rounds`` rounds with learning rates decreasing
    geometrically from ``lr`` to ``lr_end``. w_smooth: joint-acceleration
    weight (only for prefixes of 3 frames or more). w_limits: joint-limit penalty (rad^2). orientation_starts:
    the refinement starts from L's global orientation turned by each of the first this many rotations of
    :func:`orientation_turns` (1: L's only, up to 24), and each hand keeps the start that reprojects best,
    if that start is L's own or reprojects within ``switch_ratio`` times L's error (with noisy keypoints a
    turned hand can fit marginally better by chance; a misread hand fits several times worse). min_depth (m):
    a start whose refined wrist comes nearer to the camera than this in any frame is only taken when no start
    stays beyond it (a foreshortened hand a few centimetres from the lens can reproject well and is not what a
    photo shows).
    """

    static_frames: int = 16
    orientation_starts: int = 24
    switch_ratio: float = 0.75
    min_depth: float = 0.15
    sampler: str = "ddim"
    steps: int = 10
    samples: int = 8
    keep: int | None = 2
    iterations: int = 300
    rounds: int = 3
    lr: float = 0.02
    lr_end: float = 0.002
    w_smooth: float = 1.0
    w_limits: float = 0.01

    def __post_init__(self):
        if int(self.samples) < 1:
            raise HandcastError(f"the anchor needs at least one sample of L, got samples={self.samples}")
        if self.keep is not None and int(self.keep) < 1:
            raise HandcastError(f"the anchor keeps at least one sample of L, got keep={self.keep}")


def orientation_turns() -> torch.Tensor:
    """(24, 3, 3): the rotations that map the axes of a cube onto themselves, the identity first, then the
    quarter and half turns about one axis, then the rest. Applied in the hand's own frame
    (``R_global @ turn``), they are the starts of :func:`lift_prefix`'s refinement: from one view, a hand whose
    orientation L misreads (palm for back, fingers towards the camera for fingers up) is often a local minimum
    of the reprojection error; every orientation lies within about 63 degrees of one of these starts."""
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = torch.zeros(3, 3)
            m[range(3), perm] = torch.tensor(signs)
            if torch.linalg.det(m) > 0:
                mats.append(m)
    angle = lambda m: float(torch.arccos(((torch.trace(m) - 1) / 2).clamp(-1, 1)))  # noqa: E731
    mats.sort(key=lambda m: (angle(m) > 1e-6, int(round((torch.diagonal(m) == 1).sum().item())) != 1, angle(m)))
    return torch.stack(mats)


def _hand_errors(hand_model, pose, transl, betas, kp, conf, K, w2c) -> torch.Tensor:
    """(B, 2) mean reprojection error (px) of each hand over its observed keypoints of all frames (inf where none).
    pose (B, N, 2, 16, 3), transl (B, N, 2, 3), betas (B, 2, 10), kp (B, N, 2, 21, 2), conf (B, N, 2, 21)."""
    with torch.no_grad():
        b = betas[:, None].expand(*pose.shape[:2], 2, betas.shape[-1])
        joints = hand_model.keypoints(pose, b, transl, rep="aa", convention="flat")  # (B, N, 2, 21, 3)
        cam = transform_points(w2c[:, :, None, None], joints)
        uv = project(cam, K[:, None, None, None], behind="clamp")
        d = (uv - kp).norm(dim=-1) * conf
        n = conf.sum((1, 3))
        return torch.where(n > 0, d.sum((1, 3)) / n.clamp_min(1e-9), torch.full_like(n, float("inf")))


@torch.no_grad()
def _lift(lift_model, hand_model, kp2d, conf, K, image_size, world_to_cam, generator, config: AnchorConfig):
    b, n = kp2d.shape[:2]
    batch = {"kp2d": kp2d, "kp2d_conf": conf, "K": K, "world_to_cam": world_to_cam, "image_size": image_size,
             "frame_mask": torch.ones(b, n, dtype=torch.bool, device=kp2d.device)}
    rot6d, wrist = lift_model.sample(batch, int(config.samples), config.sampler, config.steps, generator=generator)
    R, wrist = average_samples(rot6d, wrist, keep_weights(rot6d, wrist, batch, hand_model, config.keep))
    return rotmat_to_aa(R), wrist


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
        pose, wrist = _lift(lift_model, hand_model, kp.expand(b, s, *kp.shape[2:]), conf.expand(b, s, *conf.shape[2:]), K,
                            image_size, w2c.expand(b, s, 4, 4), generator, config)
        pose, wrist = pose[:, :1], wrist[:, :1]
    else:
        pose, wrist = _lift(lift_model, hand_model, kp, conf, K, image_size, w2c, generator, config)
    # every start: the hands turned in their own frame about the wrist (MANO turns about the root joint)
    turns = orientation_turns()[: max(1, min(24, int(config.orientation_starts)))].to(dev)
    m = len(turns)
    rep = lambda x: x[:, None].expand(b, m, *x.shape[1:]).reshape(b * m, *x.shape[1:])  # noqa: E731
    glob = aa_to_rotmat(pose[..., 0, :].double())  # (B, N, 2, 3, 3)
    pose = rep(pose).clone()
    pose[..., 0, :] = rotmat_to_aa(glob[:, None] @ turns.double()[None, :, None, None]).reshape(b * m, n, 2, 3).to(pose)
    kp_m, conf_m, known_m, K_m, w2c_m = rep(kp), rep(conf), rep(known), rep(K), rep(w2c)
    betas = torch.zeros(b * m, 2, 10, device=dev)
    j0 = hand_model.rest_joints(betas)[..., 0, :][:, None]  # (B M, 1, 2, 3)
    transl = rep(wrist) - j0
    transl = align_to_tracks(hand_model, pose, transl, betas, kp_m, conf_m, known_m, K_m, w2c_m)
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
            r = refine(hand_model, pose, transl, betas, kp_m, conf_m, K_m, w2c_m, known_m, config=cfg)
        pose, transl = r.pose.detach(), r.transl.detach()
    # each hand keeps its best start (hands never observed: the first, L's own values, which refine leaves as they are)
    pose, transl = pose.reshape(b, m, *pose.shape[1:]), transl.reshape(b, m, *transl.shape[1:])
    e = _hand_errors(hand_model, pose.flatten(0, 1), transl.flatten(0, 1), betas, kp_m, conf_m, K_m,
                     w2c_m).reshape(b, m, 2).nan_to_num(float("inf"))
    depth = transform_points(w2c[:, None, :, None], transl + j0[0])[..., 2]  # (B, M, N, 2) camera t
    near = (depth < float(config.min_depth)).any(2)  # (B, M, 2)
    far_ok = (~near & torch.isfinite(e)).any(1, keepdim=True)  # some start of the hand stays beyond min_depth
    e = torch.where(near & far_ok, torch.full_like(e, float("inf")), e)
    best = e.argmin(1)  # (B, 2); a hand never observed (all inf) -> 0, L's
    keep = torch.isfinite(e[:, 0]) & (torch.gather(e, 1, best[:, None])[:, 0] >= float(config.switch_ratio) * e[:, 0])
    best = torch.where(keep, torch.zeros_like(best), best)
    idx = best[:, None, None, :]
    pose = torch.gather(pose, 1, idx[..., None, None].expand(b, 1, n, 2, 16, 3))[:, 0]
    transl = torch.gather(transl, 1, idx[..., None].expand(b, 1, n, 2, 3))[:, 0]
    cfg = RefineConfig(iterations=1, tol=float("inf"), record_history=False)  # the error of the result, as refine says it
    with torch.enable_grad():
        err = refine(hand_model, pose, transl, betas[:b], kp, conf, K, w2c, known, config=cfg).reproj_error_px
    return pose.detach(), (transl + j0[:b]).detach(), known, err.detach().cpu()
