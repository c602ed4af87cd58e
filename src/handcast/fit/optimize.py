"""The optimisation-only baseline ("EasyMocap" row of the lifting table): MANO fitted to 2D tracks.

:func:`fit_tracks` fits both hands' MANO motion of B clips to their 2D keypoint tracks with the
known cameras, using no learned model and no 3D label:

1. **Initialisation** per (clip, frame, hand): the hand in its mean pose (``hands_mean``) is tried
   in ``n_orientations`` fixed global orientations; for each one, a weak-perspective fit (scale +
   image translation, closed form, confidence-weighted) to the observed normalised keypoints gives
   the residual and the depth (depth = 1 / scale: the model's hand size sets the distance, the
   "depth from 2D hand size" idea made exact). A Viterbi pass over time picks one orientation per
   frame minimising residual + a penalty on the rotation between consecutive frames (frames where
   the hand is missing cost nothing, so orientations are carried through gaps); translations of
   missing frames are copied from the nearest valid frame.
2. **Stage 1**: Adam on the global orientation and translation (fingers fixed at the mean pose)
   with the 2D loss and temporal smoothness (joint and translation acceleration).
3. **Stage 2**: Adam on everything, adding a pose prior (a diagonal Gaussian on the 45 finger
   axis-angle values around ``hands_mean``), the joint-limit penalty and pose-velocity smoothness.

Loss units are those of :mod:`handcast.fit.refine` (docs/fitting.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from handcast.errors import HandcastError
from handcast.fit import _engine as E
from handcast.fit.kinematics import fixed_shape_keypoints, kp_to_level, pose_from_soa, pose_to_soa, to_soa
from handcast.fit.refine import residual_stats
from handcast.geometry.camera import pixel_rays
from handcast.geometry.rotations import aa_to_rotmat, rotmat_to_aa


#: keypoints (common order) whose positions do not depend on the finger pose: wrist, thumb CMC, MCPs.
PALM_KEYPOINTS: tuple[int, ...] = (0, 1, 5, 9, 13, 17)


@dataclass(frozen=True)
class FitConfig:
    """Settings of :func:`fit_tracks` (loss units in docs/fitting.md).

    n_orientations: candidate global orientations tried per (frame, hand) at initialisation.
    init_finger_weight: weight of the non-palm keypoints in the initial orientation score (the
        scale and image position are fitted on the palm keypoints only).
    init_top_k: orientations per frame kept for the Viterbi pass.
    init_refine_steps: degrees of the local coarse-to-fine search around the chosen orientation.
    turn_penalty: Viterbi cost per rad^2 of rotation between consecutive frames, in units of the
        fraction of unexplained 2D variance of the weak-perspective fit.
    stage1_iterations / stage2_iterations: Adam steps of the two stages; lr: learning rate.
    w_smooth_joints: joint acceleration (m^2 per frame^2, frame-0 camera); w_smooth_transl:
        translation acceleration; w_smooth_pose: axis-angle velocity (rad^2 per frame^2);
    w_prior: squared whitened distance of the fingers to hands_mean (mean over the 45 values,
        spread = a quarter of each joint-limit range); w_limits: squared joint-limit violation.
    robust_2d: Geman-McClure scale for the 2D residuals (normalised units) or None.
    """

    n_orientations: int = 128
    init_finger_weight: float = 0.2
    init_top_k: int = 12
    init_refine_steps: tuple[float, ...] = (8.0, 4.0, 2.0, 1.0)
    turn_penalty: float = 0.05
    stage1_iterations: int = 150
    stage2_iterations: int = 400
    lr: float = 0.01
    grad_clip: float | None = 1.0
    w_smooth_joints: float = 0.3
    w_smooth_transl: float = 1.0
    w_smooth_pose: float = 1e-4
    w_prior: float = 1e-6
    w_limits: float = 1e-2
    robust_2d: float | None = None
    min_depth: float = 0.01
    seed: int = 0

    def weights(self, stage: int) -> E.LossWeights:
        return E.LossWeights(
            w_2d=1.0, w_2d_with_3d=1.0, w_3d=0.0,
            w_smooth_joints=self.w_smooth_joints, w_smooth_transl=self.w_smooth_transl,
            w_smooth_pose=self.w_smooth_pose if stage == 2 else 0.0,
            w_prior=self.w_prior if stage == 2 else 0.0,
            w_limits=self.w_limits if stage == 2 else 0.0,
            min_depth=self.min_depth, robust_2d=self.robust_2d)


def candidate_rotations(n: int, seed: int = 0, dtype=torch.float64, device=None) -> torch.Tensor:
    """n rotation matrices (n, 3, 3) spread over SO(3): the identity plus uniformly random unit
    quaternions from a fixed seed (deterministic)."""
    g = torch.Generator().manual_seed(int(seed))
    q = torch.randn(max(n, 1), 4, generator=g, dtype=torch.float64)
    q[0] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    R = torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).view(-1, 3, 3)
    return R[:n].to(dtype=dtype, device=device)


def _viterbi(cost: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    """cost (M, T, k) per-frame costs, trans (M, T-1, k, k) transition costs (previous, next)
    -> index of the best state per frame (M, T) int64."""
    M, T, k = cost.shape
    acc = cost[:, 0].clone()
    back = torch.zeros(M, T, k, dtype=torch.long, device=cost.device)
    for t in range(1, T):
        tot = acc.unsqueeze(2) + trans[:, t - 1]  # (M, prev, next)
        best, arg = tot.min(1)
        back[:, t] = arg
        acc = best + cost[:, t]
    path = torch.zeros(M, T, dtype=torch.long, device=cost.device)
    path[:, -1] = acc.argmin(1)
    for t in range(T - 1, 0, -1):
        path[:, t - 1] = back[:, t].gather(1, path[:, t:t + 1]).squeeze(1)
    return path


def _score(Q: torch.Tensor, wfit: torch.Tensor, wscore: torch.Tensor, om: torch.Tensor, oc: torch.Tensor,
           ovar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weak-perspective fit of candidate hands to the observations of one virtual camera.

    Q: (..., m, 21, 3) candidate keypoints relative to the wrist in the virtual camera's axes;
    wfit / wscore: (..., 21) normalised weights of the scale fit / of the score; om (..., 2) and
    oc (..., 21, 2): weighted centroid of the observations and the centred observations (normalised
    virtual-camera coordinates); ovar (...): their weighted variance. Leading dims broadcast.
    Returns (err (..., m): fraction of the observed variance left unexplained, wrist (..., m, 3):
    the wrist position in the virtual camera, metres).
    """
    w = wfit.unsqueeze(-2)  # (..., 1, 21)
    Qm = (w.unsqueeze(-1) * Q).sum(-2)  # (..., m, 3) palm centroid relative to the wrist
    qc = Q[..., :2] - Qm[..., :2].unsqueeze(-2)
    ot = oc.unsqueeze(-3)  # (..., 1, 21, 2)
    num = (w * (qc * ot).sum(-1)).sum(-1)
    den = (w * (qc * qc).sum(-1)).sum(-1).clamp_min(1e-12)
    s = (num / den).clamp_min(1e-3)  # 1 / depth of the palm centroid
    r = s.unsqueeze(-1).unsqueeze(-1) * qc - ot
    err = (wscore.unsqueeze(-2) * (r * r).sum(-1)).sum(-1) / ovar.unsqueeze(-1)
    zc = 1.0 / s
    centroid = torch.cat([om.unsqueeze(-2) * zc.unsqueeze(-1), zc.unsqueeze(-1)], -1)
    return err, centroid - Qm


def _rotation_to_z(d: torch.Tensor) -> torch.Tensor:
    """Rotations (..., 3, 3) taking unit vectors d (..., 3) with d_z > 0 to (0, 0, 1) (minimal angle)."""
    x, y, z = d.unbind(-1)
    # v = d x e_z = (y, -x, 0); R = I + [v]x + [v]x^2 / (1 + c), c = z
    k = 1.0 / (1.0 + z)
    zero = torch.zeros_like(x)
    R = torch.stack([
        1 - k * x * x, -k * x * y, -x,
        -k * x * y, 1 - k * y * y, -y,
        x, y, 1 - k * (x * x + y * y)], -1)
    return R.view(d.shape[:-1] + (3, 3)) + zero[..., None, None]


def _fill_missing(x: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """x (M, T, C), ok (M, T): values of frames without ``ok`` copied from the nearest ok frame
    (earlier frames win ties); rows without any ok frame are left unchanged."""
    M, T = ok.shape
    t = torch.arange(T, device=x.device)
    big = T * 4
    idx_prev = torch.where(ok, t, torch.full_like(t, -big)).cummax(1).values  # last ok at or before t
    rev = torch.where(ok, t, torch.full_like(t, 2 * big)).flip(1).cummin(1).values.flip(1)  # next ok at/after t
    dprev = t - idx_prev
    dnext = rev - t
    src = torch.where(dprev <= dnext, idx_prev, rev).clamp(0, T - 1)
    out = x.gather(1, src.unsqueeze(-1).expand_as(x))
    has = ok.any(1, keepdim=True).unsqueeze(-1)
    return torch.where(has, out, x)


def initialise(hand_model, kp2d, conf, K, world_to_cam, hand_valid, betas, config: FitConfig = FitConfig()):
    """Mean-pose initialisation (step 1 of :func:`fit_tracks`) -> (pose (B, T, 2, 16, 3), transl (B, T, 2, 3))."""
    B, T = E.check_inputs(kp2d, conf, K, world_to_cam, hand_valid)
    device = kp2d.device
    f64 = dict(dtype=torch.float64, device=device)
    kp2d, conf, K, W = kp2d.to(**f64), conf.to(**f64), K.to(**f64), world_to_cam.to(**f64)
    valid = hand_valid.to(device=device, dtype=torch.bool)
    fin = torch.isfinite(kp2d).all(-1) & torch.isfinite(conf)
    c = torch.where(fin, conf, torch.zeros_like(conf)).clamp_min(0) * valid.unsqueeze(-1)  # (B, T, 2, 21)
    uv = torch.where((c > 0).unsqueeze(-1), kp2d, torch.zeros_like(kp2d))
    o = pixel_rays(uv, K[:, None, None, None])[..., :2]  # (B, T, 2, 21, 2) normalised, camera t
    # mean-pose keypoints relative to the wrist, in the model frame: (B, 2, 21, 3)
    mean_pose = torch.zeros(B, 1, 2, 16, 3, **f64)
    mean_pose[..., 1:, :] = hand_model.hands_mean.to(**f64).view(2, 15, 3)
    P = fixed_shape_keypoints(hand_model, mean_pose, betas.to(**f64))[:, 0]  # (B, 2, 21, 3)
    P = P - P[..., :1, :]
    Rc = candidate_rotations(config.n_orientations, config.seed, **f64)  # (n, 3, 3)
    n = Rc.shape[0]
    Q = torch.einsum("nij,bhkj->bhnki", Rc, P)  # (B, 2, n, 21, 3)
    # The palm keypoints (wrist, thumb CMC, the four MCPs) do not move with the finger pose, so the
    # scale/translation is fitted on them alone (when >= 3 are seen); the orientation score adds the
    # other keypoints with weight init_finger_weight (they break the palm's near-planar ambiguity).
    palm = torch.zeros(21, dtype=torch.bool, device=device)
    palm[list(PALM_KEYPOINTS)] = True
    seen = c > 0
    use_palm = (seen & palm).sum(-1, keepdim=True) >= 3  # (B, T, 2, 1)
    wfit = torch.where(use_palm & ~palm, torch.zeros_like(c), c)
    wfit = wfit / wfit.sum(-1, keepdim=True).clamp_min(1e-12)
    wscore = c * torch.where(palm, torch.ones_like(c), torch.full_like(c, config.init_finger_weight))
    wscore = wscore / wscore.sum(-1, keepdim=True).clamp_min(1e-12)
    # A virtual camera per (frame, hand) looking along the ray of the palm centroid: weak
    # perspective is accurate there (no paraperspective skew for hands off the optical axis).
    om0 = (wfit.unsqueeze(-1) * o).sum(-2)  # (B, T, 2, 2)
    dvec = torch.cat([om0, torch.ones_like(om0[..., :1])], -1)
    dvec = dvec / dvec.norm(dim=-1, keepdim=True)
    Rv = _rotation_to_z(dvec)  # (B, T, 2, 3, 3) camera t -> virtual camera
    rays = torch.cat([o, torch.ones_like(o[..., :1])], -1)  # (B, T, 2, 21, 3)
    rv = torch.einsum("bthij,bthkj->bthki", Rv, rays)
    ov = rv[..., :2] / rv[..., 2:].clamp_min(1e-6)
    om = (wfit.unsqueeze(-1) * ov).sum(-2)  # (B, T, 2, 2)
    oc = ov - om.unsqueeze(-2)
    ovar = (wscore * (oc * oc).sum(-1)).sum(-1).clamp_min(1e-12)  # (B, T, 2)
    ok = valid & ((c > 0).sum(-1) >= 4)  # enough keypoints to fit
    errs = []
    for t in range(T):  # per frame to bound memory
        e, _ = _score(Q, wfit[:, t], wscore[:, t], om[:, t], oc[:, t], ovar[:, t])
        errs.append(e)
    err = torch.stack(errs, 1)  # (B, T, 2, n)
    err = torch.where(ok.unsqueeze(-1), err, torch.zeros_like(err))
    # Viterbi per (clip, hand) over the best candidates of each frame (rotations in the virtual
    # camera of each frame; the small rotation between virtual cameras is ignored at this stage).
    k = min(config.init_top_k, n)
    top_err, top_idx = err.topk(k, dim=-1, largest=False)  # (B, T, 2, k)
    cost = top_err.permute(0, 2, 1, 3).reshape(B * 2, T, k)
    cand = top_idx.permute(0, 2, 1, 3).reshape(B * 2, T, k)
    if T > 1 and config.turn_penalty > 0:
        cos = ((torch.einsum("nij,mij->nm", Rc, Rc) - 1.0) / 2.0).clamp(-1.0, 1.0)
        ang2 = torch.acos(cos) ** 2  # (n, n)
        trans = ang2[cand[:, :-1].unsqueeze(-1), cand[:, 1:].unsqueeze(-2)]  # (M, T-1, k, k)
        path = _viterbi(cost, config.turn_penalty * trans)
    else:
        path = cost.argmin(-1)
    best = cand.gather(-1, path.unsqueeze(-1)).squeeze(-1)  # (M, T)
    best = best.view(B, 2, T).permute(0, 2, 1)  # (B, T, 2)
    R = Rc[best]  # (B, T, 2, 3, 3) in the virtual cameras
    # Local coarse-to-fine refinement of each orientation (27 perturbations per step).
    grid = torch.stack(torch.meshgrid(*([torch.tensor([0.0, -1.0, 1.0], **f64)] * 3), indexing="ij"), -1).view(27, 3)
    # (grid[0] = no change, so ties keep the current orientation)
    Pb = P.unsqueeze(1)  # (B, 1, 2, 21, 3)
    for step_deg in config.init_refine_steps:
        D = aa_to_rotmat(grid * (step_deg * torch.pi / 180.0))  # (27, 3, 3)
        for _ in range(2):
            Rn = torch.einsum("mij,bthjk->bthmik", D, R)  # (B, T, 2, 27, 3, 3)
            Qn = torch.einsum("bthmij,bthkj->bthmki", Rn, Pb.expand(B, T, 2, 21, 3))
            e, _ = _score(Qn, wfit, wscore, om, oc, ovar)  # (B, T, 2, 27)
            sel = torch.where(ok, e.argmin(-1), torch.zeros_like(ok, dtype=torch.long))  # frames without data keep R
            R = Rn.gather(3, sel[..., None, None, None].expand(B, T, 2, 1, 3, 3)).squeeze(3)
    Qf = torch.einsum("bthij,bthkj->bthki", R, Pb.expand(B, T, 2, 21, 3)).unsqueeze(3)
    _, wrist_v = _score(Qf, wfit, wscore, om, oc, ovar)
    wrist_v = wrist_v.squeeze(3)  # (B, T, 2, 3)
    Rsel = Rv.transpose(-1, -2) @ R  # (B, T, 2, 3, 3) rotation in camera t
    wrist_cam = (Rv.transpose(-1, -2) @ wrist_v.unsqueeze(-1)).squeeze(-1)
    # to the frame-0 camera
    Rwt = W[:, :, :3, :3].unsqueeze(2)  # (B, T, 1, 3, 3)
    tw = W[:, :, None, :3, 3]
    R0 = Rwt.transpose(-1, -2) @ Rsel
    wrist0 = (Rwt.transpose(-1, -2) @ (wrist_cam - tw).unsqueeze(-1)).squeeze(-1)
    # frames without a fit: nearest valid frame (translation), orientation from the Viterbi path
    wrist0 = _fill_missing(wrist0.permute(0, 2, 1, 3).reshape(B * 2, T, 3),
                           ok.permute(0, 2, 1).reshape(B * 2, T)).view(B, 2, T, 3).permute(0, 2, 1, 3)
    never = ~ok.any(1)  # (B, 2) hands never fitted: in front of the camera
    default = torch.tensor([[0.1, 0.0, 0.5], [-0.1, 0.0, 0.5]], **f64)
    wrist0 = torch.where(never[:, None, :, None], default.view(1, 1, 2, 3).expand_as(wrist0), wrist0)
    J0 = hand_model.rest_joints(betas.to(hand_model.kp_J_template.dtype).to(hand_model.kp_J_template.device))
    J0 = J0[..., 0, :].to(**f64)  # (B, 2, 3)
    transl = wrist0 - J0.unsqueeze(1)
    pose = mean_pose.expand(B, T, 2, 16, 3).clone()
    pose[..., 0, :] = rotmat_to_aa(R0)
    return pose, transl


def fit_tracks(hand_model, kp2d: torch.Tensor, conf: torch.Tensor, K: torch.Tensor, world_to_cam: torch.Tensor,
               hand_valid: torch.Tensor, betas: torch.Tensor | None = None,
               config: FitConfig = FitConfig(), return_info: bool = False):
    """Fit both hands' MANO motion to 2D keypoint tracks from a mean-pose start (no learned model).

    Args:
        hand_model: :class:`handcast.hand.HandModel`.
        kp2d: (B, T, 2, 21, 2) pixels (u, v) in the image of camera t, common order, hands (right, left).
        conf: (B, T, 2, 21) confidences; 0 (or NaN keypoints) = missing.
        K: (B, 3, 3) intrinsics, pixels; degenerate ones raise HandcastError.
        world_to_cam: (B, T, 4, 4) frame-0 camera -> camera t.
        hand_valid: (B, T, 2) bool; invalid (frame, hand) pairs contribute nothing.
        betas: (B, 2, 10) shapes (None = zeros, the mean hand); kept fixed.
        config: :class:`FitConfig`.
        return_info: also return a dict with the per-clip reprojection error (px) and final loss.

    Returns:
        (pose (B, T, 2, 16, 3) flat axis-angle, MANO order, frame-0 camera; transl (B, T, 2, 3) m,
        frame-0 camera), in the dtype of ``kp2d`` (float32 if it is not floating) on its device;
        plus the info dict when ``return_info``. Never reads any 3D label.
    """
    kp2d = torch.as_tensor(kp2d)
    device = kp2d.device
    conf, K, world_to_cam, hand_valid, betas = (None if x is None else torch.as_tensor(x, device=device)
                                                for x in (conf, K, world_to_cam, hand_valid, betas))
    B, T = E.check_inputs(kp2d, conf, K, world_to_cam, hand_valid)
    dtype = kp2d.dtype if kp2d.dtype.is_floating_point else torch.float32
    if betas is None:
        betas = torch.zeros(B, 2, 10, dtype=dtype, device=device)
    if tuple(betas.shape) != (B, 2, 10):
        raise HandcastError(f"betas must have shape ({B}, 2, 10), got {tuple(betas.shape)}")
    pose0, transl0 = initialise(hand_model, kp2d, conf, K, world_to_cam, hand_valid, betas, config)
    root, fingers = pose_to_soa(pose0.to(dtype))
    params = {"root": root, "fingers": fingers, "transl": to_soa(transl0.to(dtype))}
    info = {}
    for stage, iters, trainable in ((1, config.stage1_iterations, ("root", "transl")),
                                    (2, config.stage2_iterations, ("root", "fingers", "transl"))):
        wt = config.weights(stage)
        C, sc = E.prepare(hand_model, betas, kp2d, conf, K, world_to_cam, hand_valid, None, None, wt, dtype, device)
        F = E.finger_constants(hand_model, dtype, device)
        opt = E.AdamSettings(iterations=iters, lr=config.lr, grad_clip=config.grad_clip, tol=0.0)
        res = E.optimise(C, sc, F, params, trainable, wt, opt, history=False)
        params = res["params"]
    if return_info:
        final, X = E.evaluate(C, sc, F, params, wt)
        c = conf.to(device=device, dtype=dtype)
        okk = torch.isfinite(kp2d).all(-1) & torch.isfinite(c) & (c > 0) & hand_valid.to(device).bool().unsqueeze(-1)
        px, _ = residual_stats(C, X, K.to(device=device, dtype=dtype), kp_to_level(okk, -1).permute(3, 0, 1, 2),
                               config.min_depth)
        info = {"final_loss": final, "reproj_error_px": px}
    pose = pose_from_soa(params["root"], params["fingers"])
    transl = params["transl"].permute(1, 2, 3, 0).contiguous()
    return (pose, transl, info) if return_info else (pose, transl)


def fit_tracks_initialiser(hand_model, config: FitConfig = FitConfig()):
    """An ``initialiser`` for :func:`handcast.fit.impute.impute_split` that runs :func:`fit_tracks`
    on the batch's 2D tracks (it only reads kp2d, kp2d_conf, K, world_to_cam, valid and betas)."""

    def init(batch: dict):
        return fit_tracks(hand_model, batch["kp2d"], batch["kp2d_conf"], batch["K"], batch["world_to_cam"],
                          batch["valid"], batch["betas"], config)

    return init
