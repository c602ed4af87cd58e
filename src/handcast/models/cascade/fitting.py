"""Fitting the hand model to 3D joints (the mesh of the "joint diffusion alone" benchmark row).

:func:`fit_mesh_to_joints` finds right-hand rotations (6D) and betas whose root-relative keypoints match
given root-relative joints (B, 21, 3): global orientation initialised by a rotation-only Procrustes of the
template's palm keypoints onto the target's, fingers from the flat pose, betas 0; then Adam on
mean squared joint error (cm^2) + ``w_betas`` |betas|^2 + ``w_pose`` |R_finger - I|^2.
"""

from __future__ import annotations

import torch

from handcast.geometry import rotmat_to_6d, sixd_to_rotmat
from handcast.models.cascade.handutil import right_hand

PALM = (0, 1, 5, 9, 13, 17)


def fit_mesh_to_joints(hand_model, joints: torch.Tensor, iterations: int = 150, lr: float = 0.05,
                       w_betas: float = 1e-3, w_pose: float = 1e-3) -> dict[str, torch.Tensor]:
    """joints (B, 21, 3) root-relative [m], canonical camera frame, common order ->
    dict vertices (B, V, 3), joints (B, 21, 3) (the fitted model's, root-relative), rot6d (B, 16, 6), betas (B, 10)."""
    b = joints.shape[0]
    dev, dt = joints.device, joints.dtype
    with torch.no_grad():
        eye = torch.eye(3, device=dev, dtype=dt).expand(b, 16, 3, 3).contiguous()
        _, kp0 = right_hand(hand_model, eye)
        import roma

        src = kp0[:, list(PALM)]
        dst = joints[:, list(PALM)]
        M = torch.einsum("bpi,bpj->bij", dst - dst.mean(1, keepdim=True), src - src.mean(1, keepdim=True))
        R0 = roma.special_procrustes(M)
    init = torch.cat([R0.unsqueeze(1), eye[:, 1:]], 1)
    x = rotmat_to_6d(init).clone().requires_grad_(True)
    betas = torch.zeros(b, 10, device=dev, dtype=dt, requires_grad=True)
    opt = torch.optim.Adam([x, betas], lr=lr)
    target = joints.detach()
    I = torch.eye(3, device=dev, dtype=dt)
    for _ in range(int(iterations)):
        R = sixd_to_rotmat(x)
        _, kp = right_hand(hand_model, R, betas)
        loss = ((kp - target) * 100).pow(2).sum(-1).mean() + w_betas * betas.pow(2).sum(-1).mean() \
            + w_pose * (R[:, 1:] - I).pow(2).sum((-1, -2, -3)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        v, kp = right_hand(hand_model, sixd_to_rotmat(x), betas)
    return {"vertices": v, "joints": kp, "rot6d": x.detach(), "betas": betas.detach()}
