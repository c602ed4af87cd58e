"""Differentiable keypoints of both hands for fixed shapes: the hot path of the fitting loops.

This computes what :meth:`handcast.hand.HandModel.keypoints` computes (the 16 MANO joints by forward
kinematics plus the 5 fingertip vertices by linear blend skinning, pose blend shapes included when
the model has them), but

* everything that depends only on the shapes (``betas``, fixed while fitting) is computed once:
  rest joints, bone offsets, fingertip rest positions and their offsets to the joints that skin them;
* only the joints with a non-zero skinning weight on a fingertip are used to skin it;
* arrays are laid out "structure of arrays" (SoA): components first, then joints, then the batch
  ``(B, T, 2)`` last, so that every elementwise operation streams contiguous memory (on CPU this is
  ~8x faster than the usual ``(..., 3, 3)`` layout for the tiny 3x3 products of forward kinematics);
* an optional per-frame rigid transform (a camera) is folded into the root.

Internal orders
  * Joints in "level order" (:data:`JOINT_LEVEL_ORDER`): the wrist, then the 5 level-1 joints, the 5
    level-2 joints and the 5 level-3 joints of the kinematic tree (fingers index, middle, pinky, ring,
    thumb within a level, as in MANO).
  * Keypoints in "level order": the 16 joints in level order then the 5 fingertips (thumb .. pinky).
    :func:`kp_to_level` / :func:`kp_to_common` convert a 21-keypoint axis from / to the common
    order of :mod:`handcast.conventions`.

SoA shapes used below: a per-(frame, hand) quantity with C components and J joints is
``(C, J, B, T, 2)``; the clip axis B is always the third from the end (so a batch is shrunk with
``index_select(-3, keep)``).
"""

from __future__ import annotations

import numpy as np
import torch

from handcast.conventions import MANO21_TO_COMMON
from handcast.errors import HandcastError

# MANO joints by tree depth (same finger order in each level).
LEVEL1 = (1, 4, 7, 10, 13)
LEVEL2 = (2, 5, 8, 11, 14)
LEVEL3 = (3, 6, 9, 12, 15)
#: level slot -> MANO joint
JOINT_LEVEL_ORDER: tuple[int, ...] = (0,) + LEVEL1 + LEVEL2 + LEVEL3
#: MANO joint -> level slot
JOINT_FROM_LEVEL: tuple[int, ...] = tuple(int(i) for i in np.argsort(JOINT_LEVEL_ORDER))
#: fingertips in level finger order (index, middle, pinky, ring, thumb) as tip numbers (thumb = 0 .. pinky = 4)
TIP_LEVEL_ORDER: tuple[int, ...] = (1, 2, 4, 3, 0)
# Level-order keypoints as MANO-21 indices (16 joints in level order, then the 5 tips in level finger order).
_LEVEL_KP_AS_MANO21 = JOINT_LEVEL_ORDER + tuple(16 + k for k in TIP_LEVEL_ORDER)
_MANO21_TO_LEVEL = np.argsort(_LEVEL_KP_AS_MANO21)
#: common keypoint c is level-order keypoint COMMON_FROM_LEVEL[c]
COMMON_FROM_LEVEL: tuple[int, ...] = tuple(int(_MANO21_TO_LEVEL[m]) for m in MANO21_TO_COMMON)
#: level-order keypoint l is common keypoint LEVEL_FROM_COMMON[l]
LEVEL_FROM_COMMON: tuple[int, ...] = tuple(int(i) for i in np.argsort(COMMON_FROM_LEVEL))
# Finger slots 1..15 of the level order as finger indices 0..14 of MANO order (joint - 1).
FINGER_LEVEL_TO_MANO: tuple[int, ...] = tuple(j - 1 for j in JOINT_LEVEL_ORDER[1:])
FINGER_MANO_TO_LEVEL: tuple[int, ...] = tuple(int(i) for i in np.argsort(FINGER_LEVEL_TO_MANO))


def kp_to_level(x: torch.Tensor, dim: int = -2) -> torch.Tensor:
    """Reorder a common-order 21-keypoint axis ``dim`` to the internal level order (a copy)."""
    return x.index_select(dim, torch.tensor(LEVEL_FROM_COMMON, device=x.device))


def kp_to_common(x: torch.Tensor, dim: int = -2) -> torch.Tensor:
    """Reorder a level-order 21-keypoint axis ``dim`` to the common order (a copy)."""
    return x.index_select(dim, torch.tensor(COMMON_FROM_LEVEL, device=x.device))


def to_soa(x: torch.Tensor) -> torch.Tensor:
    """(B, T, 2, J, C) -> contiguous (C, J, B, T, 2); (B, T, 2, C) -> (C, B, T, 2)."""
    if x.ndim == 5:
        return x.permute(4, 3, 0, 1, 2).contiguous()
    if x.ndim == 4:
        return x.permute(3, 0, 1, 2).contiguous()
    raise HandcastError(f"to_soa expects a (B, T, 2, [J,] C) tensor, got shape {tuple(x.shape)}")


def from_soa(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_soa`: (C, J, B, T, 2) -> (B, T, 2, J, C); (C, B, T, 2) -> (B, T, 2, C)."""
    if x.ndim == 5:
        return x.permute(2, 3, 4, 1, 0).contiguous()
    if x.ndim == 4:
        return x.permute(1, 2, 3, 0).contiguous()
    raise HandcastError(f"from_soa expects a (C, [J,] B, T, 2) tensor, got shape {tuple(x.shape)}")


def pose_to_soa(pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Axis-angle pose (B, T, 2, 16, 3) MANO order -> root (3, B, T, 2), fingers (3, 15, B, T, 2) level order."""
    root = pose[..., 0, :].permute(3, 0, 1, 2).contiguous()
    fingers = pose[..., list(JOINT_LEVEL_ORDER[1:]), :].permute(4, 3, 0, 1, 2).contiguous()
    return root, fingers


def pose_from_soa(root: torch.Tensor, fingers: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pose_to_soa` -> (B, T, 2, 16, 3) MANO order."""
    level = torch.cat([root.unsqueeze(1), fingers], dim=1)  # (3, 16, B, T, 2) level order
    return level[:, list(JOINT_FROM_LEVEL)].permute(2, 3, 4, 1, 0).contiguous()


def _rodrigues_coeffs(aa: torch.Tensor):
    """x, y, z, t^2, a = sin(t)/t, b = (1 - cos t)/t^2 (Taylor near 0; stable half-angle form)."""
    x, y, z = aa.unbind(0)
    t2 = x * x + y * y + z * z
    small = t2 < 1e-6
    t = torch.sqrt(torch.where(small, torch.ones_like(t2), t2))
    h = 0.5 * t
    sh = torch.sin(h) / h  # sin(t/2) / (t/2)
    a = torch.where(small, 1.0 - t2 / 6.0, torch.sin(t) / t)
    b = torch.where(small, 0.5 - t2 / 24.0, 0.5 * sh * sh)
    return x, y, z, t2, a, b


def _rodrigues_matrix(x, y, z, t2, a, b) -> torch.Tensor:
    cs = 1.0 - b * t2  # cos(t)
    bx, by, bz = b * x, b * y, b * z
    ax, ay, az = a * x, a * y, a * z
    bxy, bxz, byz = bx * y, bx * z, by * z
    R = torch.stack([cs + bx * x, bxy - az, bxz + ay,
                     bxy + az, cs + by * y, byz - ax,
                     bxz - ay, byz + ax, cs + bz * z])
    return R.view((3, 3) + tuple(x.shape))


class _Rodrigues(torch.autograd.Function):
    """R = cos(t) I + a [v]x + b v v^T with an analytic backward:
    dL/dv = v (-a tr G + alpha <w, v> + beta v^T G v) + a w + b (G v + G^T v), where G = dL/dR,
    w = (G21 - G12, G02 - G20, G10 - G01), alpha = a'(t)/t, beta = b'(t)/t."""

    @staticmethod
    def forward(ctx, aa):
        x, y, z, t2, a, b = _rodrigues_coeffs(aa)
        ctx.save_for_backward(aa, t2, a, b)
        return _rodrigues_matrix(x, y, z, t2, a, b)

    @staticmethod
    def backward(ctx, G):
        aa, t2, a, b = ctx.saved_tensors
        x, y, z = aa.unbind(0)
        small = t2 < 1e-2
        t2s = torch.where(small, torch.ones_like(t2), t2)
        cs = 1.0 - b * t2
        alpha = torch.where(small, -1.0 / 3.0 + t2 * (1.0 / 30.0 - t2 / 840.0), (cs - a) / t2s)
        beta = torch.where(small, -1.0 / 12.0 + t2 * (1.0 / 180.0 - t2 / 6720.0), (a - 2.0 * b) / t2s)
        g00, g01, g02, g10, g11, g12, g20, g21, g22 = G.reshape((9,) + tuple(x.shape)).unbind(0)
        w0, w1, w2 = g21 - g12, g02 - g20, g10 - g01
        gv0 = g00 * x + g01 * y + g02 * z
        gv1 = g10 * x + g11 * y + g12 * z
        gv2 = g20 * x + g21 * y + g22 * z
        gt0 = g00 * x + g10 * y + g20 * z
        gt1 = g01 * x + g11 * y + g21 * z
        gt2 = g02 * x + g12 * y + g22 * z
        vgv = x * gv0 + y * gv1 + z * gv2
        coef = alpha * (w0 * x + w1 * y + w2 * z) + beta * vgv - a * (g00 + g11 + g22)
        return torch.stack([x * coef + a * w0 + b * (gv0 + gt0),
                            y * coef + a * w1 + b * (gv1 + gt1),
                            z * coef + a * w2 + b * (gv2 + gt2)])


def rodrigues_soa(aa: torch.Tensor) -> torch.Tensor:
    """Axis-angle (3, ...) [rad] -> rotation matrices (3, 3, ...), differentiable everywhere.

    ``R = cos(t) I + sin(t)/t [a]x + (1 - cos(t))/t^2 a a^T`` with t = |a|; Taylor coefficients
    near 0 (no NaN at a = 0, exact rotation there). The backward pass is analytic (one fused
    formula instead of ~40 autograd nodes).
    """
    return _Rodrigues.apply(aa)


def matmul_soa(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """(3, 3, ...) @ (3, 3, ...) -> (3, 3, ...), trailing dims broadcast."""
    return (A.unsqueeze(2) * B.unsqueeze(0)).sum(1)


def matvec_soa(A: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(3, 3, ...) @ (3, ...) -> (3, ...), trailing dims broadcast."""
    return (A * v.unsqueeze(0)).sum(1)


class ShapeConstants:
    """Shape-dependent constants of both hands for B clips of T frames, SoA, on one device/dtype.

    Args:
        hand_model: a :class:`handcast.hand.HandModel`.
        betas: (B, 2, 10) shape coefficients per clip and hand (right, left).
        T: number of frames (the constants are materialised over (B, T, 2)).
        dtype, device: of the result (the constants are computed in float64 first).

    Attributes (level order, metres, the model's rest frame; ``N`` = (B, T, 2)):
        tensors: dict name -> tensor with the clip axis third from the end: ``J0`` (3, N) rest
            wrist; ``off1``/``off2``/``off3`` (3, 5, N) bone offsets child - parent of the three tree
            levels; fingertip skinning on the fast path (:attr:`fast`: every fingertip skinned only
            by the wrist and joints of its own finger, as in the open model): ``tip_e3``,
            ``tip_c2``, ``tip_c1``, ``tip_c0`` (3, 5, N) (see the comment in ``__init__``),
            ``tip_w0`` .. ``tip_w3`` (5, N) the weights per level and, if they do not sum to 1,
            ``tip_S`` (5, N); on the general path ``tip_off`` (3, 5, m, N) fingertip minus joint
            rest positions and ``tip_w`` (5, m, N) weights for the m joints of :attr:`tip_idx` (5, m).
        posedirs: (2, 135, 15) the fingertip pose blend shapes (columns in TIP_LEVEL_ORDER), or None.
    """

    def __init__(self, hand_model, betas: torch.Tensor, T: int, dtype: torch.dtype, device) -> None:
        if betas.ndim != 3 or tuple(betas.shape[1:]) != (2, 10):
            raise HandcastError(f"betas must have shape (B, 2, 10), got {tuple(betas.shape)}")
        f64 = dict(dtype=torch.float64, device=device)
        b = betas.to(**f64)
        Bn = b.shape[0]
        J = hand_model.kp_J_template.to(**f64) + torch.einsum("bhk,hjck->bhjc", b, hand_model.kp_J_dirs.to(**f64))
        tips = hand_model.kp_tip_template.to(**f64) + torch.einsum("bhk,hvck->bhvc", b,
                                                                   hand_model.kp_tip_dirs.to(**f64))
        tips = tips[:, :, list(TIP_LEVEL_ORDER)]  # (B, 2, 5, 3) level finger order
        JL = J[:, :, list(JOINT_LEVEL_ORDER)]  # (B, 2, 16, 3) level order
        W = hand_model.kp_tip_weights.to(**f64)[:, list(TIP_LEVEL_ORDER)]
        W = W[:, :, list(JOINT_LEVEL_ORDER)]  # (2, 5, 16) tips and joints in level order

        def per_n(x: torch.Tensor, n_lead: int) -> torch.Tensor:
            # (B, 2, *lead, C) -> (C, *lead, B, T, 2)
            nd = x.ndim
            perm = (nd - 1,) + tuple(range(2, 2 + n_lead)) + (0, 1)
            y = x.permute(perm).unsqueeze(-2)  # (C, *lead, B, 1, 2)
            return y.expand(y.shape[:-2] + (T, 2)).to(dtype).contiguous()

        def per_hand(w: torch.Tensor) -> torch.Tensor:
            # (2, *lead) -> (*lead, B, T, 2)
            lead = w.shape[1:]
            y = w.permute(*range(1, w.ndim), 0).reshape(*lead, 1, 1, 2)
            return y.expand(*lead, Bn, T, 2).to(dtype).contiguous()

        self.tensors: dict[str, torch.Tensor] = {
            "J0": per_n(JL[:, :, 0], 0),
            "off1": per_n(JL[:, :, 1:6] - JL[:, :, :1], 1),
            "off2": per_n(JL[:, :, 6:11] - JL[:, :, 1:6], 1),
            "off3": per_n(JL[:, :, 11:16] - JL[:, :, 6:11], 1),
        }
        # Fast path: tip f skinned only by the wrist and the joints of finger f. Then, with w_l the
        # weight of level l, d_l = tip - J_l and o_l the bone offsets (all rest pose),
        #   tip = S p0 + G0 (c0 + R1 (c1 + R2 (c2 + R3 e3))),   S = w0 + w1 + w2 + w3,
        #   e3 = w3 d3, c2 = w2 d2 + w3 o3, c1 = w1 d1 + (w2 + w3) o2, c0 = w0 d0 + (w1 + w2 + w3) o1,
        # so only matrix-vector products are needed (evaluated inside-out).
        own = torch.zeros(5, 16, dtype=torch.bool, device=device)
        own[:, 0] = True
        for f in range(5):
            own[f, [1 + f, 6 + f, 11 + f]] = True
        self.fast = not bool(((W != 0) & ~own).any())
        self.tip_idx: torch.Tensor | None = None
        self.tip_S_one = True
        if self.fast:
            w = [W[:, :, 0]] + [torch.diagonal(W[:, :, 1 + 5 * k: 6 + 5 * k], dim1=1, dim2=2) for k in range(3)]
            d = [tips - JL[:, :, :1]] + [tips - JL[:, :, 1 + 5 * k: 6 + 5 * k] for k in range(3)]
            o1 = JL[:, :, 1:6] - JL[:, :, :1]
            o2 = JL[:, :, 6:11] - JL[:, :, 1:6]
            o3 = JL[:, :, 11:16] - JL[:, :, 6:11]
            wv = [x[None, :, :, None] for x in w]  # (1, 2, 5, 1)
            e3 = wv[3] * d[3]
            c2 = wv[2] * d[2] + wv[3] * o3
            c1 = wv[1] * d[1] + (wv[2] + wv[3]) * o2
            c0 = wv[0] * d[0] + (wv[1] + wv[2] + wv[3]) * o1
            S = w[0] + w[1] + w[2] + w[3]  # (2, 5)
            for name, x in (("tip_e3", e3), ("tip_c2", c2), ("tip_c1", c1), ("tip_c0", c0)):
                self.tensors[name] = per_n(x, 1)
            for k in range(4):
                self.tensors[f"tip_w{k}"] = per_hand(w[k])
            self.tip_S_one = bool(torch.allclose(S, torch.ones_like(S), rtol=0, atol=1e-5))
            if not self.tip_S_one:
                self.tensors["tip_S"] = per_hand(S)
        else:
            used = (W != 0).any(0)  # (5, 16)
            m = max(1, int(used.sum(-1).max()))
            idx = torch.zeros(5, m, dtype=torch.long)
            wsel = torch.zeros(2, 5, m, **f64)
            for k in range(5):
                cols = used[k].nonzero().flatten().cpu()
                idx[k, : len(cols)] = cols
                idx[k, len(cols):] = cols[-1]
                wsel[:, k, : len(cols)] = W[:, k, cols.to(device)]
            idx = idx.to(device)
            tip_off = tips.unsqueeze(-2) - JL[:, :, idx.flatten()].unflatten(2, (5, m))  # (B, 2, 5, m, 3)
            self.tensors["tip_off"] = per_n(tip_off, 2)
            self.tensors["tip_w"] = per_hand(wsel)
            self.tip_idx = idx
        P = hand_model.kp_tip_posedirs.to(**f64)  # (2, 135, 15) columns: tip-major (thumb..pinky) x 3
        P = P.view(2, 135, 5, 3)[:, :, list(TIP_LEVEL_ORDER)].reshape(2, 135, 15)
        self.posedirs = P.to(dtype) if bool(torch.any(P != 0)) else None


def keypoints_soa(C: dict[str, torch.Tensor], sc: ShapeConstants, root: torch.Tensor, fingers: torch.Tensor,
                  root_R: torch.Tensor | None = None, root_t: torch.Tensor | None = None) -> torch.Tensor:
    """Keypoints (3, 21, B, T, 2) in level order, metres.

    C: the :attr:`ShapeConstants.tensors` of ``sc`` (possibly shrunk to a subset of clips).
    root: (3, B, T, 2) global orientation axis-angle; fingers: (3, 15, B, T, 2) level order.
    Without ``root_R``/``root_t`` the result is the posed hand with zero MANO translation
    (``x = R_global (x_local - J0) + J0``). With ``root_R`` (3, 3, B, T, 2) and ``root_t``
    (3, B, T, 2) it is ``root_R @ x + root_t`` (e.g. a camera: ``root_R = R_cam``,
    ``root_t = R_cam transl + t_cam``), computed by composing ``root_R`` into the root rotation.
    """
    R0 = rodrigues_soa(root)  # (3, 3, B, T, 2)
    R1, R2, R3 = torch.split(rodrigues_soa(fingers), 5, dim=2)  # (3, 3, 5, B, T, 2) each
    p0 = C["J0"]
    if root_R is not None:
        R0 = matmul_soa(root_R, R0)
        p0 = matvec_soa(root_R, p0)
    if root_t is not None:
        p0 = p0 + root_t
    blend = None
    if sc.posedirs is not None:
        eye = torch.eye(3, dtype=R1.dtype, device=R1.device).reshape(3, 3, 1, 1, 1, 1)
        Rf = torch.cat([R1, R2, R3], dim=2) - eye  # level order
        mano = Rf.index_select(2, torch.tensor(FINGER_MANO_TO_LEVEL, device=Rf.device))
        feat = mano.permute(2, 0, 1, 3, 4, 5).reshape(135, *Rf.shape[3:])  # (135, B, T, 2)
        bl = torch.stack([torch.einsum("pbt,pq->qbt", feat[..., h], sc.posedirs[h]) for h in range(2)], dim=-1)
        blend = bl.view(5, 3, *bl.shape[1:]).transpose(0, 1)  # (3, 5, B, T, 2)
    if sc.fast:
        e3, c2, c1, c0 = C["tip_e3"], C["tip_c2"], C["tip_c1"], C["tip_c0"]
        if blend is not None:
            e3 = e3 + C["tip_w3"] * blend
            c2 = c2 + C["tip_w2"] * blend
            c1 = c1 + C["tip_w1"] * blend
            c0 = c0 + C["tip_w0"] * blend
        o1, o2, o3 = C["off1"], C["off2"], C["off3"]
        a3 = matvec_soa(R3, e3)  # (3, 5, B, T, 2)
        a2, b2 = matvec_soa(R2.unsqueeze(2), torch.stack([c2 + a3, o3], dim=1)).unbind(1)
        a1, q2, q3 = matvec_soa(R1.unsqueeze(2), torch.stack([c1 + a2, o2, o2 + b2], dim=1)).unbind(1)
        V0 = torch.stack([o1, o1 + q2, o1 + q3, c0 + a1], dim=1)  # (3, 4, 5, B, T, 2)
        Y = matvec_soa(R0.unsqueeze(2).unsqueeze(2), V0)  # (3, 4, 5, B, T, 2): p1-p0, p2-p0, p3-p0, tip-S p0
        p0e = p0.unsqueeze(1)  # (3, 1, B, T, 2)
        if sc.tip_S_one:
            rest = Y + p0e.unsqueeze(1)
        else:
            coef = torch.cat([torch.ones_like(C["tip_S"]).unsqueeze(0).expand(3, *C["tip_S"].shape),
                              C["tip_S"].unsqueeze(0)], dim=0)  # (4, 5, B, T, 2)
            rest = Y + p0e.unsqueeze(1) * coef
        return torch.cat([p0e, rest.flatten(1, 2)], dim=1)
    R0e = R0.unsqueeze(2)  # (3, 3, 1, B, T, 2)
    p0e = p0.unsqueeze(1)  # (3, 1, B, T, 2)
    p1 = p0e + matvec_soa(R0e, C["off1"])
    G1 = matmul_soa(R0e, R1)
    p2 = p1 + matvec_soa(G1, C["off2"])
    G2 = matmul_soa(G1, R2)
    p3 = p2 + matvec_soa(G2, C["off3"])
    # General path (some fingertip skinned by a joint of another finger).
    G3 = matmul_soa(G2, R3)
    Pall = torch.cat([p0e, p1, p2, p3], dim=1)  # (3, 16, B, T, 2)
    Gall = torch.cat([R0e, G1, G2, G3], dim=2)  # (3, 3, 16, B, T, 2)
    m = sc.tip_idx.shape[1]
    flat = sc.tip_idx.flatten()
    Gs = Gall.index_select(2, flat).unflatten(2, (5, m))  # (3, 3, 5, m, B, T, 2)
    Ps = Pall.index_select(1, flat).unflatten(1, (5, m))  # (3, 5, m, B, T, 2)
    off = C["tip_off"]
    if blend is not None:
        off = off + blend.unsqueeze(2)
    tips = ((matvec_soa(Gs, off) + Ps) * C["tip_w"]).sum(2)
    return torch.cat([p0e, p1, p2, p3, tips], dim=1)


def fixed_shape_keypoints(hand_model, pose: torch.Tensor, betas: torch.Tensor | None,
                          transl: torch.Tensor | None = None) -> torch.Tensor:
    """Convenience (tests, initialisation): keypoints (B, T, 2, 21, 3) in the COMMON order, metres.

    pose (B, T, 2, 16, 3) flat axis-angle, MANO order; betas (B, 2, 10) or None (zeros);
    transl (B, T, 2, 3) or None. Same result as ``hand_model.keypoints`` with betas broadcast over T.
    """
    if pose.ndim != 5 or tuple(pose.shape[2:]) != (2, 16, 3):
        raise HandcastError(f"pose must have shape (B, T, 2, 16, 3), got {tuple(pose.shape)}")
    B, T = pose.shape[:2]
    if betas is None:
        betas = pose.new_zeros(B, 2, 10)
    sc = ShapeConstants(hand_model, betas, T, pose.dtype, pose.device)
    root, fingers = pose_to_soa(pose)
    root_t = None if transl is None else to_soa(transl.to(pose.dtype))
    X = keypoints_soa(sc.tensors, sc, root, fingers, root_t=root_t)
    return kp_to_common(from_soa(X), dim=-2)
