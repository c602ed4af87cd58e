"""Fitting one hand model to a single image's 2D keypoints, starting from a network's 3D estimate.

The single-image pose estimator (:mod:`handcast.models.cascade`) predicts root-relative 3D joints from a crop;
on photos unlike its training data its answer can be turned the wrong way in the image plane, and the root that
best explains the keypoints then lands behind the camera. :func:`fit_keypoints` makes the estimate agree with the
keypoints: it fits the right-hand model (global orientation, 15 finger rotations, shape, translation) to the
2D keypoints of a camera ``K`` while keeping the finger articulation near the network's and inside the model's
joint limits, so the 2D evidence decides what it can (orientation, placement, the in-image shape) and the network
decides what 2D cannot (which way each finger bends in depth, the hand's size and hence its distance).

Several initial orientations are tried and the lowest final loss wins: the network's own, the network's turned
about the optical axis by the in-plane angle that best aligns its projection with the keypoints, and that one turned
180 degrees about the image-plane axis through the wrist (palm <-> back). The depth starts from the ratio of 3D to
2D hand extent. Everything is batched over hands (B) and works on right hands in their canonical frame (left hands
are mirrored by the caller, as in :mod:`handcast.data.crops`).

Loss per hand (docs/pose.md): sum_j a_j conf_j * charbonnier(100 |uv_j - kp_j| / d, ``charbonnier``), d the
diagonal of the keypoints' bounding box in pixels (so the weights below mean the same for a small and a large hand),
a_j = ``w_wrist`` for the wrist and 1 for the others (the wrist is the one keypoint of the palm's near end: with
equal weights and this near-L1 loss, the fit gives it up whenever the detector's fingers disagree with the network's
articulation, and the whole hand then tilts and slides towards the fingers),
+ ``w_prior`` * sum_joints GM(|finger_k - finger_k_init|, ``prior_scale``) (rad^2; Geman-McClure: quadratic for
small deviations, so detector noise does not bend the fingers, bounded for large ones, so a network that is plainly
wrong about a finger can be overruled by the keypoints) + ``w_betas`` * |betas|^2 + ``w_depth`` * (log z - log z0)^2, z0 the depth at which the 3D hand seen
fronto-parallel has the keypoints' 2D spread (a weak pull: perspective alone is an unreliable depth cue when the
keypoints are a few pixels off). After every step the finger rotations are projected onto the hand model's joint
limits (each axis-angle component clamped, as :meth:`handcast.hand.HandModel.clamp_to_limits` does) and the shape onto
|betas| <= ``max_betas``: the result is always a pose the model allows, however hard the keypoints pull (a soft
limit penalty, used until 2026-12-08, let a strongly pulled finger bend past its range).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import roma
import torch

from handcast.errors import HandcastError
from handcast.geometry import rotmat_to_6d, sixd_to_rotmat
from handcast.models.cascade.estimate import PoseResult
from handcast.models.cascade.fitting import fit_mesh_to_joints
from handcast.models.cascade.handutil import right_hand


@dataclass(frozen=True)
class KeypointFitConfig:
    """Settings of :func:`fit_keypoints` (pixels are those of ``K``)."""

    iterations: int = 250
    lr: float = 0.03
    charbonnier: float = 0.5  # percent of the hand's keypoint box diagonal
    w_wrist: float = 3.0  # the wrist keypoint's weight in the data term, the others' being 1
    w_prior: float = 100.0
    prior_scale: float = 0.35  # rad: finger deviations beyond it cost less than quadratically (Geman-McClure)
    w_betas: float = 1.0
    w_depth: float = 10.0  # (log depth - log initial depth)^2: weak pull to the fronto-parallel distance
    max_betas: float = 3.0
    init_iterations: int = 100  # of fit_mesh_to_joints (network joints -> model rotations)
    min_depth: float = 0.05  # m

    def __post_init__(self):
        if self.iterations < 0 or self.init_iterations < 0:
            raise HandcastError("keypoint fit iterations must be >= 0")
        if not (self.lr > 0 and self.charbonnier > 0 and self.min_depth > 0 and self.max_betas > 0):
            raise HandcastError("keypoint fit lr, charbonnier, max_betas and min_depth must be positive")
        weights = {"w_prior": self.w_prior, "w_betas": self.w_betas, "w_depth": self.w_depth,
                   "prior_scale": self.prior_scale, "w_wrist": self.w_wrist}
        for name, v in weights.items():
            if not (math.isfinite(float(v)) and float(v) >= 0):
                raise HandcastError(f"keypoint fit {name} must be a finite number >= 0, got {v!r}")


def _rays(kp2d: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """(B, 21, 2) pixels, (B, 3, 3) -> normalised image coordinates (B, 21, 2)."""
    ones = torch.ones_like(kp2d[..., :1])
    r = (torch.linalg.inv(K).unsqueeze(1) @ torch.cat([kp2d, ones], -1).unsqueeze(-1)).squeeze(-1)
    return r[..., :2] / r[..., 2:]


def _roll(angle: torch.Tensor) -> torch.Tensor:
    """(B,) radians -> (B, 3, 3) rotations about the camera's z axis."""
    c, s = torch.cos(angle), torch.sin(angle)
    z, o = torch.zeros_like(c), torch.ones_like(c)
    return torch.stack([torch.stack([c, -s, z], -1), torch.stack([s, c, z], -1), torch.stack([z, z, o], -1)], -2)


def inplane_angle(joints: torch.Tensor, rays: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Angle (B,) about the optical axis that best turns the joints' xy (B, 21, 3) onto the keypoint rays
    (B, 21, 2) (weighted 2D Procrustes, rotation only). Positive = counter-clockwise in x-right/y-down coords."""
    ws = w / w.sum(-1, keepdim=True).clamp_min(1e-9)
    a = joints[..., :2] - (ws.unsqueeze(-1) * joints[..., :2]).sum(1, keepdim=True)
    b = rays - (ws.unsqueeze(-1) * rays).sum(1, keepdim=True)
    cross = (ws * (a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0])).sum(-1)
    dot = (ws * (a * b).sum(-1)).sum(-1)
    return torch.atan2(cross, dot)


def _initial_translation(joints: torch.Tensor, rays: torch.Tensor, w: torch.Tensor, min_depth: float) -> torch.Tensor:
    """Translation (B, 3) for root-relative joints (B, 21, 3) from the ratio of their 3D spread to the
    keypoint rays' spread (depth) and the weighted centroid of the rays (x, y)."""
    ws = w / w.sum(-1, keepdim=True).clamp_min(1e-9)
    cj = (ws.unsqueeze(-1) * joints).sum(1)  # (B, 3)
    cr = (ws.unsqueeze(-1) * rays).sum(1)  # (B, 2)
    # the full 3D spread (a fronto-parallel hand): robust to an estimate turned along the optical axis
    s3 = ((ws * ((joints - cj[:, None]) ** 2).sum(-1)).sum(-1)).sqrt()
    s2 = ((ws * ((rays - cr[:, None]) ** 2).sum(-1)).sum(-1)).sqrt().clamp_min(1e-6)
    zc = (s3 / s2).clamp_min(min_depth + 0.02)  # depth of the centroid
    t = torch.cat([cr * zc.unsqueeze(-1) - cj[:, :2], (zc - cj[:, 2]).unsqueeze(-1)], -1)
    return torch.cat([t[:, :2], t[:, 2:].clamp_min(min_depth)], -1)


def fit_keypoints(hand_model, joints: torch.Tensor, kp2d: torch.Tensor, conf: torch.Tensor, K: torch.Tensor,
                  config: KeypointFitConfig = KeypointFitConfig()) -> dict[str, torch.Tensor]:
    """Fit the right-hand model to 2D keypoints, starting from root-relative joints.

    joints: (B, 21, 3) root-relative network estimate, metres, canonical (right-hand) camera frame, common order.
    kp2d: (B, 21, 2) pixels of camera ``K`` (B, 3, 3), common order; conf (B, 21) in [0, 1] (0 = unused).
    Returns dict (all in the same camera frame, metres): ``joints`` (B, 21, 3) and ``vertices`` (B, V, 3)
    root-relative, ``root`` (B, 3) wrist position, ``rotmats`` (B, 16, 3, 3) flat MANO rotations (joint 0 =
    global orientation in the camera frame), ``betas`` (B, 10), ``correction`` (B, 3, 3) the rotation that turns
    the network's root-relative estimate into the fitted one's orientation (apply it to other hypotheses),
    ``reproj_px`` (B,) mean reprojection error of the used keypoints, ``init`` (B,) index of the winning start.
    Hands with fewer than 2 used keypoints keep the network's orientation and get the default placement."""
    if joints.ndim != 3 or joints.shape[1:] != (21, 3):
        raise HandcastError(f"joints must be (B, 21, 3), got {tuple(joints.shape)}")
    dev, dt = joints.device, torch.float64
    J = joints.detach().to(dt)
    kp = torch.nan_to_num(kp2d.detach().to(dt))
    w = torch.where(torch.isfinite(kp2d).all(-1), conf.detach().to(dt).clamp(0, 1), torch.zeros_like(conf, dtype=dt))
    Kd = K.detach().to(dt)
    b = J.shape[0]
    rays = _rays(kp, Kd)

    with torch.enable_grad():
        init = fit_mesh_to_joints(hand_model, J.to(torch.float32), iterations=config.init_iterations)
    R0 = sixd_to_rotmat(init["rot6d"].to(dt))  # (B, 16, 3, 3)
    betas0 = init["betas"].to(dt)
    with torch.no_grad():
        _, kp_model = right_hand(hand_model, R0.float(), betas0.float())
    kp_model = kp_model.to(dt)

    # candidate global orientations: the network's, rolled to match the keypoints, and that one flipped palm <-> back
    theta = inplane_angle(kp_model, rays, w)
    Rroll = _roll(theta)
    axis = kp_model[:, 9] - kp_model[:, 0]  # wrist -> middle MCP, rolled into the image plane
    axis = (Rroll @ axis.unsqueeze(-1)).squeeze(-1)
    axis = torch.cat([axis[:, :2], torch.zeros_like(axis[:, :1])], -1)
    axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    Rflip = roma.rotvec_to_rotmat(axis * torch.pi)
    eye = torch.eye(3, dtype=dt, device=dev).expand(b, 3, 3)
    corrections = torch.stack([eye, Rroll, Rflip @ Rroll], 1)  # (B, C, 3, 3)
    C = corrections.shape[1]
    glob0 = corrections @ R0[:, None, 0]  # (B, C, 3, 3)
    kp0 = torch.einsum("bcij,bpj->bcpi", corrections, kp_model)  # (B, C, 21, 3)

    n = b * C
    rep = lambda x: x.unsqueeze(1).expand(b, C, *x.shape[1:]).reshape(n, *x.shape[1:])
    kp_n, w_n, K_n, rays_n = rep(kp), rep(w), rep(Kd), rep(rays)
    t0 = _initial_translation(kp0.reshape(n, 21, 3), rays_n, w_n, config.min_depth)
    fingers0 = roma.rotmat_to_rotvec(R0[:, 1:]).reshape(b, 15, 3)
    fingers0_n = rep(fingers0)
    limits = hand_model.joint_limits[0].to(dt)  # (15, 3, 2)

    g6 = rotmat_to_6d(glob0.reshape(n, 3, 3)).clone().requires_grad_(True)
    fingers = fingers0_n.clone().requires_grad_(True)
    betas = rep(betas0).clone().requires_grad_(True)
    xy = (t0[:, :2] / t0[:, 2:]).clone().requires_grad_(True)  # the root's normalised image position
    logz0 = t0[:, 2].log()
    logz = logz0.clone().requires_grad_(True)
    opt = torch.optim.Adam([{"params": [g6, fingers], "lr": config.lr}, {"params": [betas], "lr": config.lr},
                            {"params": [xy], "lr": config.lr * 0.1}, {"params": [logz], "lr": config.lr}])
    c2 = config.charbonnier ** 2
    wd_n = w_n.clone()  # the data term's weights: the wrist's times w_wrist
    wd_n[:, 0] *= config.w_wrist
    lo, hi = torch.where(w_n[..., None] > 0, kp_n, torch.inf).amin(1), torch.where(w_n[..., None] > 0, kp_n, -torch.inf).amax(1)
    diag = torch.nan_to_num((hi - lo).norm(dim=-1), nan=1.0, posinf=1.0, neginf=1.0).clamp_min(1.0)  # (n,) px

    def losses(final: bool = False):
        R = torch.cat([sixd_to_rotmat(g6).unsqueeze(1), roma.rotvec_to_rotmat(fingers)], 1)
        v, j = right_hand(hand_model, R.float(), betas.float())
        v, j = v.to(dt), j.to(dt)
        z = logz.exp().clamp_min(config.min_depth)
        root = torch.cat([xy * z.unsqueeze(-1), z.unsqueeze(-1)], -1)
        P = j + root.unsqueeze(1)
        uvw = (K_n.unsqueeze(1) @ P.unsqueeze(-1)).squeeze(-1)
        uv = uvw[..., :2] / uvw[..., 2:].clamp_min(1e-3)
        err = (uv - kp_n).norm(dim=-1)
        e = 100.0 * err / diag.unsqueeze(-1)
        data = (wd_n * (torch.sqrt(e * e + c2) - config.charbonnier)).sum(-1)
        d2 = ((fingers - fingers0_n) ** 2).sum(-1)  # (n, 15) rad^2
        s2 = config.prior_scale ** 2
        prior = (s2 * d2 / (d2 + s2)).sum(-1)
        loss = data + config.w_prior * prior + config.w_betas * (betas * betas).sum(-1) + config.w_depth * (logz - logz0) ** 2
        return loss, (R, v, j, root, err)

    with torch.enable_grad():
        for _ in range(int(config.iterations)):
            loss, _ = losses()
            opt.zero_grad()
            loss.sum().backward()
            opt.step()
            with torch.no_grad():
                betas.clamp_(-config.max_betas, config.max_betas)
                fingers.clamp_(limits[..., 0], limits[..., 1])
    with torch.no_grad():
        loss, (R, v, j, root, err) = losses()
        best = loss.reshape(b, C).argmin(-1)
        pick = lambda x: x.reshape(b, C, *x.shape[1:])[torch.arange(b, device=dev), best]
        Rb, vb, jb, rootb, errb = pick(R), pick(v), pick(j), pick(root), pick(err)
        reproj = (w * errb).sum(-1) / w.sum(-1).clamp_min(1e-9)
        # the rotation taking the network's estimate into the fitted orientation
        corr = Rb[:, 0] @ R0[:, 0].transpose(-1, -2)
    ok = (w > 0).sum(-1) >= 2
    if not bool(ok.all()):  # too few keypoints: keep the network's answer at the default placement
        jn = J
        rootn = torch.zeros(b, 3, dtype=dt, device=dev)
        rootn[:, 2] = config.min_depth
        jb = torch.where(ok[:, None, None], jb, jn)
        rootb = torch.where(ok[:, None], rootb, rootn)
        corr = torch.where(ok[:, None, None], corr, eye)
    out_dt = joints.dtype
    return {"joints": jb.to(out_dt), "vertices": vb.to(out_dt), "root": rootb.to(out_dt), "rotmats": Rb.to(out_dt),
            "betas": pick(betas.detach()).to(out_dt), "correction": corr.to(out_dt), "reproj_px": reproj.to(out_dt),
            "init": best}


def refine_pose(res: PoseResult, hand_model, config: KeypointFitConfig = KeypointFitConfig()) -> PoseResult:
    """A :class:`~handcast.models.cascade.estimate.PoseResult` whose aggregated joints, mesh and root are the hand
    model fitted to its 2D keypoints (:func:`fit_keypoints`), started from the network's aggregate.

    The network's own estimate stays available: ``joints_network``/``vertices_network``/``root_network`` of the
    result; the hypotheses (``joint_samples``, ``vertex_samples``) are turned by the fit's orientation correction so
    they stay about the refined estimate. Adds ``pose`` (H, 16, 3) flat axis-angle of each hand's own model (left
    hands: the left model; joint 0 = global orientation in the camera frame) and ``betas`` (H, 10)."""
    if res.num_hands == 0:
        return res
    H = res.num_hands
    W = res.image_size[0]
    flip = res.hand == 1
    dt = torch.float32
    j = torch.as_tensor(res.joints, dtype=dt)
    kp = torch.as_tensor(res.kp2d, dtype=dt).clone()
    K = torch.as_tensor(res.K, dtype=dt).expand(H, 3, 3).clone()
    fl = torch.as_tensor(flip)
    # canonical frame: mirror left hands (x -> -x; u -> W - 1 - u; cx -> W - 1 - cx)
    mx = torch.tensor([-1.0, 1.0, 1.0], dtype=dt)
    j = torch.where(fl[:, None, None], j * mx, j)
    kp[..., 0] = torch.where(fl[:, None], (W - 1) - kp[..., 0], kp[..., 0])
    K[:, 0, 2] = torch.where(fl, (W - 1) - K[:, 0, 2], K[:, 0, 2])
    conf = torch.as_tensor(res.kp2d_conf, dtype=dt)
    out = fit_keypoints(hand_model, j, kp, conf, K, config)
    corr = out["correction"]

    def back(x):  # canonical -> camera frame, numpy float32
        x = torch.where(fl.reshape((-1,) + (1,) * (x.ndim - 1)), x * mx, x)
        return x.detach().cpu().numpy().astype(np.float32)

    def turn(samples):  # (H, S, P, 3) camera frame -> corrected, camera frame
        s = torch.as_tensor(samples, dtype=dt)
        s = torch.where(fl[:, None, None, None], s * mx, s)
        s = torch.einsum("hij,hspj->hspi", corr, s)
        return back(s)

    R = out["rotmats"]
    aa = roma.rotmat_to_rotvec(R)  # right-hand model, canonical frame
    aa_own = torch.where(fl[:, None, None], aa * torch.tensor([1.0, -1.0, -1.0], dtype=dt), aa)
    return replace(res, joints=back(out["joints"]), vertices=back(out["vertices"]), root=back(out["root"]),
                   joint_samples=turn(res.joint_samples), vertex_samples=turn(res.vertex_samples),
                   joints_network=res.joints, vertices_network=res.vertices, root_network=res.root,
                   pose=aa_own.detach().cpu().numpy().astype(np.float32),
                   betas=out["betas"].detach().cpu().numpy().astype(np.float32),
                   reproj_px=out["reproj_px"].detach().cpu().numpy().astype(np.float32), refined=True)
