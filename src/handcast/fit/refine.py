"""Reprojection refinement of both hands' MANO motion (the imputation step of the lifting paper).

:func:`refine` runs Adam on the axis-angle pose (16 joints) and the translation of both hands of a
batch of clips, shapes fixed, minimising a confidence-weighted 2D reprojection loss (plus a 3D
keypoint loss where 3D labels exist) through a keypoints-only MANO path. Defaults follow the
reference: 1000 iterations, lr 0.01, gradient-norm clip 1, early stop when the loss < 1e-4,
3D x1 + 2D x0.1 where 3D labels exist. Loss definitions and units: docs/fitting.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from handcast.errors import HandcastError
from handcast.fit import _engine as E
from handcast.fit.kinematics import from_soa, kp_to_level, pose_from_soa, pose_to_soa, to_soa


@dataclass(frozen=True)
class RefineConfig:
    """Settings of :func:`refine` (units in docs/fitting.md).

    iterations: maximum Adam steps (loss evaluations) per clip.
    lr: Adam learning rate (rad for the pose, m for the translation).
    grad_clip: maximum L2 norm of each clip's gradient (pose and translation together); None = off.
    tol: a clip stops (and is frozen) as soon as its loss is below ``tol``.
    w_2d: weight of the 2D term for clips without 3D labels; w_2d_with_3d: for clips with 3D labels.
    w_3d: weight of the 3D keypoint term (m^2) where labels are given.
    w_smooth: weight of the joint-acceleration term (frame-0 camera, m^2 per frame^2); 0 = off.
    w_limits: weight of the squared joint-limit violation (rad^2); 0 = off.
    robust_2d: None for squared 2D residuals, or a Geman-McClure scale in normalised image units
        (e.g. 0.02 ~ 20 px at f = 1000 px).
    min_depth: metres; projected depths below it are softly clamped (no NaN behind the camera).
    record_history: keep the per-iteration loss of every clip.
    """

    iterations: int = 1000
    lr: float = 0.01
    grad_clip: float | None = 1.0
    tol: float = 1e-4
    w_2d: float = 1.0
    w_2d_with_3d: float = 0.1
    w_3d: float = 1.0
    w_smooth: float = 0.0
    w_limits: float = 0.0
    robust_2d: float | None = None
    min_depth: float = 0.01
    record_history: bool = True

    def loss_weights(self) -> E.LossWeights:
        return E.LossWeights(w_2d=self.w_2d, w_2d_with_3d=self.w_2d_with_3d, w_3d=self.w_3d,
                             w_smooth_joints=self.w_smooth, w_limits=self.w_limits,
                             min_depth=self.min_depth, robust_2d=self.robust_2d)

    def adam(self) -> E.AdamSettings:
        return E.AdamSettings(iterations=self.iterations, lr=self.lr, grad_clip=self.grad_clip, tol=self.tol)


@dataclass
class RefineResult:
    """Output of :func:`refine` (tensors on the device and in the dtype of the input pose).

    pose: (B, T, 2, 16, 3) refined flat axis-angle, MANO order, frame-0 camera.
    transl: (B, T, 2, 3) refined MANO translation, metres, frame-0 camera.
    initial_loss, final_loss: (B,) loss at the input / returned parameters.
    loss_history: (I, B) loss at each evaluation (NaN once a clip has stopped); (0, B) if not recorded.
    iterations: (B,) int64 number of loss evaluations (1 = stopped at the start, unchanged).
    converged: (B,) bool, the clip stopped early (loss < tol).
    reproj_error_px: (B,) mean pixel distance between projected and observed keypoints over the
        keypoints that contribute (conf > 0, hand valid), unweighted; NaN if a clip has none.
    joints3d_error: (B,) mean 3D keypoint distance (m) over the labelled keypoints; NaN without labels.
    """

    pose: torch.Tensor
    transl: torch.Tensor
    initial_loss: torch.Tensor
    final_loss: torch.Tensor
    loss_history: torch.Tensor
    iterations: torch.Tensor
    converged: torch.Tensor
    reproj_error_px: torch.Tensor
    joints3d_error: torch.Tensor


def _check_params(pose: torch.Tensor, transl: torch.Tensor, betas: torch.Tensor, B: int, T: int) -> None:
    if not isinstance(pose, torch.Tensor) or not pose.dtype.is_floating_point:
        raise HandcastError("pose must be a floating-point torch tensor")
    if tuple(pose.shape) != (B, T, 2, 16, 3):
        raise HandcastError(f"pose must have shape ({B}, {T}, 2, 16, 3) (axis-angle), got {tuple(pose.shape)}")
    if tuple(transl.shape) != (B, T, 2, 3):
        raise HandcastError(f"transl must have shape ({B}, {T}, 2, 3), got {tuple(transl.shape)}")
    if tuple(betas.shape) != (B, 2, 10):
        raise HandcastError(f"betas must have shape ({B}, 2, 10), got {tuple(betas.shape)}")


def sanitise_params(pose: torch.Tensor, transl: torch.Tensor, hand_valid: torch.Tensor):
    """Zeros for non-finite parameters of invalid hands; HandcastError for valid ones."""
    fin = torch.isfinite(pose).flatten(-2).all(-1) & torch.isfinite(transl).all(-1)  # (B, T, 2)
    if bool((~fin & hand_valid).any()):
        b, t, h = (~fin & hand_valid).nonzero()[0].tolist()
        raise HandcastError(f"refinement cannot start: the initial pose/transl is NaN or inf at clip {b}, frame "
                            f"{t}, hand {h} (a valid hand); the 2D input, cameras or model that gave it hold values "
                            "out of range")
    if not bool(fin.all()):
        pose = torch.where(fin[..., None, None], pose, torch.zeros_like(pose))
        transl = torch.where(fin[..., None], transl, torch.zeros_like(transl))
    return pose, transl


def residual_stats(C: dict, X: torch.Tensor, K: torch.Tensor, mask2d: torch.Tensor,
                   min_depth: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(reprojection error px (B,), 3D error m (B,)) from camera-frame keypoints X (3, 21, B, T, 2).

    mask2d: (21, B, T, 2) bool, level order: the keypoints that count for the pixel error.
    """
    z = E.soft_depth(X[2], min_depth)
    rx = X[0] / z - C["obs"][0]
    ry = X[1] / z - C["obs"][1]
    fx, fy, s = (K[:, 0, 0].view(1, -1, 1, 1), K[:, 1, 1].view(1, -1, 1, 1), K[:, 0, 1].view(1, -1, 1, 1))
    du = fx * rx + s * ry
    dv = fy * ry
    dist = torch.sqrt(du * du + dv * dv)
    m = mask2d.to(dist.dtype)
    n = E.clip_sum(m)
    px = E.clip_sum(torch.where(mask2d, dist, torch.zeros_like(dist))) / n
    px = torch.where(n > 0, px, torch.full_like(px, float("nan")))
    if "Y" in C:
        d = torch.sqrt(((X - C["Y"]) ** 2).sum(0))
        m3 = C["w3"] > 0
        n3 = E.clip_sum(m3.to(d.dtype))
        e3 = E.clip_sum(torch.where(m3, d, torch.zeros_like(d))) / n3
        e3 = torch.where(n3 > 0, e3, torch.full_like(e3, float("nan")))
    else:
        e3 = torch.full_like(px, float("nan"))
    return px, e3


def refine(hand_model, pose: torch.Tensor, transl: torch.Tensor, betas: torch.Tensor, kp2d: torch.Tensor,
           conf: torch.Tensor, K: torch.Tensor, world_to_cam: torch.Tensor, hand_valid: torch.Tensor,
           joints3d: torch.Tensor | None = None, joints3d_mask: torch.Tensor | None = None,
           config: RefineConfig = RefineConfig()) -> RefineResult:
    """Refine both hands' MANO motion of B clips against their 2D keypoint tracks (and 3D labels).

    Args:
        hand_model: :class:`handcast.hand.HandModel` (only its keypoint buffers are used; never the mesh).
        pose: (B, T, 2, 16, 3) flat axis-angle (rad), MANO joint order, hands (right, left),
            global orientation in the frame-0 camera. Initial values.
        transl: (B, T, 2, 3) MANO translation, metres, frame-0 camera. Initial values.
        betas: (B, 2, 10) shapes, fixed.
        kp2d: (B, T, 2, 21, 2) observed keypoints, pixels (u, v) in the image of camera t, common order.
        conf: (B, T, 2, 21) confidences in [0, 1]; 0 = missing. NaN keypoints are treated as missing.
        K: (B, 3, 3) intrinsics, pixels. Degenerate intrinsics raise HandcastError.
        world_to_cam: (B, T, 4, 4) rigid maps frame-0 camera -> camera t.
        hand_valid: (B, T, 2) bool; only valid (frame, hand) pairs contribute to any loss term.
        joints3d: optional (B, T, 2, 21, 3) 3D keypoint labels, metres, frame-0 camera, common order.
        joints3d_mask: optional (B, T, 2) bool, where ``joints3d`` is a label (default: hand_valid).
            A clip with at least one 3D label uses w_3d * 3D + w_2d_with_3d * 2D, else w_2d * 2D.
        config: :class:`RefineConfig`.

    Tensors (numpy arrays are converted) go to the device of ``pose``; the optimisation runs there
    in the dtype of ``pose`` (float32 recommended); deterministic for given
    inputs. Each clip is optimised independently (its own loss, gradient clip and early stop), so
    results do not depend on the other clips in the batch up to floating-point reduction order.
    """
    pose = torch.as_tensor(pose)
    dev = pose.device
    kp2d, conf, K, world_to_cam, hand_valid, transl, betas, joints3d, joints3d_mask = (
        None if x is None else torch.as_tensor(x, device=dev)
        for x in (kp2d, conf, K, world_to_cam, hand_valid, transl, betas, joints3d, joints3d_mask))
    B, T = E.check_inputs(kp2d, conf, K, world_to_cam, hand_valid)
    _check_params(pose, transl, betas, B, T)
    dtype, device = pose.dtype, pose.device
    hand_valid = hand_valid.to(device=device, dtype=torch.bool)
    pose, transl = sanitise_params(pose, transl.to(device=device, dtype=dtype), hand_valid)
    wt = config.loss_weights()
    C, sc = E.prepare(hand_model, betas, kp2d.to(device), conf.to(device), K.to(device), world_to_cam.to(device),
                      hand_valid, None if joints3d is None else joints3d.to(device),
                      None if joints3d_mask is None else joints3d_mask.to(device), wt, dtype, device)
    F = E.finger_constants(hand_model, dtype, device) if config.w_limits > 0 else {}
    root, fingers = pose_to_soa(pose)
    params = {"root": root, "fingers": fingers, "transl": to_soa(transl)}
    res = E.optimise(C, sc, F, params, ("root", "fingers", "transl"), wt, config.adam(),
                     history=config.record_history)
    p = res["params"]
    final, X = E.evaluate(C, sc, F, p, wt)
    if res["loss_history"].shape[0]:
        initial = res["loss_history"][0]
    else:
        initial, _ = E.evaluate(C, sc, F, params, wt)
    c = conf.to(device=device, dtype=dtype)
    ok = torch.isfinite(kp2d.to(device)).all(-1) & torch.isfinite(c) & (c > 0) & hand_valid.unsqueeze(-1)
    mask2d = kp_to_level(ok, -1).permute(3, 0, 1, 2)
    px, e3 = residual_stats(C, X, K.to(device=device, dtype=dtype), mask2d, config.min_depth)
    return RefineResult(
        pose=pose_from_soa(p["root"], p["fingers"]),
        transl=from_soa(p["transl"]),
        initial_loss=initial,
        final_loss=final,
        loss_history=res["loss_history"],
        iterations=res["iterations"],
        converged=res["stopped"],
        reproj_error_px=px,
        joints3d_error=e3,
    )
