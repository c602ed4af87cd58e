"""Shared machinery of the fitting loops: batch preparation (SoA), loss terms and a batched Adam
with per-clip gradient clipping, per-clip early stopping and shrinking of the working batch.

Units of the loss terms (see docs/fitting.md):
  * 2D: squared distance between the projected keypoint and the observed one in NORMALISED image
    coordinates (``K^-1 [u, v, 1]``, i.e. pixel error / focal length; dimensionless, ~metres of
    lateral error at 1 m depth), confidence-weighted mean over the clip's contributing keypoints.
  * 3D: squared Euclidean keypoint distance in m^2, mean over the labelled keypoints.
  * limits / prior: rad^2; smoothness: m^2 (joint acceleration per frame^2), rad^2 (pose velocity).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from handcast.errors import HandcastError
from handcast.fit.kinematics import (
    FINGER_LEVEL_TO_MANO,
    ShapeConstants,
    keypoints_soa,
    kp_to_level,
    matvec_soa,
)
from handcast.geometry.camera import check_intrinsics, pixel_rays


def _shape(x: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in x.shape) + ")"


def check_inputs(kp2d, conf, K, world_to_cam, hand_valid) -> tuple[int, int]:
    """Validate the shapes of the 2D/camera inputs; return (B, T). HandcastError on mistakes."""
    if kp2d.ndim != 5 or tuple(kp2d.shape[2:]) != (2, 21, 2):
        raise HandcastError(f"kp2d must have shape (B, T, 2, 21, 2), got {_shape(kp2d)}")
    B, T = kp2d.shape[:2]
    if tuple(conf.shape) != (B, T, 2, 21):
        raise HandcastError(f"conf must have shape ({B}, {T}, 2, 21), got {_shape(conf)}")
    if tuple(K.shape) != (B, 3, 3):
        raise HandcastError(f"K must have shape ({B}, 3, 3), got {_shape(K)}")
    if tuple(world_to_cam.shape) != (B, T, 4, 4):
        raise HandcastError(f"world_to_cam must have shape ({B}, {T}, 4, 4), got {_shape(world_to_cam)}")
    if tuple(hand_valid.shape) != (B, T, 2):
        raise HandcastError(f"hand_valid must have shape ({B}, {T}, 2), got {_shape(hand_valid)}")
    check_intrinsics(K, "K")
    if not bool(torch.isfinite(world_to_cam).all()):
        raise HandcastError("world_to_cam contains NaN or inf")
    return B, T


def _per_clip_normalise(w: torch.Tensor) -> torch.Tensor:
    """Divide weights (..., B, T, 2) by their per-clip sum (0 where the clip has none)."""
    dims = tuple(d for d in range(w.ndim) if d != w.ndim - 3)
    s = w.sum(dims, keepdim=True)
    return w / torch.where(s > 0, s, torch.ones_like(s))


@dataclass
class LossWeights:
    """Weights of the loss terms (already chosen per clip by the caller)."""

    w_2d: float = 1.0
    w_2d_with_3d: float = 0.1
    w_3d: float = 1.0
    w_smooth_joints: float = 0.0  # joint acceleration, frame-0 camera, m^2
    w_smooth_pose: float = 0.0  # finger/root axis-angle velocity, rad^2
    w_smooth_transl: float = 0.0  # translation acceleration, m^2
    w_limits: float = 0.0  # squared violation of the joint limits, rad^2
    w_prior: float = 0.0  # squared whitened distance of the fingers to hands_mean
    min_depth: float = 0.01  # m; depth below which the projection is softly clamped
    robust_2d: float | None = None  # Geman-McClure scale (normalised units) or None for plain squares


def prepare(hand_model, betas, kp2d, conf, K, world_to_cam, hand_valid, joints3d, joints3d_mask,
            weights: LossWeights, dtype: torch.dtype, device) -> tuple[dict[str, torch.Tensor], ShapeConstants]:
    """Everything constant during the optimisation, SoA, clip axis third from the end.

    Returns (tensors, shape_constants). Tensor names: the ShapeConstants ones plus ``Rc`` (3, 3, N)
    and ``tc`` (3, N) frame-0 camera -> camera t, ``obs`` (2, 21, N) observed keypoints in
    normalised coordinates (level order), ``w2`` (21, N) 2D weights, ``Y`` (3, 21, N) 3D labels in
    camera t and ``w3`` (21, N) their weights (absent without labels), ``wh`` (B, T, 2) per-clip
    normalised hand weights (limits / prior), ``ws`` (B, T-2, 2) and ``wv`` (B, T-1, 2) weights of
    the acceleration / velocity terms (absent when T is too short or the weights are 0).
    """
    B, T = kp2d.shape[:2]
    fl = dict(dtype=dtype, device=device)
    kp2d = kp2d.to(**fl)
    conf = conf.to(**fl)
    K = K.to(**fl)
    W = world_to_cam.to(**fl)
    valid = hand_valid.to(device=device, dtype=torch.bool)
    finite = torch.isfinite(kp2d).all(-1) & torch.isfinite(conf)
    c = torch.where(finite, conf, torch.zeros_like(conf)).clamp_min(0.0) * valid.unsqueeze(-1)
    uv = torch.where((c > 0).unsqueeze(-1), kp2d, torch.zeros_like(kp2d))
    obs = pixel_rays(uv, K[:, None, None, None])[..., :2]  # (B, T, 2, 21, 2) normalised coordinates
    obs = torch.where((c > 0).unsqueeze(-1), obs, torch.zeros_like(obs))
    sc = ShapeConstants(hand_model, betas.to(**fl), T, dtype, device)
    C = dict(sc.tensors)
    C["obs"] = kp_to_level(obs, -2).permute(4, 3, 0, 1, 2).contiguous()  # (2, 21, B, T, 2)
    w2 = kp_to_level(c, -1).permute(3, 0, 1, 2).contiguous()  # (21, B, T, 2)
    w2 = _per_clip_normalise(w2)
    Rc = W[:, :, :3, :3].permute(2, 3, 0, 1).unsqueeze(-1).expand(3, 3, B, T, 2).contiguous()
    tc = W[:, :, :3, 3].permute(2, 0, 1).unsqueeze(-1).expand(3, B, T, 2).contiguous()
    C["Rc"], C["tc"] = Rc, tc
    has3d = torch.zeros(B, dtype=torch.bool, device=device)
    if joints3d is not None:
        if tuple(joints3d.shape) != (B, T, 2, 21, 3):
            raise HandcastError(f"joints3d must have shape ({B}, {T}, 2, 21, 3), got {_shape(joints3d)}")
        if joints3d_mask is None:
            joints3d_mask = hand_valid
        if tuple(joints3d_mask.shape) != (B, T, 2):
            raise HandcastError(f"joints3d_mask must have shape ({B}, {T}, 2), got {_shape(joints3d_mask)}")
        Y = joints3d.to(**fl)
        m3 = joints3d_mask.to(device=device, dtype=torch.bool) & valid
        m3k = m3.unsqueeze(-1) & torch.isfinite(Y).all(-1)  # (B, T, 2, 21)
        Y = torch.where(m3k.unsqueeze(-1), Y, torch.zeros_like(Y))
        Ys = kp_to_level(Y, -2).permute(4, 3, 0, 1, 2)  # (3, 21, B, T, 2) frame-0 camera
        Ycam = matvec_soa(Rc.unsqueeze(2), Ys) + tc.unsqueeze(1)  # distances are kept by rigid maps
        w3 = _per_clip_normalise(kp_to_level(m3k.to(dtype), -1).permute(3, 0, 1, 2).contiguous())
        has3d = m3k.flatten(1).any(1)
        if bool(has3d.any()):
            C["Y"] = Ycam.contiguous()
            C["w3"] = w3 * weights.w_3d
    w2_scale = torch.where(has3d, torch.full_like(has3d, weights.w_2d_with_3d, dtype=dtype),
                           torch.full_like(has3d, weights.w_2d, dtype=dtype))
    C["w2"] = w2 * w2_scale.view(1, B, 1, 1)
    vf = valid.to(dtype)
    C["wh"] = _per_clip_normalise(vf)
    if T >= 3 and (weights.w_smooth_joints > 0 or weights.w_smooth_transl > 0):
        C["ws"] = _per_clip_normalise(vf[:, 2:] * vf[:, 1:-1] * vf[:, :-2])
    if T >= 2 and weights.w_smooth_pose > 0:
        C["wv"] = _per_clip_normalise(vf[:, 1:] * vf[:, :-1])
    return C, sc


def finger_constants(hand_model, dtype, device) -> dict[str, torch.Tensor]:
    """Joint limits and the finger prior, SoA (3, 15, 1, 1, 2) level order (broadcast over clips)."""
    lim = hand_model.joint_limits.to(dtype=dtype, device=device)  # (2, 15, 3, 2) MANO finger order
    idx = torch.tensor(FINGER_LEVEL_TO_MANO, device=device)
    lim = lim.index_select(1, idx)  # level order
    lo = lim[..., 0].permute(2, 1, 0)[:, :, None, None, :]  # (3, 15, 1, 1, 2)
    hi = lim[..., 1].permute(2, 1, 0)[:, :, None, None, :]
    mean = hand_model.hands_mean.to(dtype=dtype, device=device).view(2, 15, 3).index_select(1, idx)
    mean = mean.permute(2, 1, 0)[:, :, None, None, :]
    # Prior spread: a quarter of the joint-limit range per axis-angle component (>= 0.05 rad).
    std = ((hi - lo) / 4.0).clamp_min(0.05)
    return {"lim_lo": lo, "lim_hi": hi, "prior_mean": mean, "prior_istd": 1.0 / std}


def soft_depth(z: torch.Tensor, d: float) -> torch.Tensor:
    """z for z >= d, else d^2 / (2d - z): positive, C1-continuous, decreasing to 0 as z -> -inf, so
    points behind the camera give large but finite residuals whose gradient pushes them forward."""
    return torch.where(z >= d, z, (d * d) / (2.0 * d - z).clamp_min(d))


def clip_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over every dim but the clip axis (third from the end) -> (B,)."""
    dims = tuple(d for d in range(x.ndim) if d != x.ndim - 3)
    return x.sum(dims)


def total_loss(C: dict[str, torch.Tensor], sc: ShapeConstants, F: dict[str, torch.Tensor],
               root: torch.Tensor, fingers: torch.Tensor, transl: torch.Tensor,
               wt: LossWeights) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-clip loss (B,) and the camera-frame keypoints (3, 21, B, T, 2)."""
    Rc, tc = C["Rc"], C["tc"]
    root_t = matvec_soa(Rc, transl) + tc
    X = keypoints_soa(C, sc, root, fingers, root_R=Rc, root_t=root_t)
    x0, x1, x2 = X.unbind(0)
    inv_z = soft_depth(x2, wt.min_depth).reciprocal()
    ox, oy = C["obs"].unbind(0)
    rx = x0 * inv_z - ox
    ry = x1 * inv_z - oy
    r2 = rx * rx + ry * ry
    if wt.robust_2d is not None:
        s2 = float(wt.robust_2d) ** 2
        r2 = r2 * s2 / (r2 + s2)
    loss = clip_sum(C["w2"] * r2)
    if "Y" in C:
        d = X - C["Y"]
        loss = loss + clip_sum(C["w3"] * (d * d).sum(0))
    if wt.w_limits > 0:
        v = torch.relu(F["lim_lo"] - fingers) + torch.relu(fingers - F["lim_hi"])
        loss = loss + wt.w_limits * clip_sum(C["wh"] * (v * v).sum((0, 1)))
    if wt.w_prior > 0:
        e = (fingers - F["prior_mean"]) * F["prior_istd"]
        loss = loss + (wt.w_prior / 45.0) * clip_sum(C["wh"] * (e * e).sum((0, 1)))
    if "ws" in C:
        ws = C["ws"]
        if wt.w_smooth_joints > 0:
            # frame-0 camera keypoints: x0 = Rc^T (x - tc)
            X0 = matvec_soa(Rc.transpose(0, 1).unsqueeze(2), X - tc.unsqueeze(1))
            acc = X0[..., 2:, :] - 2.0 * X0[..., 1:-1, :] + X0[..., :-2, :]
            loss = loss + (wt.w_smooth_joints / 21.0) * clip_sum(ws * (acc * acc).sum((0, 1)))
        if wt.w_smooth_transl > 0:
            acc = transl[..., 2:, :] - 2.0 * transl[..., 1:-1, :] + transl[..., :-2, :]
            loss = loss + wt.w_smooth_transl * clip_sum(ws * (acc * acc).sum(0))
    if "wv" in C and wt.w_smooth_pose > 0:
        dv = fingers[..., 1:, :] - fingers[..., :-1, :]
        dr = root[..., 1:, :] - root[..., :-1, :]
        loss = loss + (wt.w_smooth_pose / 16.0) * clip_sum(C["wv"] * ((dv * dv).sum((0, 1)) + (dr * dr).sum(0)))
    return loss, X


@dataclass
class AdamSettings:
    iterations: int = 1000
    lr: float = 0.01
    grad_clip: float | None = 1.0
    tol: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8


def optimise(C: dict[str, torch.Tensor], sc: ShapeConstants, F: dict[str, torch.Tensor],
             params: dict[str, torch.Tensor], trainable: tuple[str, ...], wt: LossWeights,
             opt: AdamSettings, history: bool = True) -> dict:
    """Batched Adam on ``params`` (root (3, B, T, 2), fingers (3, 15, B, T, 2), transl (3, B, T, 2)).

    Per clip: the gradient of the clip's own loss, its norm clipped to ``opt.grad_clip`` over all
    trainable parameters of the clip; a clip whose loss is below ``opt.tol`` when evaluated stops
    there (no step is taken, its parameters never change again) and leaves the working batch.
    Returns dict(params (updated copies, all clips), iterations (B,) loss evaluations per clip,
    loss_history (I, B) with NaN after a clip stopped, stopped (B,) bool: early-stopped).
    """
    B = params["root"].shape[-3]
    device = params["root"].device
    dtype = params["root"].dtype
    out = {k: v.detach().clone() for k, v in params.items()}
    iters = torch.zeros(B, dtype=torch.long, device=device)
    stopped = torch.zeros(B, dtype=torch.bool, device=device)
    hist: list[torch.Tensor] = []
    active = torch.arange(B, device=device)
    cur_C = C
    cur = {k: v.detach().clone() for k, v in params.items()}
    state = {k: (torch.zeros_like(cur[k]), torch.zeros_like(cur[k])) for k in trainable}
    b1, b2 = opt.betas
    step = 0
    for it in range(int(opt.iterations)):
        if active.numel() == 0:
            break
        leaves = {k: (v.requires_grad_(True) if k in trainable else v) for k, v in cur.items()}
        loss, _ = total_loss(cur_C, sc, F, leaves["root"], leaves["fingers"], leaves["transl"], wt)
        lvals = loss.detach()
        if history:
            row = torch.full((B,), float("nan"), dtype=dtype, device=device)
            row[active] = lvals
            hist.append(row)
        iters[active] += 1
        done = lvals < opt.tol
        n_done = int(done.sum())
        if n_done == active.numel():
            for k in cur:
                out[k][..., active, :, :] = cur[k].detach()
            stopped[active] = True
            active = active[:0]
            break
        grads = torch.autograd.grad(loss.sum(), [leaves[k] for k in trainable])
        grads = dict(zip(trainable, grads))
        if n_done:
            keep = (~done).nonzero().flatten()
            fin = done.nonzero().flatten()
            gidx = active[fin]
            for k in cur:
                out[k][..., gidx, :, :] = cur[k].detach().index_select(-3, fin)
            stopped[gidx] = True
            active = active[keep]
            cur_C = {k: v.index_select(v.ndim - 3, keep) for k, v in cur_C.items()}
            cur = {k: v.detach().index_select(-3, keep) for k, v in cur.items()}
            grads = {k: g.index_select(-3, keep) for k, g in grads.items()}
            state = {k: (m.index_select(-3, keep), v.index_select(-3, keep)) for k, (m, v) in state.items()}
        if opt.grad_clip is not None and opt.grad_clip > 0:
            sq = sum(clip_sum(g * g) for g in grads.values())
            coef = (opt.grad_clip / (torch.sqrt(sq) + 1e-6)).clamp(max=1.0)
            coef = coef.view(-1, 1, 1)
        else:
            coef = None
        step += 1
        bc1 = 1.0 - b1 ** step
        bc2 = 1.0 - b2 ** step
        step_size = opt.lr / bc1
        for k in trainable:
            g = grads[k] if coef is None else grads[k] * coef
            m, v = state[k]
            m.mul_(b1).add_(g, alpha=1.0 - b1)
            v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
            denom = (v.sqrt() / (bc2 ** 0.5)).add_(opt.eps)
            cur[k] = cur[k].detach().addcdiv(m, denom, value=-step_size)
        for k in cur:
            if k not in trainable:
                cur[k] = cur[k].detach()
    if active.numel():
        for k in cur:
            out[k][..., active, :, :] = cur[k].detach()
    return {
        "params": out,
        "iterations": iters,
        "stopped": stopped,
        "loss_history": torch.stack(hist) if hist else torch.zeros(0, B, dtype=dtype, device=device),
    }


def evaluate(C, sc, F, params, wt: LossWeights) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-clip loss (B,) and camera-frame keypoints (3, 21, B, T, 2) without gradients."""
    with torch.no_grad():
        return total_loss(C, sc, F, params["root"], params["fingers"], params["transl"], wt)
